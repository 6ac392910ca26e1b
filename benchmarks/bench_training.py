"""CPU benchmark: training steps/s and peak memory of vistok's trainers against the original repository's
training step on the same model, weights, data pipeline and optimizer.

Models (real sizes, deterministic random weights, no download):

* tokenizer: TiTok-BL-64-VQ8k (bytedance/1d-tokenizer ``configs/infer/TiTok/titok_bl64_vq8k.yaml``: base
  encoder, large decoder, 64 tokens, 8192 codes, single-stage decoder), 256 px. Original step: its
  ``TiTok.forward`` -> MSE reconstruction + its ``quantizer_loss`` -> backward -> grad clip 1.0 -> AdamW.
  vistok: ``TokenizerTrainer`` (loss.reconstruction l2, quantizer weight 1, no LPIPS/GAN: the original's
  loss module downloads LPIPS and ConvNeXt weights, so both run the same loss terms), the converted weights.
* generator: the TiTok-L-32 MaskGIT generator (``ImageBert``, BERT 768 x 24 layers, 4096 codes, 32 tokens).
  Original step: ``masking_input_tokens`` (arccos) -> ``forward(cond_drop_prob=0.1)`` -> its ``MLMLoss``
  (label smoothing 0.1, unmasked weight 0) -> backward -> grad clip 1.0 -> AdamW. vistok: ``GeneratorTrainer``
  on a ``vistok tokenize``-style dataset (token ids + labels), the converted weights.

Both implementations read the same data through the same loader (vistok's ``load_image_dataset`` +
``ImageTransform`` for images; the token dataset for the generator), batch size, AdamW settings, fp32,
``torch.set_num_threads(2)``. vistok's numbers include everything its trainer does per step (accelerate's
accumulate context, finite-loss check, progress bar, jsonl metrics); checkpointing and image grids are
off (every 10^6 steps). Each measurement is a fresh process: ``--steps`` optimizer steps, the first
``--warmup`` excluded; steps/s = timed steps / their wall time. Peak memory: the RSS high-water mark over the
timed steps above the RSS before them (weights, optimizer state and activations grown during training).
Processes alternate original/vistok twice; the medians are reported.

No upstream code lives in this repository: the checkout is imported from ``--upstream-1d``.

    python benchmarks/bench_training.py --upstream-1d /work/upstream/1d-tokenizer [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "benchmarks"), str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests" / "fixtures")]
from _measure import machine_info, peak_rss_since_reset_kb, reset_peak_rss, run_child, versions  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "training_cpu.json"
TOKENIZER_CONFIG = "configs/infer/TiTok/titok_bl64_vq8k.yaml"
SETTINGS = {"tokenizer": {"batch": 2, "images": 16}, "generator": {"batch": 16, "images": 256}}
LR, BETAS, WEIGHT_DECAY, CLIP = 1e-4, (0.9, 0.99), 1e-4, 1.0


def _make_images(folder: Path, count: int) -> None:
    import numpy as np
    import PIL.Image

    rng = np.random.default_rng(0)
    (folder / "a").mkdir(parents=True)
    for i in range(count):
        PIL.Image.fromarray(rng.integers(0, 255, (288, 320, 3), dtype=np.uint8)).save(folder / "a" / f"{i}.png")


def _make_tokens(folder: Path, count: int, num_tokens: int, codebook: int) -> None:
    import datasets
    import numpy as np

    rng = np.random.default_rng(0)
    datasets.Dataset.from_dict(
        {"token_ids": rng.integers(0, codebook, (count, num_tokens)).tolist(), "label": rng.integers(0, 1000, count).tolist()},
        features=datasets.Features({"token_ids": datasets.Sequence(datasets.Value("int32")),
                                    "label": datasets.ClassLabel(num_classes=1000)})).save_to_disk(str(folder))


def _build_tokenizer(upstream: Path):
    import torch
    from omegaconf import OmegaConf

    from _random_weights import random_state_dict
    from bench_tokenizers import import_original
    from vistok import TiTokConfig, TiTokModel
    from vistok.modeling.titok.convert_titok import convert_state_dict, infer_config

    model_cls, _ = import_original(upstream, "titok")
    config = OmegaConf.load(upstream / TOKENIZER_CONFIG)
    config = OmegaConf.create({"model": OmegaConf.to_container(config.model),
                               "dataset": {"preprocessing": OmegaConf.to_container(config.dataset.preprocessing)}})
    original = model_cls(config)
    shapes = {k: list(v.shape) for k, v in original.state_dict().items()}
    original.load_state_dict(random_state_dict(shapes, 64), strict=True)
    state = original.state_dict()
    kwargs = infer_config(state, OmegaConf.to_container(config.model.vq_model), int(config.dataset.preprocessing.crop_size))
    config_cls, vistok_cls = TiTokConfig, TiTokModel
    converted, _ = convert_state_dict(state, kwargs["is_legacy"])
    vistok_model = vistok_cls(config_cls(**kwargs))
    vistok_model.load_state_dict(converted, strict=True)
    return original, vistok_model


def _build_generator(upstream: Path):
    from bench_maskgit import _build

    original, pipe = _build("titok-l32", upstream, ("original", "vistok"))
    return original, pipe.transformer


def _adamw(params):
    import torch

    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)


def _worker(kind: str, impl: str, upstream: Path, steps: int, warmup: int, data: Path, folder: Path) -> dict:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    batch = SETTINGS[kind]["batch"]
    original, vistok_model = (_build_tokenizer if kind == "tokenizer" else _build_generator)(upstream)
    times: list[float] = []
    state = {}

    def mark(step):
        times.append(time.perf_counter())
        if step == warmup:
            state["baseline"] = reset_peak_rss()

    if impl == "vistok":
        del original
        model_dir = folder / f"{kind}-vistok"
        vistok_model.save_pretrained(model_dir)
        del vistok_model
        from vistok.training import load_train_config

        overrides = {"model": {"pretrained": str(model_dir)},
                     "training": {"output_dir": str(folder / f"run-{kind}"), "max_steps": steps, "batch_size": batch,
                                  "learning_rate": LR, "adam_betas": list(BETAS), "weight_decay": WEIGHT_DECAY,
                                  "max_grad_norm": CLIP, "checkpointing_steps": 10**6, "image_every": 10**6,
                                  "log_every": 1, "export": False}}
        if kind == "tokenizer":
            from vistok.training.tokenizer import TokenizerTrainer as trainer_cls

            overrides["data"] = {"dataset": str(data)}
            overrides["loss"] = {"reconstruction": "l2"}
        else:
            from vistok.training.generator import GeneratorTrainer as trainer_cls

            overrides["data"] = {"dataset": str(data), "image_column": None, "label_column": "label", "token_column": "token_ids"}
            overrides["model"]["config"] = {}
            overrides["loss"] = {"label_smoothing": 0.1}
        # the generator trainer wants a tokenizer or a token column; the token column is set
        trainer = trainer_cls(load_train_config(kind, overrides=overrides), step_callback=lambda t, s: mark(s))
        trainer.train()
    else:
        del vistok_model
        model = original.train()
        optimizer = _adamw(model.parameters())
        from vistok.data import ImageTransform, collate_examples, load_image_dataset

        if kind == "tokenizer":
            ds = load_image_dataset(data)
            ds = ds.add_column("__vistok_index__", list(range(len(ds)))).with_transform(ImageTransform(256, (0.0, 1.0)))
        else:
            ds = load_image_dataset(data, image_column=None, extra_columns=("token_ids", "label")).with_format("torch")
            from omegaconf import OmegaConf

            from modeling.modules.losses import MLMLoss

            mlm = MLMLoss(OmegaConf.create({"losses": {"label_smoothing": 0.1, "loss_weight_unmasked_token": 0.0}}))
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True,
                                             collate_fn=collate_examples if kind == "tokenizer" else None,
                                             generator=torch.Generator().manual_seed(0))
        step = 0
        while step < steps:
            for batch_data in loader:
                if kind == "tokenizer":
                    pixels = batch_data["pixel_values"]
                    decoded, result = model(pixels)
                    loss = torch.nn.functional.mse_loss(decoded, pixels) + result["quantizer_loss"]
                else:
                    tokens = batch_data["token_ids"].long()
                    masked, masks = model.masking_input_tokens(tokens)
                    logits = model(masked, batch_data["label"].long(), cond_drop_prob=0.1)
                    loss, _ = mlm(logits, tokens, weights=masks)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                mark(step)
                if step >= steps:
                    break
    timed = times[warmup:]
    return {"steps_per_s": (len(timed) - 1) / (timed[-1] - timed[0]),
            "images_per_s": (len(timed) - 1) * batch / (timed[-1] - timed[0]),
            "peak_mib_above_start": round(peak_rss_since_reset_kb(state["baseline"]) / 1024, 1),
            "timed_steps": len(timed) - 1, "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream-1d", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="fewer steps, one round")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--worker", nargs=6, metavar=("KIND", "IMPL", "STEPS", "WARMUP", "DATA", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, impl, steps, warmup, data, folder = args.worker
        print(json.dumps(_worker(kind, impl, args.upstream_1d, int(steps), int(warmup), Path(data), Path(folder))))
        return

    plan = {"tokenizer": (4, 1) if args.quick else (5, 1), "generator": (6, 2) if args.quick else (12, 2)}
    rounds = 1 if args.quick else 2
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _make_images(tmp / "images", SETTINGS["tokenizer"]["images"])
        _make_tokens(tmp / "tokens", SETTINGS["generator"]["images"], 32, 4096)
        for kind, (steps, warmup) in plan.items():
            data = tmp / ("images" if kind == "tokenizer" else "tokens")
            runs = {"original": [], "vistok": []}
            for r in range(rounds):
                for impl in (("original", "vistok") if r % 2 == 0 else ("vistok", "original")):
                    out = run_child(__file__, ["--upstream-1d", str(args.upstream_1d), "--worker", kind, impl, str(steps),
                                               str(warmup), str(data), str(tmp / f"{kind}-{impl}-{r}")],
                                    timeout=3600, env={"OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"})
                    print(kind, impl, out, flush=True)
                    runs[impl].append(out)
            summary = {}
            for impl, outs in runs.items():
                good = [o for o in outs if "error" not in o]
                summary[impl] = {"runs": outs}
                if good:
                    summary[impl].update({k: statistics.median(o[k] for o in good)
                                          for k in ("steps_per_s", "images_per_s", "peak_mib_above_start")})
            if "steps_per_s" in summary["original"] and "steps_per_s" in summary["vistok"]:
                summary["speedup"] = round(summary["vistok"]["steps_per_s"] / summary["original"]["steps_per_s"], 3)
            results[kind] = summary
    payload = {
        "benchmark": "training steps/s and peak memory, vistok trainers vs the original training step",
        "machine": machine_info(),
        "versions": versions("torch", "transformers", "accelerate", "datasets", "vistok"),
        "upstream": {"repo": "bytedance/1d-tokenizer", "path": str(args.upstream_1d)},
        "settings": {"plan_steps_warmup": plan, "rounds": rounds, **SETTINGS, "lr": LR, "betas": BETAS,
                     "weight_decay": WEIGHT_DECAY, "grad_clip": CLIP, "dtype": "float32", "threads": 2,
                     "tokenizer_model": TOKENIZER_CONFIG, "generator_model": "configs/infer/TiTok/titok_l32.yaml (generator)"},
        "results": results,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    for kind, summary in results.items():
        print(f"{kind}: original {summary['original'].get('steps_per_s', 'error')} steps/s, "
              f"vistok {summary['vistok'].get('steps_per_s', 'error')} steps/s, speedup {summary.get('speedup')}")


if __name__ == "__main__":
    main()
