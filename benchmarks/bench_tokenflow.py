"""CPU benchmark: the vistok TokenFlow tokenizer and TokenFlow-t2i sampler against the original ByteFlow-AI/TokenFlow code.

Tokenizer (``--parts tokenizer``): the released ``tokenflow_clipb_32k_enhanced`` shape at 256 px (OpenAI CLIP ViT-B/16
tower interpolated to a 16x16 grid, pixel CNN ch 128, enhanced decoder ch 256 x 4 blocks, 9 scales to 16x16 = 817 tokens,
32768 x (32 + 8) codes, VQKD decoder 768 x 3), random weights (``tests/_random_weights``), built with the original
constructors (the run-time changes of ``tests/fixtures/make_tokenflow_fixtures.py``: CLIP built from the checkout's
``clip/model.py`` instead of the jit download, timm stubbed) and converted with vistok's converter (strict), so both run
the SAME weights. Measured: pixels -> ids -> pixels, ``encode(x)`` then the original ``decode_code(ids)`` (which also
runs the semantic decoder: the original has no pixel-only decode; ``VQTower.decode_to_img_pt`` calls it) vs vistok
``encode`` + ``decode``. Every timed pair's ids are compared.

TokenFlow-t2i (``--parts t2i``): the original needs transformers 4.43.4, so it runs in a child process of the interpreter
given by ``--original-python`` (an environment with transformers 4.43.4 on this torch; see
make_tokenflow_t2i_fixtures.py); vistok runs in a child of this interpreter. A Llama of ``--t2i-width`` x
``--t2i-layers`` (a 7B model does not fit this CPU in fp32) with the released prompt length (128), vocabulary
(32000 + 32768 + 3) and sampling (cfg 7.5, top-k 600, top-p 0.6, one loop), on the tokenizer above; the same seeded
random weights on both sides; seeded samples compared. Timed: prompt ids -> codes -> decoded pixels (the original's
``autoregressive_infer_cfg`` incl. ``decode_to_img_pt``; vistok ``pipe.sample`` + ``image_tokenizer.decode``). The two
children run one after the other, so the machine's load can differ between them. Both children time ``--repeats`` seeded calls after a warm-up
(median) and report their peak RSS above the post-build RSS.

fp32, ``torch.inference_mode()``, ``torch.set_num_threads(2)``.

    python benchmarks/bench_tokenflow.py --upstream /tmp/tokenflow --original-python /tmp/tf443/bin/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _measure import bench_threads, paired_speedup, machine_info, peak_rss_since_reset_kb, reset_peak_rss, versions  # noqa: E402

DEFAULT_OUT = HERE / "results" / "tokenflow_cpu.json"
NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2
RELEASE = dict(teacher="clipb_224", image_size=256, scales=[1, 2, 4, 6, 8, 10, 12, 14, 16], codebook_size=32768,
               semantic_code_dim=32, codebook_embed_dim=8, z_channels=256, encoder_ch=128, decoder_ch=256,
               enhanced_decoder=True, tower=dict(input_resolution=224, patch_size=16, width=768, layers=12, heads=12,
                                                 output_dim=512),
               task_width=768, decoder_vqkd=dict(img_size=14, embed_dim=768, depth=3, num_heads=12), decoder_out_dim=512,
               weights_seed=7070, batch=1)
TEXT_VOCAB = 32000 + 3  # Llama's 32000 + [PAD], <img>, </img> before the image tokens (a layout choice here)
PROMPT_LENGTH = 128
SAMPLING = dict(cfg=7.5, top_k=600, top_p=0.6)


def _original_tokenizer(upstream: Path, spec: dict):
    import torch

    sys.path.insert(0, str(REPO_ROOT / "tests" / "fixtures"))
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    import make_tokenflow_fixtures as fx
    from _random_weights import random_state_dict

    vq_model, vqkd = fx.import_upstream(upstream, {"clip": spec["tower"]})
    torch.manual_seed(0)
    model = fx.build_original(vq_model, vqkd, spec)
    state = model.state_dict()
    shapes = {k: list(v.shape) for k, v in state.items() if not fx._is_buffer(k)}
    model.load_state_dict({**state, **random_state_dict(shapes, spec["weights_seed"])}, strict=True)
    return model.eval()


def _child_tokenizer(upstream: Path, repeats: int) -> dict:
    import torch

    from vistok.modeling.tokenflow.convert_tokenflow import build_model

    torch.set_num_threads(NUM_THREADS)
    original = _original_tokenizer(upstream, RELEASE)
    ours = build_model(original.state_dict(), "clip").eval()
    x = torch.rand(RELEASE["batch"], 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def run_original():
        _, _, ids = original.encode(x)
        return ids, original.decode_code(ids)[1]

    def run_ours():
        ids = ours.encode(x).token_ids
        return ids, ours.decode(ids)

    times = {"original": [], "vistok": []}
    same, diff = [], []
    with torch.inference_mode():
        run_original(), run_ours()
        for r in range(repeats):
            res = {}
            for name in (("original", "vistok") if r % 2 == 0 else ("vistok", "original")):
                fn = run_original if name == "original" else run_ours
                start = time.perf_counter()
                res[name] = fn()
                times[name].append(time.perf_counter() - start)
            same.append(bool(torch.equal(res["original"][0], res["vistok"][0])))
            diff.append(float((res["original"][1] - res["vistok"][1]).abs().max()))
        peaks = {}
        for name, fn in (("original", run_original), ("vistok", run_ours)):
            base = reset_peak_rss()
            fn()
            peaks[name] = round(peak_rss_since_reset_kb(base) / 1024, 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": RELEASE["batch"], "image_size": 256, "num_tokens": 817,
            "seconds_median": {k: round(v, 3) for k, v in med.items()},
            "seconds_all": {k: [round(t, 3) for t in v] for k, v in times.items()},
            "speedup_vistok_over_original": round(med["original"] / med["vistok"], 3),
            **paired_speedup(times["original"], times["vistok"]),
            "ids_equal_every_call": all(same), "pixels_max_abs_diff": max(diff),
            "peak_rss_mib_above_start (same process, sequential; indicative)": peaks}


def _t2i_state(width: int, layers: int):
    """The t2i LLM's original state-dict shapes and seeded random weights (shared by both children)."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from _random_weights import random_state_dict

    vocab, heads, mlp = TEXT_VOCAB + 32768, max(1, width // 128), int(width * 8 / 3) // 64 * 64
    shapes = {"model.embed_tokens.weight": [vocab, width], "model.norm.weight": [width], "lm_head.weight": [vocab, width],
              "model.pos_1LC": [817, width], "model.lvl_embed.weight": [10, width],
              "model.mm_projector.0.weight": [width, 40], "model.mm_projector.0.bias": [width],
              "model.mm_projector.2.weight": [width, width], "model.mm_projector.2.bias": [width]}
    head_dim = width // heads
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": [width, width], p + "self_attn.k_proj.weight": [width, width],
                       p + "self_attn.v_proj.weight": [width, width], p + "self_attn.o_proj.weight": [width, width],
                       p + "self_attn.qknorm.query_norm.weight": [head_dim], p + "self_attn.qknorm.key_norm.weight": [head_dim],
                       p + "mlp.gate_proj.weight": [mlp, width], p + "mlp.up_proj.weight": [mlp, width],
                       p + "mlp.down_proj.weight": [width, mlp], p + "input_layernorm.weight": [width],
                       p + "post_attention_layernorm.weight": [width]})
    llm = dict(hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads,
               num_key_value_heads=heads, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=2048,
               vocab_size=vocab)
    return llm, random_state_dict(shapes, 8080)


def _prompts(batch: int) -> list[list[int]]:
    """[prompts; negative prompts]: BOS + 20 random word ids each (before crop_and_encode)."""
    import torch

    g = torch.Generator().manual_seed(3)
    return [[1] + torch.randint(3, 32000, (20,), generator=g).tolist() for _ in range(2 * batch)]


def _crop_and_encode(ids: list[int]) -> list[int]:
    """The original crop_and_encode_text_and_img: left-padded with [PAD] (32000) to 128, then <img> (32001)."""
    return [32000] * (PROMPT_LENGTH - len(ids)) + ids + [32001]


def _child_t2i_original(upstream: Path, width: int, layers: int, repeats: int, batch: int) -> dict:
    import contextlib
    import io

    import torch

    torch.set_num_threads(NUM_THREADS)
    tokenizer = _original_tokenizer(upstream, RELEASE)
    sys.path.insert(0, str(upstream / "t2i"))
    with contextlib.redirect_stdout(io.StringIO()):
        llava_llama = __import__("llava_t2i.model.language_model.llava_llama", fromlist=["x"])
        llava_arch = __import__("llava_t2i.model.llava_arch", fromlist=["x"])
        vt = __import__("llava_t2i.model.multimodal_encoder.vision_tokenizer", fromlist=["x"])

    def build_vision_tower(config, **kwargs):
        tower = vt.VQTower.__new__(vt.VQTower)
        torch.nn.Module.__init__(tower)
        tower.is_loaded, tower.vision_tower_name, tower.vq_type = True, "bench", vt.VQType.TOKEN_FLOW
        tower.vq_model, tower.image_size = [tokenizer], 256
        return tower

    llava_arch.build_vision_tower = build_vision_tower
    llm, state = _t2i_state(width, layers)
    config = llava_llama.LlavaConfig(mm_vision_tower="bench", mm_hidden_size=40, mm_projector_type="mlp2x_gelu",
                                     tokenizer_model_max_length=PROMPT_LENGTH + 1 + 817 + 1, tokenizer_padding_side="right",
                                     pad_token_id=32000, bos_token_id=1, attn_implementation="eager", **llm)
    config._attn_implementation = "eager"
    with contextlib.redirect_stdout(io.StringIO()):
        model = llava_llama.LlavaLlamaForCausalLM(config)
    model.load_state_dict(state, strict=False)
    model.eval()
    model.image_token_start, model.image_token_end, model.pad_token_id = TEXT_VOCAB, TEXT_VOCAB + 32767, 32000
    sampled, original = [], llava_llama.sample_with_top_k_top_p_

    def recording(*a, **k):
        out = original(*a, **k)
        sampled.append(out[:, :, 0].clone())
        return out

    llava_llama.sample_with_top_k_top_p_ = recording
    rows = [_crop_and_encode(r) for r in _prompts(batch)]

    def run(seed):
        sampled.clear()
        with contextlib.redirect_stdout(io.StringIO()):
            model.autoregressive_infer_cfg(B=batch, prefix_text_codes=[torch.tensor(r) for r in rows], g_seed=seed,
                                           cfg=SAMPLING["cfg"], topk_list=[SAMPLING["top_k"]], topp_list=[SAMPLING["top_p"]])
        return (torch.cat(sampled, dim=1) - TEXT_VOCAB).tolist()

    return _time_child(run, repeats)


def _child_t2i_vistok(upstream: Path, width: int, layers: int, repeats: int, batch: int) -> dict:
    import torch

    from vistok import TokenFlowTextToImagePipeline
    from vistok.modeling.tokenflow.configuration_tokenflow import TokenFlowT2IConfig
    from vistok.modeling.tokenflow.convert_tokenflow import build_model, convert_t2i_state_dict
    from vistok.modeling.tokenflow.modeling_tokenflow import TokenFlowT2IForCausalLM

    torch.set_num_threads(NUM_THREADS)
    tokenizer = build_model(_original_tokenizer(upstream, RELEASE).state_dict(), "clip").eval()
    llm, state = _t2i_state(width, layers)
    config = TokenFlowT2IConfig(codebook_size=32768, image_token_start=TEXT_VOCAB, patch_nums=RELEASE["scales"], code_dim=40,
                                projector_type="mlp2x_gelu", prompt_length=PROMPT_LENGTH, pad_token_id=32000, bos_token_id=1,
                                image_start_token_id=32001, **llm)
    transformer = TokenFlowT2IForCausalLM(config)
    missing, unexpected = transformer.load_state_dict(convert_t2i_state_dict(state), strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    transformer.eval()
    pipe = TokenFlowTextToImagePipeline(image_tokenizer=tokenizer, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    rows = _prompts(batch)

    def run(seed):
        ids = pipe.sample(prompt_ids=rows[:batch], negative_prompt_ids=rows[batch:],
                          guidance_scale=SAMPLING["cfg"], top_k=SAMPLING["top_k"], top_p=SAMPLING["top_p"],
                          generator=torch.Generator().manual_seed(seed))
        pipe.image_tokenizer.decode(ids)  # the original's autoregressive_infer_cfg ends with decode_to_img_pt
        return ids.tolist()

    return _time_child(run, repeats)


def _time_child(run, repeats: int) -> dict:
    import torch

    with torch.inference_mode():
        run(999)
        times, samples = [], []
        base = reset_peak_rss()
        for r in range(repeats):
            start = time.perf_counter()
            samples.append(run(1000 + r))
            times.append(time.perf_counter() - start)
        peak = peak_rss_since_reset_kb(base)
    return {"seconds_all": [round(t, 3) for t in times], "seconds_median": round(statistics.median(times), 3),
            "peak_rss_mib_above_start": round(peak / 1024, 1), "samples": samples}


def _spawn(python: str, args: list[str], timeout: float) -> dict:
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run([python, __file__, *args], capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {"error": proc.stderr[-2000:]}
    return json.loads(lines[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, required=True)
    parser.add_argument("--original-python", default=None, help="an interpreter with transformers 4.43.4 (for the t2i part)")
    parser.add_argument("--parts", nargs="+", default=["tokenizer", "t2i"], choices=["tokenizer", "t2i"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--t2i-width", type=int, default=512)
    parser.add_argument("--t2i-layers", type=int, default=4)
    parser.add_argument("--child", choices=["tokenizer", "t2i-original", "t2i-vistok"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    upstream = args.upstream.resolve()
    if args.child == "tokenizer":
        print(json.dumps(_child_tokenizer(upstream, args.repeats)))
        return 0
    if args.child == "t2i-original":
        print(json.dumps(_child_t2i_original(upstream, args.t2i_width, args.t2i_layers, args.repeats, args.batch)))
        return 0
    if args.child == "t2i-vistok":
        print(json.dumps(_child_t2i_vistok(upstream, args.t2i_width, args.t2i_layers, args.repeats, args.batch)))
        return 0
    result = {"machine": machine_info(), "versions": versions("torch", "transformers"), "threads": NUM_THREADS,
              "dtype": "float32", "goal": "vistok >= 1.0x the original"}
    common = ["--upstream", str(upstream), "--repeats", str(args.repeats), "--batch", str(args.batch),
              "--t2i-width", str(args.t2i_width), "--t2i-layers", str(args.t2i_layers)]
    if "tokenizer" in args.parts:
        result["tokenizer"] = _spawn(sys.executable, ["--child", "tokenizer", *common], 3600)
    if "t2i" in args.parts:
        if not args.original_python:
            raise SystemExit("--original-python (transformers 4.43.4) is needed for the t2i part")
        original = _spawn(args.original_python, ["--child", "t2i-original", *common], 3600)
        ours = _spawn(sys.executable, ["--child", "t2i-vistok", *common], 3600)
        t2i = {"setting": {"width": args.t2i_width, "layers": args.t2i_layers, "prompt_length": PROMPT_LENGTH,
                           "batch": args.batch, **SAMPLING}, "original (transformers 4.43.4 child)": original,
               "vistok": ours}
        if "error" not in original and "error" not in ours:
            t2i["samples_equal_every_call"] = original.pop("samples") == ours.pop("samples")
            t2i["speedup_vistok_over_original"] = round(original["seconds_median"] / ours["seconds_median"], 3)
        result["t2i"] = t2i
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
