"""LlamaGen: the VQ tokenizer and the GPT (class- and text-conditional) against the original code
(tests/fixtures/README.md, "llamagen/"), the converters and CLI, the pipelines, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import vistok
from vistok import AutoregressiveImagePipeline, LlamaGenConfig, LlamaGenTransformer, LlamaGenVQModel, TextToImageAutoregressivePipeline
from vistok.cli import main as cli_main
from _tolerances import assert_matches_original
from vistok.conversion import ConversionError
from vistok.modeling.llamagen.convert_llamagen import convert_gpt as convert_llamagen_gpt
from vistok.modeling.llamagen.convert_llamagen import convert_vq as convert_llamagen_vq
from _random_weights import random_state_dict

FIXTURES = Path(__file__).parent / "fixtures" / "llamagen"
SETTINGS = ("cfg_topk", "cfg_topp_interval", "topk_topp_temperature", "no_guidance", "greedy")


def load(name):
    return json.loads((FIXTURES / f"{name}.json").read_text()), load_file(str(FIXTURES / f"{name}.safetensors"))


def original_weights(meta):
    return random_state_dict(meta["state_dict_shapes"], meta["weights_seed"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The fixtures' random weights saved in the release layouts and converted through the CLI."""
    root = tmp_path_factory.mktemp("llamagen")
    vq_meta, _ = load("vq")
    torch.save({"model": original_weights(vq_meta)}, root / "vq_tiny.pt")  # VQ releases: ckpt["model"]
    assert cli_main(["convert", "llamagen-vq", "--original", str(root / "vq_tiny.pt"), "--output", str(root / "vq"),
                     "--image-size", "32"]) == 0
    c2i_meta, _ = load("gpt_c2i")
    state = original_weights(c2i_meta)
    # a bare (FSDP-style) state dict, with what old / post-sampling checkpoints carry: freqs_cis and KV caches
    state["freqs_cis"] = torch.zeros(17, 8, 2)
    state["layers.0.attention.kv_cache.k_cache"] = torch.zeros(2, 4, 24, 16)
    torch.save(state, root / "c2i_tiny.pt")
    assert cli_main(["convert", "llamagen", "--original", str(root / "c2i_tiny.pt"), "--tokenizer", str(root / "vq"),
                     "--image-size", "16", "--num-heads", "4", "--output", str(root / "c2i")]) == 0
    t2i_meta, _ = load("gpt_t2i")
    torch.save({"model": original_weights(t2i_meta)}, root / "t2i_tiny.pt")
    assert cli_main(["convert", "llamagen", "--original", str(root / "t2i_tiny.pt"), "--tokenizer", str(root / "vq_tiny.pt"),
                     "--image-size", "16", "--num-heads", "4", "--output", str(root / "t2i")]) == 0
    return root


@pytest.fixture(scope="module")
def c2i(converted):
    return AutoregressiveImagePipeline.from_pretrained(converted / "c2i")


@pytest.fixture(scope="module")
def t2i(converted):
    return TextToImageAutoregressivePipeline.from_pretrained(converted / "t2i")


# -- tokenizer -------------------------------------------------------------------------------------
def test_vq_matches_original(converted):
    _, expected = load("vq")
    tok = AutoModel.from_pretrained(converted / "vq")
    assert isinstance(tok, LlamaGenVQModel) and tok.config.token_layout == "2d" and tok.config.num_tokens == 64
    with torch.no_grad():
        enc = tok.encode(expected["pixel_values"])
        assert torch.equal(enc.token_ids, expected["token_ids"])
    pixels = expected["pixel_values"]
    assert_matches_original(tok, lambda m: m.encode(pixels.to(m.dtype)).latents, expected["quantized"].flatten(1, 2), "latents")
    assert_matches_original(tok, lambda m: m.decode(expected["token_ids"]), expected["reconstruction"], "decode")
    assert_matches_original(tok, lambda m: m(pixels.to(m.dtype)).reconstruction, expected["reconstruction"], "forward")
    card = (converted / "vq" / "README.md").read_text()
    assert "library_name: vistok" in card and "license: mit" in card


def test_vq_other_sizes_and_bad_input(converted):
    tok = AutoModel.from_pretrained(converted / "vq")
    with torch.no_grad():
        assert tok.encode(torch.zeros(1, 3, 48, 48)).token_ids.shape == (1, 12, 12)  # fully convolutional
        assert tok.decode(torch.zeros(1, 5, 5, dtype=torch.long)).shape == (1, 3, 20, 20)
    with pytest.raises(ValueError, match="square images whose side is a multiple of 4"):
        tok.encode(torch.zeros(1, 3, 30, 30))
    with pytest.raises(ValueError, match="square images whose side is a multiple of 4"):
        tok.encode(torch.zeros(1, 3, 32, 48))
    with pytest.raises(ValueError, match=r"token_ids must be a square grid \[B, h, h\] \(e.g. \[B, 8, 8\]\)"):
        tok.decode(torch.zeros(1, 64, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token_ids must lie in \[0, 63\]"):
        tok.decode(torch.full((1, 8, 8), 64))
    with pytest.raises(ValueError, match="fixed-length 2D tokenizer"):
        tok.encode(torch.zeros(1, 3, 32, 32), num_tokens=16)


# -- generator -------------------------------------------------------------------------------------
def test_c2i_logits_match_original(c2i):
    meta, expected = load("gpt_c2i")
    model = AutoModel.from_pretrained(Path(c2i.transformer.config._name_or_path))
    assert isinstance(model, LlamaGenTransformer) and model.config.num_classes == 10 and model.config.grid_size == 4
    labels = expected["class_labels"]
    drop = torch.ones(3, dtype=torch.bool)
    assert_matches_original(model, lambda m: m(expected["input_ids"], class_labels=labels).logits, expected["logits_cond"], "cond")
    assert_matches_original(model, lambda m: m(expected["input_ids"], class_labels=labels, drop_condition=drop).logits,
                            expected["logits_uncond"], "uncond")


def test_t2i_logits_match_original(t2i):
    meta, expected = load("gpt_t2i")
    model = t2i.transformer
    embeds, mask = TextToImageAutoregressivePipeline.left_pad(expected["prompt_embeds"], expected["prompt_attention_mask"])
    keys = torch.cat([mask.bool(), torch.ones(2, expected["input_ids"].shape[1], dtype=torch.bool)], dim=1)
    drop = torch.ones(2, dtype=torch.bool)
    assert_matches_original(model, lambda m: m(expected["input_ids"], caption_embeds=embeds.to(m.dtype), attention_mask=keys).logits,
                            expected["logits_cond"], "cond")
    assert_matches_original(model, lambda m: m(expected["input_ids"], caption_embeds=embeds.to(m.dtype), attention_mask=keys,
                                               drop_condition=drop).logits, expected["logits_uncond"], "uncond")


def _kwargs(s):
    return dict(guidance_scale=s["cfg_scale"], cfg_interval=s["cfg_interval"], temperature=s["temperature"], top_k=s["top_k"],
                top_p=s["top_p"], do_sample=s["sample_logits"], generator=torch.Generator().manual_seed(s["seed"]))


@pytest.mark.parametrize("setting", SETTINGS)
def test_c2i_seeded_samples_equal_original_generate(c2i, setting):
    meta, expected = load("gpt_c2i")
    ids = c2i.sample_tokens(meta["condition"], **_kwargs(meta["settings"][setting]))
    assert ids.shape == (3, 4, 4)
    assert torch.equal(ids.flatten(1), expected[f"tokens_{setting}"])


@pytest.mark.parametrize("setting", ["cfg_topk", "cfg_topp_interval", "no_guidance"])
def test_t2i_seeded_samples_equal_original_generate(t2i, setting):
    meta, expected = load("gpt_t2i")
    ids = t2i.sample_tokens(prompt_embeds=expected["prompt_embeds"], prompt_attention_mask=expected["prompt_attention_mask"],
                            **_kwargs(meta["settings"][setting]))
    assert torch.equal(ids.flatten(1), expected[f"tokens_{setting}"])


def test_compiled_decode_step_samples_the_same(c2i):
    meta, expected = load("gpt_c2i")
    pytest.importorskip("torch._inductor")
    ids = c2i.sample_tokens(meta["condition"], compile=True, **_kwargs(meta["settings"]["cfg_topk"]))
    assert torch.equal(ids.flatten(1), expected["tokens_cfg_topk"])


def test_c2i_pipeline_outputs(c2i, converted):
    config = c2i.transformer.config
    assert config.sampling_defaults == {"guidance_scale": 4.0, "cfg_interval": -1, "temperature": 1.0, "top_k": 2000, "top_p": 1.0}
    out = c2i(class_labels=[1, 2], generator=torch.Generator().manual_seed(0))
    assert len(out.images) == 2 and isinstance(out.images[0], PIL.Image.Image) and out.images[0].size == (16, 16)
    arr = c2i(class_labels=[1], output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert arr.shape == (1, 16, 16, 3) and arr.min() >= 0 and arr.max() <= 1
    (pt,) = c2i(class_labels=[1], output_type="pt", return_dict=False, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), arr, atol=1e-6)
    ids = c2i(class_labels=[1], output_type="latent", generator=torch.Generator().manual_seed(0)).images
    with torch.no_grad():
        pixels = c2i.image_tokenizer.decode(ids)  # unclamped, as the original decoder computes them
    torch.testing.assert_close((pixels.clamp(-1, 1) + 1) / 2, pt, atol=1e-5, rtol=0)
    processor = json.loads((converted / "c2i" / "image_tokenizer" / "preprocessor_config.json").read_text())
    assert processor["size"] == 16 and processor["pixel_range"] == [-1.0, 1.0]
    assert "Released sampling settings" in (converted / "c2i" / "README.md").read_text()


def _tiny_t5(caption_dim):
    """A random T5 encoder and a word-level tokenizer built offline (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    words = ["<pad>", "</s>", "<unk>", "a", "photo", "of", "cat", "dog", "red", "car"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    encoder = T5EncoderModel(T5Config(vocab_size=len(words), d_model=caption_dim, d_kv=8, d_ff=64, num_layers=1, num_heads=4)).eval()
    return encoder, tokenizer


def test_t2i_with_a_t5_text_encoder(t2i, tmp_path):
    encoder, tokenizer = _tiny_t5(t2i.transformer.config.caption_dim)
    pipe = TextToImageAutoregressivePipeline(image_tokenizer=t2i.image_tokenizer, transformer=t2i.transformer,
                                             text_encoder=encoder, tokenizer=tokenizer)
    embeds, mask = pipe.encode_prompt(["A photo of a red car", "dog"])
    assert embeds.shape == (2, 120, 32) and mask.sum(1).tolist() == [7, 2]  # words + </s>
    a = pipe.sample_tokens(prompt=["A photo of a red car", "dog"], top_k=10, generator=torch.Generator().manual_seed(1))
    b = pipe.sample_tokens(prompt_embeds=embeds, prompt_attention_mask=mask, top_k=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    pipe.save_pretrained(tmp_path / "with-t5")
    again = TextToImageAutoregressivePipeline.from_pretrained(tmp_path / "with-t5")
    assert type(again.text_encoder).__name__ == "T5EncoderModel"
    images = again(prompt="a cat", top_k=10, output_type="pt", generator=torch.Generator().manual_seed(1)).images
    assert images.shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="prompt_embeds"):
        t2i(prompt="a cat")  # saved without a text encoder
    with pytest.raises(ValueError, match="gives 16"):
        TextToImageAutoregressivePipeline(t2i.image_tokenizer, t2i.transformer, *_tiny_t5(16))


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(class_labels=[10]), r"class_labels must lie in \[0, 9\]"),
    (dict(class_labels=[]), r"non-empty list of ints in \[0, 9\]"),
    (dict(class_labels=[1.5]), r"non-empty list of ints"),
    (dict(class_labels=[1], top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(class_labels=[1], top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(class_labels=[1], top_k=-1), "top_k must be >= 0"),
    (dict(class_labels=[1], temperature=0.0), "temperature must be > 0"),
    (dict(class_labels=[1], guidance_scale=-1.0), "guidance_scale must be >= 0"),
    (dict(class_labels=[1], cfg_interval=-2), "cfg_interval must be >= -1"),
    (dict(class_labels=[1], output_type="jpg"), "output_type must be 'pil', 'np', 'pt' or 'latent'"),
])
def test_c2i_bad_input(c2i, kwargs, message):
    with pytest.raises(ValueError, match=message):
        c2i(**kwargs)


def test_t2i_and_model_bad_input(t2i, c2i):
    meta, expected = load("gpt_t2i")
    with pytest.raises(ValueError, match=r"prompt_embeds must be a float tensor \[B, 120, 32\], got \(1, 120, 16\)"):
        t2i(prompt_embeds=torch.zeros(1, 120, 16))
    with pytest.raises(ValueError, match=r"prompt_attention_mask must have shape \(2, 120\)"):
        t2i(prompt_embeds=expected["prompt_embeds"], prompt_attention_mask=torch.ones(2, 7))
    with pytest.raises(ValueError, match="exactly one of prompt or prompt_embeds"):
        t2i()
    with pytest.raises(ValueError, match="needs a class-conditional transformer"):
        AutoregressiveImagePipeline(image_tokenizer=t2i.image_tokenizer, transformer=t2i.transformer)
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 63\]"):
        c2i.transformer(torch.full((1, 3), 64), class_labels=torch.tensor([1]))
    with pytest.raises(ValueError, match="class-conditional: pass class_labels"):
        c2i.transformer(torch.zeros(1, 3, dtype=torch.long), caption_embeds=torch.zeros(1, 120, 32))
    no_null = LlamaGenTransformer(LlamaGenConfig(codebook_size=64, num_tokens=16, hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, num_classes=10, class_dropout_prob=0.0)).eval()
    pipe = AutoregressiveImagePipeline(image_tokenizer=c2i.image_tokenizer, transformer=no_null)
    with pytest.raises(ValueError, match="guidance_scale must be <= 1.0"):
        pipe(class_labels=[1], guidance_scale=2.0)
    assert pipe.sample_tokens([1], guidance_scale=1.0, generator=torch.Generator().manual_seed(0)).shape == (1, 4, 4)
    with pytest.raises(ValueError, match="perfect square"):
        LlamaGenConfig(num_tokens=15)


# -- converters ------------------------------------------------------------------------------------
def test_converter_errors_name_the_problem_and_leave_nothing(converted, tmp_path):
    meta, _ = load("gpt_c2i")
    state = original_weights(meta)
    del state["layers.1.feed_forward.w3.weight"]
    torch.save({"model": state}, tmp_path / "broken.pt")
    with pytest.raises(ConversionError, match=r"missing keys: \['layers.1.mlp.up_proj.weight'\], i.e. 'layers.1.mlp.up_proj.weight' "
                       r"\(original 'layers.1.feed_forward.w3.weight'\)"):
        convert_llamagen_gpt(str(tmp_path / "broken.pt"), str(tmp_path / "out"), tokenizer=str(converted / "vq"),
                             image_size=16, num_heads=4)
    with pytest.raises(ConversionError, match="does not record its image size: pass --image-size"):
        convert_llamagen_gpt(str(converted / "c2i_tiny.pt"), str(tmp_path / "out"), tokenizer=str(converted / "vq"), num_heads=4)
    with pytest.raises(ConversionError, match="none of the original sizes"):
        convert_llamagen_gpt(str(converted / "c2i_tiny.pt"), str(tmp_path / "out"), tokenizer=str(converted / "vq"), image_size=16)
    with pytest.raises(ConversionError, match="multiple of the downsampling factor 4"):
        convert_llamagen_vq(str(converted / "vq_tiny.pt"), str(tmp_path / "out"), image_size=30)
    vq_state = original_weights(load("vq")[0])
    del vq_state["decoder.mid.1.k.weight"]  # an attention's key conv, fused into vistok's qkv
    torch.save({"model": vq_state}, tmp_path / "broken_vq.pt")
    with pytest.raises(ConversionError, match=r"missing keys \['decoder.mid.1.k.weight'\] in the checkpoint of .*broken_vq.pt "
                       r"\(they are fused into vistok's 'decoder.mid.attention.qkv.weight'\)"):
        convert_llamagen_vq(str(tmp_path / "broken_vq.pt"), str(tmp_path / "out"))
    with pytest.raises(ConversionError, match="missing key 'encoder.conv_in.weight'"):
        convert_llamagen_vq(str(converted / "c2i_tiny.pt"), str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pt", "broken_vq.pt"]
    assert cli_main(["convert", "llamagen", "--original", str(converted / "c2i_tiny.pt"), "--tokenizer", str(converted / "vq"),
                     "--output", str(tmp_path / "out2")]) == 2


def test_release_presets_fill_in_what_files_cannot_say():
    from vistok.modeling.llamagen.convert_llamagen import GPT_RELEASES, VQ_RELEASES

    assert GPT_RELEASES["c2i-b-384"].settings["image_size"] == 384 and GPT_RELEASES["t2i-xl-stage2-512"].tokenizer == "vq-ds16-t2i"
    assert VQ_RELEASES["vq-ds8-c2i"].hub_id == "FoundationVision/LlamaGen/vq_ds8_c2i.pt"
    for name, sizes in {"GPT-B": (768, 12, 12), "GPT-L": (1024, 24, 16), "GPT-XL": (1280, 36, 20), "GPT-XXL": (1536, 48, 24),
                        "GPT-3B": (3200, 24, 32)}.items():
        cfg = LlamaGenConfig.from_preset(name)
        assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == sizes
    assert LlamaGenConfig.from_preset("GPT-B").intermediate_size == 2048


# -- hub -------------------------------------------------------------------------------------------
def test_from_pretrained_by_repo_id_offline(c2i, converted, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "cache" / "models--someone--llamagen-tiny"
    shutil.copytree(converted / "c2i", repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    loaded = AutoregressiveImagePipeline.from_pretrained("someone/llamagen-tiny", cache_dir=tmp_path / "cache")
    a = loaded.sample_tokens([1, 2], top_k=10, generator=torch.Generator().manual_seed(3))
    b = c2i.sample_tokens([1, 2], top_k=10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_convert_release_by_hub_id_from_the_cache(converted, tmp_path, monkeypatch):
    """`--original FoundationVision/LlamaGen --preset vq-ds16-c2i` fetches the preset's file (here from the offline cache)."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    repo = tmp_path / "cache" / "models--FoundationVision--LlamaGen"
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    shutil.copy(converted / "vq_tiny.pt", repo / "snapshots" / ("0" * 40) / "vq_ds16_c2i.pt")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    with pytest.raises(ConversionError, match="holds several checkpoints: pass --preset"):
        convert_llamagen_vq("FoundationVision/LlamaGen", str(tmp_path / "out"))
    out = convert_llamagen_vq("FoundationVision/LlamaGen", str(tmp_path / "out"), preset="vq-ds16-c2i")
    tok = AutoModel.from_pretrained(out)
    assert tok.config.image_size == 256 and tok.config.num_tokens == 64 * 64
    card = (out / "README.md").read_text()
    assert "base_model: FoundationVision/LlamaGen" in card and "2.19" in card


@pytest.mark.parametrize("position_embedding", ["rope_2d", "learned"])
@pytest.mark.parametrize("condition_type", ["class", "text"])
def test_output_head_is_zero_initialised(position_embedding, condition_type):
    """Trained from scratch, the GPT starts with a zero output head (uniform next-token logits), as the original's
    ``initialize_weights``, whatever the position embedding or condition; the other weights are initialised."""
    config = LlamaGenConfig(condition_type=condition_type, codebook_size=32, num_tokens=16, hidden_size=32,
                            num_hidden_layers=2, num_attention_heads=4, num_classes=5, caption_dim=8,
                            num_condition_tokens=2 if condition_type == "text" else None, position_embedding=position_embedding)
    model = LlamaGenTransformer(config)
    assert torch.count_nonzero(model.lm_head.weight) == 0
    assert model.layers[0].self_attn.wqkv.weight.std() > 0 and model.embed_tokens.weight.std() > 0
    with torch.no_grad():
        out = model(input_ids=torch.zeros(1, 3, dtype=torch.long), class_labels=torch.tensor([1]) if condition_type == "class" else None,
                    caption_embeds=torch.randn(1, 2, 8) if condition_type == "text" else None)
    assert torch.count_nonzero(out.logits) == 0
