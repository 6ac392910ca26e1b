"""VAR: the multi-scale VQVAE tokenizer, the next-scale transformer and NextScalePipeline.

Parity with the original FoundationVision/VAR code (tests/fixtures/README.md, "var/"): the original
release files are rebuilt from the fixture's seeds and key lists, converted with ``vistok convert``,
and compared with what the original code computed: token ids identical, pixels and logits within
1e-4, seeded samples identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import vistok  # noqa: F401  (registers the model types)
from vistok import NextScalePipeline, VARConfig, VARTransformer, VARVQVAE, VARVQVAEConfig
from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.var.convert_var import convert as convert_var
from vistok.modeling.var.convert_var import convert_vae as convert_var_vae
from _random_weights import random_state_dict

FIXTURES = Path(__file__).parent / "fixtures" / "var"
META = json.loads((FIXTURES / "var.json").read_text())
TENSORS = load_file(str(FIXTURES / "var.safetensors"))
VARIANTS = tuple(META["variants"])
BUFFERS = ("lvl_1L", "attn_bias_for_masking", "zero_k_bias", "ema_vocab_hit_SV")


def expected(name: str) -> dict[str, torch.Tensor]:
    return {k[len(name) + 1:]: v for k, v in TENSORS.items() if k.startswith(name + ".")}


def original_release(meta: dict) -> tuple[dict, dict]:
    """The original VQVAE and VAR state dicts (random weights of the fixture's seeds, buffers as VAR builds them)."""
    def weights(shapes, seed):
        return random_state_dict({k: v for k, v in shapes.items() if k.rsplit(".", 1)[-1] not in BUFFERS}, seed)

    vae = weights(meta["vae_state_dict_shapes"], meta["weights_seed"])
    vae["quantize.ema_vocab_hit_SV"] = torch.zeros(meta["vae_state_dict_shapes"]["quantize.ema_vocab_hit_SV"])
    var = weights(meta["var_state_dict_shapes"], meta["weights_seed"] + 1)
    levels = torch.cat([torch.full((p * p,), k) for k, p in enumerate(meta["vae_config"]["v_patch_nums"])])
    var["lvl_1L"] = levels[None]
    var["attn_bias_for_masking"] = torch.where(levels[:, None] >= levels[None], 0.0, -torch.inf)[None, None]
    for key, shape in meta["var_state_dict_shapes"].items():
        if key.endswith("zero_k_bias"):
            var[key] = torch.zeros(shape)
    return vae, var


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Per variant: (pipeline, meta, expected, pipeline folder, tokenizer folder). "main" converts the
    VQVAE on its own first; "shared_aln" hands the generator converter the original VQVAE file."""
    root = tmp_path_factory.mktemp("var")
    out = {}
    for name in VARIANTS:
        meta = META["variants"][name]
        vae_sd, var_sd = original_release(meta)
        torch.save(vae_sd, root / f"{name}-vae.pth")
        torch.save(var_sd, root / f"{name}-var.pth")
        pipe_dir, tok_dir = root / f"{name}-pipeline", root / f"{name}-tokenizer"
        if name == "main":
            nums = ",".join(map(str, meta["vae_config"]["v_patch_nums"]))
            assert cli_main(["convert", "var-vqvae", "--original", str(root / f"{name}-vae.pth"), "--patch-nums", nums,
                             "--output", str(tok_dir)]) == 0
            tokenizer = str(tok_dir)
        else:
            tokenizer = str(root / f"{name}-vae.pth")
        assert cli_main(["convert", "var", "--original", str(root / f"{name}-var.pth"), "--tokenizer", tokenizer,
                         "--output", str(pipe_dir)]) == 0
        pipe = NextScalePipeline.from_pretrained(pipe_dir)
        pipe.set_progress_bar_config(disable=True)
        out[name] = (pipe, meta, expected(name), pipe_dir, tok_dir)
    return out


# -- tokenizer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_vqvae_matches_original(converted, name):
    pipe, meta, t, *_ = converted[name]
    tok = pipe.image_tokenizer
    with torch.no_grad():
        enc = tok.encode(t["pixel_values"])
        assert torch.equal(enc.token_ids, t["token_ids"])
        torch.testing.assert_close(enc.latents, t["f_hat"], atol=1e-4, rtol=0)
        scales = len(meta["vae_config"]["v_patch_nums"])
        for k in range(scales):
            torch.testing.assert_close(tok.decode(t["token_ids"], up_to_scale=k), t[f"reconstruction.{k}"], atol=1e-4, rtol=0)
        torch.testing.assert_close(tok.decode(t["token_ids"]), t[f"reconstruction.{scales - 1}"], atol=1e-4, rtol=0)
        # a whole-scale prefix of the ids decodes like up_to_scale
        prefix = t["token_ids"][:, : tok.config.scale_offsets[2]]
        torch.testing.assert_close(tok.decode(prefix), t["reconstruction.1"], atol=1e-4, rtol=0)
        torch.testing.assert_close(tok.decode_latents(enc.latents), t[f"reconstruction.{scales - 1}"], atol=1e-4, rtol=0)


def test_vqvae_config_and_auto_loading(converted):
    _, meta, t, _, tok_dir = converted["main"]
    tok = AutoModel.from_pretrained(tok_dir)
    assert isinstance(tok, VARVQVAE)
    cfg = tok.config
    assert (cfg.model_type, cfg.token_layout, cfg.image_size, cfg.num_tokens) == ("vistok_var_vqvae", "multiscale", 64, 30)
    assert cfg.scale_offsets == [0, 1, 5, 14, 30] and cfg.scale_lengths == [1, 4, 9, 16]
    assert (tok_dir / "preprocessor_config.json").is_file() and "vistok convert" not in (tok_dir / "README.md").read_text()[:3]
    maps = tok.split_scales(t["token_ids"])
    assert [m.shape[1:] for m in maps] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert torch.equal(tok.merge_scales(maps), t["token_ids"])
    # the released configuration's layout: 680 tokens at 256 px
    released = VARVQVAEConfig()
    assert (released.num_tokens, released.image_size, released.num_scales) == (680, 256, 10)


def test_vqvae_forward_trains():
    tok = VARVQVAE(VARVQVAEConfig(codebook_size=16, z_channels=4, channels=32, channel_mult=[1, 2], patch_nums=[1, 2, 4]))
    assert tok.config.image_size == 8
    tok.train()
    out = tok(torch.rand(2, 3, 8, 8) * 2 - 1)
    assert out.reconstruction.shape == (2, 3, 8, 8) and out.token_ids.shape == (2, 21)
    (out.reconstruction.square().mean() + out.quantizer_loss).backward()
    assert tok.encoder.conv_in.weight.grad is not None and tok.quantizer.embedding.weight.grad is not None


# -- transformer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_logits_match_original(converted, name):
    pipe, meta, t, *_ = converted[name]
    labels = torch.tensor(meta["labels"])
    inputs = pipe.image_tokenizer.quantizer.teacher_forcing_input(t["token_ids"])
    torch.testing.assert_close(inputs, t["var_input"], atol=1e-5, rtol=0)
    with torch.no_grad():
        cond = pipe.transformer(labels, inputs).logits
        uncond = pipe.transformer(labels, inputs, drop_labels=torch.ones(len(labels), dtype=torch.bool)).logits
    torch.testing.assert_close(cond, t["logits_cond"], atol=1e-4, rtol=0)
    torch.testing.assert_close(uncond, t["logits_uncond"], atol=1e-4, rtol=0)


def test_kv_cached_scales_equal_teacher_forcing(converted):
    """Scale by scale over the cache gives the block-causal teacher-forcing logits."""
    pipe, meta, t, *_ = converted["main"]
    labels = torch.tensor(meta["labels"])
    offsets, first = pipe.image_tokenizer.config.scale_offsets, 1
    inputs = t["var_input"]
    cache, per_scale = None, []
    with torch.no_grad():
        for k in range(len(offsets) - 1):
            x = None if k == 0 else inputs[:, offsets[k] - first: offsets[k + 1] - first]
            out = pipe.transformer(labels, x, scale_index=k, cache=cache)
            cache = out.cache
            per_scale.append(out.logits)
    torch.testing.assert_close(torch.cat(per_scale, dim=1), t["logits_cond"], atol=1e-4, rtol=0)


def test_transformer_auto_loading_and_training_loss(converted):
    _, meta, t, pipe_dir, _ = converted["main"]
    model = AutoModel.from_pretrained(pipe_dir / "transformer")
    assert isinstance(model, VARTransformer) and model.config.model_type == "vistok_var"
    assert model.config.patch_nums == [1, 2, 3, 4] and model.config.attn_l2_norm and not model.config.shared_adaln
    model.train()
    out = model(torch.tensor(meta["labels"]), t["var_input"], labels=t["token_ids"], generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert out.loss.ndim == 0 and model.blocks[0].attention.logit_scale.grad is not None


def test_fresh_models_initialise_like_var():
    cfg = VARConfig(codebook_size=16, z_channels=4, patch_nums=[1, 2], num_classes=3, depth=2, hidden_size=64, num_attention_heads=2)
    model = VARTransformer(cfg)
    assert torch.allclose(model.blocks[0].attention.logit_scale, torch.full((1, 2, 1, 1), 4.0).log())
    assert model.lm_head.weight.std() < 0.01 and model.lm_head.bias.abs().max() == 0
    gates = model.blocks[0].adaln.weight[: 2 * 64]
    assert gates.abs().max() < 1e-3  # init_adaln_gamma
    assert model.block_causal_mask.shape == (1, 1, 5, 5) and torch.isinf(model.block_causal_mask[0, 0, 0, 1:]).all()


# -- sampling ------------------------------------------------------------------------------------------
SAMPLE_CASES = [(name, setting) for name in VARIANTS for setting in META["variants"][name]["sampling"]]


@pytest.mark.parametrize("name, setting", SAMPLE_CASES)
def test_seeded_samples_equal_original(converted, name, setting):
    pipe, meta, t, *_ = converted[name]
    s = meta["sampling"][setting]
    labels = None if "labels" in s and s["labels"] is None else meta["labels"]
    kwargs = dict(class_labels=labels, guidance_scale=s["cfg"], top_k=s["top_k"], top_p=s["top_p"],
                  smooth_sampling=s["more_smooth"], batch_size=len(meta["labels"]))

    def generator():
        if s["g_seed"] is None:  # the original draws from the global RNG without g_seed
            torch.manual_seed(s["global_seed"])
            return None
        return torch.Generator().manual_seed(s["g_seed"])

    ids, _ = pipe.sample(generator=generator(), **kwargs)
    assert torch.equal(ids, t[f"sample.{setting}.token_ids"])
    images = pipe(generator=generator(), output_type="pt", **kwargs).images
    torch.testing.assert_close(images, t[f"sample.{setting}.images"], atol=1e-4, rtol=0)


def test_pipeline_outputs_and_defaults(converted):
    pipe, *_ = converted["main"]
    assert pipe.transformer.config.sampling_defaults == {"guidance_scale": 1.5, "top_k": 900, "top_p": 0.96, "smooth_sampling": False}
    pil = pipe(class_labels=[1, 2], generator=torch.Generator().manual_seed(0)).images
    assert len(pil) == 2 and pil[0].size == (64, 64)
    arr = pipe(class_labels=1, generator=torch.Generator().manual_seed(0), output_type="np", return_dict=False)[0]
    assert arr.shape == (1, 64, 64, 3) and 0 <= arr.min() and arr.max() <= 1
    ids = pipe.sample_tokens([1, 2], generator=torch.Generator().manual_seed(0))
    assert ids.shape == (2, 30) and torch.equal(ids, pipe.sample([1, 2], generator=torch.Generator().manual_seed(0))[0])


def _seed_hub_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> None:
    """Lay ``files`` (name -> file or folder) out as huggingface_hub's cache holds a downloaded snapshot."""
    import shutil

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    for name, src in files.items():
        if src.is_dir():
            shutil.copytree(src, snapshot / name)
        else:
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, snapshot / name)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)


def test_pipeline_from_repo_id_offline_and_push(converted, tmp_path, monkeypatch, hub_server):
    pipe, _, _, pipe_dir, _ = converted["main"]
    import huggingface_hub.constants as hf_constants

    pipe.push_to_hub("me/var-tiny")
    uploaded = hub_server.root / "me" / "var-tiny"
    assert (uploaded / "model_index.json").is_file() and (uploaded / "transformer" / "model.safetensors").is_file()
    assert "NextScalePipeline" in (uploaded / "README.md").read_text()

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    _seed_hub_cache(tmp_path / "cache", "someone/var-tiny", {"": pipe_dir})
    loaded = NextScalePipeline.from_pretrained("someone/var-tiny", cache_dir=tmp_path / "cache")
    loaded.set_progress_bar_config(disable=True)
    a = loaded.sample_tokens([3], generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, pipe.sample_tokens([3], generator=torch.Generator().manual_seed(1)))


def test_convert_from_hub_repo_id_with_preset(converted, tmp_path, monkeypatch):
    """`--original FoundationVision/var --preset var-d16` reads var_d16.pth from the local hub cache."""
    import huggingface_hub.constants as hf_constants

    _, meta, *_ , tok_dir = converted["main"]
    _, var_sd = original_release(meta)
    torch.save(var_sd, tmp_path / "var_d16.pth")
    cache = tmp_path / "cache"
    _seed_hub_cache(cache, "FoundationVision/var", {"var_d16.pth": tmp_path / "var_d16.pth"})
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    out = convert_var("FoundationVision/var", str(tmp_path / "out"), tokenizer=str(tok_dir), preset="var-d16")
    card = (out / "README.md").read_text()
    assert "base_model: FoundationVision/var" in card and "3.55" in card
    assert json.loads((out / "transformer" / "config.json").read_text())["sampling_defaults"]["top_k"] == 900


# -- bad input ------------------------------------------------------------------------------------------
def test_bad_input_names_the_expected_value(converted):
    pipe, meta, t, *_ = converted["main"]
    tok, model = pipe.image_tokenizer, pipe.transformer
    with pytest.raises(ValueError, match=r"30 tokens per image"):
        tok.decode(t["token_ids"][:, :7])
    with pytest.raises(ValueError, match=r"up_to_scale must be an integer in \[0, 3\]"):
        tok.decode(t["token_ids"], up_to_scale=4)
    with pytest.raises(ValueError, match=r"lie in \[0, 63\]"):
        tok.decode(t["token_ids"] + 64)
    with pytest.raises(ValueError, match=r"64x64"):
        tok.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 8, 4, 4\]"):
        tok.decode_latents(torch.zeros(1, 8, 3, 3))
    with pytest.raises(ValueError, match=r"\[2, 29, 8\]"):
        model(torch.tensor([1, 2]), t["var_input"][:, :, :4])
    with pytest.raises(ValueError, match=r"scale_index must be an int in \[0, 3\]"):
        model(torch.tensor([1, 2]), None, scale_index=4)
    with pytest.raises(ValueError, match=r"\[2, 4, 8\]"):
        model(torch.tensor([1, 2]), torch.zeros(2, 3, 8), scale_index=1)
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 9\]"):
        pipe(class_labels=[10])
    with pytest.raises(ValueError, match=r"top_p must be in \[0, 1\]"):
        pipe(class_labels=[1], top_p=1.5)
    with pytest.raises(ValueError, match=r"top_k must be an int >= 0"):
        pipe(class_labels=[1], top_k=-1)
    with pytest.raises(ValueError, match=r"output_type must be 'pil', 'np', 'pt' or 'latent'"):
        pipe(class_labels=[1], output_type="jpg")  # "latent" (token ids) is supported by every pipeline (issue 15)
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1"):
        pipe(class_labels=None)
    with pytest.raises(ValueError, match=r"pass an empty cache"):
        out = model(torch.tensor([1, 2]), None, scale_index=0)
        model(torch.tensor([1, 2]), t["var_input"], cache=out.cache)
    with pytest.raises(ValueError, match=r"patch_nums must be a non-empty sequence"):
        VARConfig(patch_nums=[])


def test_bfloat16_generation_runs():
    """A bf16 pipeline (weights loaded with dtype=torch.bfloat16) samples and decodes end to end."""
    tok = VARVQVAE(VARVQVAEConfig(codebook_size=16, z_channels=4, channels=32, channel_mult=[1, 2], patch_nums=[1, 2, 4]))
    gen = VARTransformer(VARConfig(codebook_size=16, z_channels=4, patch_nums=[1, 2, 4], num_classes=3, depth=1,
                                   hidden_size=64, num_attention_heads=1))
    pipe = NextScalePipeline(tok.to(torch.bfloat16).eval(), gen.to(torch.bfloat16).eval())
    pipe.set_progress_bar_config(disable=True)
    images = pipe([0, 2], generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (2, 3, 8, 8) and torch.isfinite(images).all()


def test_pipeline_rejects_mismatched_components(converted):
    pipe, *_ = converted["main"]
    other = VARTransformer(VARConfig(codebook_size=64, z_channels=8, patch_nums=[1, 2, 4], num_classes=10, depth=1,
                                     hidden_size=64, num_attention_heads=1))
    with pytest.raises(ValueError, match=r"scales \[1, 2, 4\]; the tokenizer's are \[1, 2, 3, 4\]"):
        NextScalePipeline(pipe.image_tokenizer, other)


def test_converter_errors_leave_nothing_behind(converted, tmp_path):
    _, meta, *_ = converted["main"]
    vae_sd, var_sd = original_release(meta)
    broken = dict(var_sd)
    del broken["blocks.1.ffn.fc2.weight"]
    torch.save(broken, tmp_path / "broken.pth")
    torch.save(vae_sd, tmp_path / "vae.pth")
    with pytest.raises(ConversionError, match=r"blocks\.1\.mlp\.fc2\.weight"):
        convert_var(str(tmp_path / "broken.pth"), str(tmp_path / "out"), tokenizer=str(tmp_path / "vae.pth"))
    # a VQVAE converted with other scales than the generator's
    assert cli_main(["convert", "var-vqvae", "--original", str(tmp_path / "vae.pth"), "--patch-nums", "1,2,4",
                     "--output", str(tmp_path / "tok124")]) == 0
    torch.save(var_sd, tmp_path / "var.pth")
    with pytest.raises(ConversionError, match=r"scales \[1, 2, 3, 4\]; the tokenizer's are \[1, 2, 4\]"):
        convert_var(str(tmp_path / "var.pth"), str(tmp_path / "out"), tokenizer=str(tmp_path / "tok124"))
    with pytest.raises(ConversionError, match=r"--patch-nums must be integers"):
        convert_var_vae(str(tmp_path / "vae.pth"), str(tmp_path / "out"), patch_nums="1,two")
    assert cli_main(["convert", "var", "--original", str(tmp_path / "missing.pth"), "--tokenizer", str(tmp_path / "vae.pth"),
                     "--output", str(tmp_path / "out")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pth", "tok124", "vae.pth", "var.pth"]
