"""STAR: the text-conditional next-scale transformer and NextScaleTextToImagePipeline against the original
Davinci-XLab/STAR-T2I code (tests/fixtures/README.md, "star/"): the original checkpoints are rebuilt from the
fixture's seeds and key lists, converted with ``vistok convert star`` (VAR's VQVAE alongside, the tiny CLIP
text tower from the fixture folder), and compared with what the original computed: logits within the float32
rounding bound of tests/_tolerances.py, text features and seeded samples identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vistok  # noqa: F401
from vistok import NextScaleTextToImagePipeline, STARConfig, STARTransformer
from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.star.convert_star import convert as convert_star
from vistok.pipelines.next_scale_t2i import masking_schedule
from _random_weights import random_state_dict
from _tolerances import assert_close_to_fp32_fixture, float64_copy, rounding_error
from _captioned import captioned_image_folder

FIXTURES = Path(__file__).parent / "fixtures" / "star"
META = json.loads((FIXTURES / "star.json").read_text())
TENSORS = load_file(str(FIXTURES / "star.safetensors"))
VARIANTS = tuple(META["variants"])
PROMPTS = META["prompts"]
BUFFERS = ("zero_k_bias", "ema_vocab_hit_SV")


def expected(name: str) -> dict[str, torch.Tensor]:
    return {k[len(name) + 1:]: v for k, v in TENSORS.items() if k.startswith(name + ".")}


def original_release(meta: dict) -> tuple[dict, dict]:
    def weights(shapes, seed):
        return random_state_dict({k: v for k, v in shapes.items() if k.rsplit(".", 1)[-1] not in BUFFERS}, seed)

    vae = weights(meta["vae_state_dict_shapes"], meta["weights_seed"])
    vae["quantize.ema_vocab_hit_SV"] = torch.zeros(meta["vae_state_dict_shapes"]["quantize.ema_vocab_hit_SV"])
    var = weights(meta["var_state_dict_shapes"], meta["weights_seed"] + 1)
    for key, shape in meta["var_state_dict_shapes"].items():
        if key.endswith("zero_k_bias"):
            var[key] = torch.zeros(shape)
    return vae, var


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("star")
    out = {}
    for name in VARIANTS:
        meta = META["variants"][name]
        vae_sd, var_sd = original_release(meta)
        torch.save(vae_sd, root / f"{name}-vae.pth")
        torch.save({"trainer": {"var_wo_ddp": var_sd}, "epoch": 2}, root / f"{name}-star.pth")  # the trainer checkpoint layout
        nums = ",".join(map(str, meta["vae_config"]["v_patch_nums"]))
        folder = root / f"{name}-pipeline"
        assert cli_main(["convert", "star", "--original", str(root / f"{name}-star.pth"), "--tokenizer", str(root / f"{name}-vae.pth"),
                         "--text-encoder", str(FIXTURES / "clip"), "--patch-nums", nums, "--sampler-from-scale", str(meta["var_config"]["sample_from_idx"] if name == "sampler" else 9),
                         "--output", str(folder)]) == 0
        pipe = NextScaleTextToImagePipeline.from_pretrained(folder)
        pipe.set_progress_bar_config(disable=True)
        out[name] = (pipe, meta, expected(name), folder)
    return out


def _text(t, rows=slice(None)):
    return t["text_states"][rows], t["text_mask"][rows], t["text_pooled"][rows]


def test_text_features_match_original(converted):
    pipe, _, t, _ = converted["main"]
    states, mask, pooled = pipe.encode_prompt(PROMPTS + [""] * len(PROMPTS))
    assert torch.equal(mask, t["text_mask"])
    assert torch.equal(states, t["text_states"]) and torch.equal(pooled, t["text_pooled"])


@pytest.mark.parametrize("name", VARIANTS)
@torch.no_grad()
def test_logits_match_original(converted, name):
    pipe, meta, t, _ = converted[name]
    batch = len(PROMPTS)
    inputs = pipe.image_tokenizer.teacher_forcing_input(t["token_ids"])
    assert_close_to_fp32_fixture(inputs, t["var_input"], rounding_error(inputs, float64_copy(pipe.image_tokenizer).teacher_forcing_input(t["token_ids"])), "input")
    states, mask, pooled = _text(t, slice(0, batch))
    model, model64 = pipe.transformer, float64_copy(pipe.transformer)
    with torch.no_grad():
        logits = model(states, pooled, inputs, mask).logits
        ref = model64(states.double(), pooled.double(), inputs.double(), mask).logits
        assert_close_to_fp32_fixture(logits, t["logits"], rounding_error(logits, ref), "logits")
        # the original's cross-attention batch quirk: sample 1's text does not reach sample 1
        other = states.clone()
        other[1] = torch.randn_like(other[1])
        assert torch.equal(model(other, pooled, inputs, mask).logits, logits)
        # per-sample cross-attention (the quirk turned off) = the original run one sample at a time
        model.config.cross_attention_first_sample_only = model64.config.cross_attention_first_sample_only = False
        try:
            logits = model(states, pooled, inputs, mask).logits
            ref = model64(states.double(), pooled.double(), inputs.double(), mask).logits
            assert_close_to_fp32_fixture(logits, t["logits_per_sample"], rounding_error(logits, ref), "per-sample logits")
        finally:
            model.config.cross_attention_first_sample_only = True
        if meta["var_config"]["enable_adaptive_norm"]:
            begin = model.scale_offsets[-2]
            feats = model(states, pooled, inputs, mask, output_hidden_states=True).hidden_states[-1][:, begin:]
            feats64 = model64(states.double(), pooled.double(), inputs.double(), mask, output_hidden_states=True).hidden_states[-1][:, begin:]
            k = len(model.config.patch_nums) - 1
            ours = model.sampler_logits(feats, t["sampler_codes"], pooled, k)
            ref = model64.sampler_logits(feats64, t["sampler_codes"].double(), pooled.double(), k)
            assert_close_to_fp32_fixture(ours, t["sampler_logits"], rounding_error(ours, ref), "sampler head logits")


def _sample_cases():
    return [(name, s) for name in VARIANTS for s in META["variants"][name]["sampling"]]


@pytest.mark.parametrize("name, sample", _sample_cases())
def test_seeded_samples_match_original(converted, name, sample):
    pipe, meta, t, _ = converted[name]
    s = meta["sampling"][sample]
    masking = s["w_mask"] and meta["var_config"]["enable_adaptive_norm"]  # the original ignores w_mask without the head
    torch.manual_seed(s["global_seed"])
    ids, f_hat = pipe.sample(PROMPTS, guidance_scale=s["cfg"], top_k=s["top_k"], top_p=s["top_p"], masking_sampler=masking,
                             generator=torch.Generator().manual_seed(s["g_seed"]))
    assert torch.equal(ids, t[f"sample.{sample}.token_ids"])
    if f"sample.{sample}.images" in t:
        images = pipe(PROMPTS, guidance_scale=s["cfg"], top_k=s["top_k"], top_p=s["top_p"], masking_sampler=masking,
                      generator=torch.Generator().manual_seed(s["g_seed"]), output_type="pt").images
        ref = t[f"sample.{sample}.images"]
        assert images.shape == ref.shape and float((images - ref).abs().max()) < 1e-4


def test_prompt_embeds_and_negative_prompt(converted):
    pipe, meta, t, _ = converted["main"]
    s = meta["sampling"]["cfg2_k10_p0.9"]
    states, mask, pooled = _text(t)
    b = len(PROMPTS)
    ids = pipe.sample_tokens(prompt_embeds=states[:b], prompt_attention_mask=mask[:b], pooled_prompt_embeds=pooled[:b],
                             negative_prompt_embeds=states[b:], negative_prompt_attention_mask=mask[b:],
                             negative_pooled_prompt_embeds=pooled[b:], guidance_scale=s["cfg"], top_k=s["top_k"],
                             top_p=s["top_p"], generator=torch.Generator().manual_seed(s["g_seed"]))
    assert torch.equal(ids, t["sample.cfg2_k10_p0.9.token_ids"])
    other = pipe.sample_tokens(PROMPTS, negative_prompt="dog", guidance_scale=s["cfg"], generator=torch.Generator().manual_seed(s["g_seed"]))
    assert other.shape == ids.shape
    many = pipe.sample_tokens(PROMPTS[0], num_images_per_prompt=3, generator=torch.Generator().manual_seed(0))
    assert many.shape == (3, ids.shape[1])


def test_callback_and_bad_input(converted):
    pipe, *_ = converted["main"]
    seen = []
    pipe(PROMPTS[0], output_type="latent", generator=torch.Generator().manual_seed(0),
         callback_on_step_end=lambda p, k, _, kw: seen.append((k, kw["token_ids"].shape[1])) or kw)
    assert seen == [(0, 1), (1, 5), (2, 14), (3, 30)]
    with pytest.raises(ValueError, match="sampler head"):
        pipe(PROMPTS[0], masking_sampler=True)
    with pytest.raises(ValueError, match="height must be 64"):
        pipe(PROMPTS[0], height=128)
    with pytest.raises(ValueError, match="either prompt or prompt_embeds"):
        pipe(PROMPTS[0], prompt_embeds=torch.zeros(1, 77, 32))
    with pytest.raises(ValueError, match="pooled_prompt_embeds"):
        pipe(prompt_embeds=torch.zeros(1, 77, 32))
    with pytest.raises(ValueError, match="encoder_hidden_states must be"):
        pipe.transformer(torch.zeros(1, 77, 8), torch.zeros(1, 32))


def test_config_and_converter_errors(converted, tmp_path):
    pipe, meta, _, folder = converted["sampler"]
    cfg = pipe.transformer.config
    assert (cfg.model_type, cfg.num_sampler_blocks, cfg.rope_theta, cfg.rope_norm, cfg.text_hidden_size) == ("vistok_star", 3, 10000.0, 64.0, 32)
    assert "STAR" in (folder / "README.md").read_text()
    # the original Scheduler's counts (utils/mask_utils.py, arccos), read off the original code
    assert masking_schedule(8, 8) == [1, 5, 6, 8, 9, 11, 12, 12]
    assert masking_schedule(15, 64) == [1, 106, 151, 186, 216, 243, 268, 292, 314, 336, 357, 377, 397, 417, 435]
    released = STARConfig()
    assert (released.num_tokens, released.hidden_size) == (680, 1024)
    with pytest.raises(ValueError, match="divisible by 4"):
        STARConfig(hidden_size=36, num_attention_heads=2)
    bad = tmp_path / "bad.pth"
    torch.save({"trainer": {"var_wo_ddp": {"pos_start": torch.zeros(1, 1, 64)}}}, bad)
    with pytest.raises(ConversionError):
        convert_star(str(bad), str(tmp_path / "out"), tokenizer=str(folder))


def test_star_trains_on_captions_and_exports_a_pipeline(tmp_path):
    """``vistok train generator`` with ``model.family: star``: the next-scale loss on a caption column through the
    frozen CLIP text tower (text dropout for guidance), exported as a NextScaleTextToImagePipeline."""
    import shutil

    import numpy as np

    from vistok import VARVQVAE, VARVQVAEConfig, VistokImageProcessor
    from vistok.training import load_train_config
    from vistok.training.generator import GeneratorTrainer

    data = captioned_image_folder(tmp_path / "captioned", 12)
    torch.manual_seed(0)
    vae = VARVQVAE(VARVQVAEConfig(codebook_size=16, z_channels=4, channels=32, channel_mult=[1, 2], patch_nums=[1, 2, 4]))
    vae.save_pretrained(tmp_path / "vae")
    VistokImageProcessor.from_model_config(vae.config).save_pretrained(tmp_path / "vae")
    clip = tmp_path / "clip"  # one folder holding the CLIP text tower and its tokenizer
    shutil.copytree(FIXTURES / "clip" / "text_encoder", clip)
    for f in (FIXTURES / "clip" / "tokenizer").iterdir():
        shutil.copy(f, clip / f.name)
    config = load_train_config("generator", overrides={
        "model": {"family": "star", "config": dict(depth=1, hidden_size=32, num_attention_heads=2, text_hidden_size=32,
                                                   text_dropout=0.5)},
        "data": {"dataset": str(data), "label_column": None, "caption_column": "text"},
        "training": {"output_dir": str(tmp_path / "star"), "batch_size": 2, "max_steps": 2, "log_every": 1, "image_every": 2},
        "loss": {"tokenizer": str(tmp_path / "vae"), "text_encoder": str(clip)}})
    trainer = GeneratorTrainer(config)
    summary = trainer.train()
    cfg = trainer.accelerator.unwrap_model(trainer.model).config
    assert (cfg.patch_nums, cfg.codebook_size, cfg.z_channels) == ([1, 2, 4], 16, 4)
    first = json.loads((tmp_path / "star" / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(first["loss"] - np.log(16)) < 1.0 and summary["step"] == 2
    pipe = NextScaleTextToImagePipeline.from_pretrained(tmp_path / "star" / "final")
    images = pipe(prompt=["a red car"], generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (1, 8, 8, 3) and (tmp_path / "star" / "images" / "step-0000002.png").is_file()
