"""Instella-T2I: parity of the converted binary tokenizer with the original code's outputs
(tests/fixtures/README.md, "instella/"), the bit views, the training-time Bernoulli bits, the converter, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

import vistok  # noqa: F401  (registers the vistok model types)
from _random_weights import random_state_dict
from _tolerances import assert_matches_original
from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.instella import InstellaBAEConfig, InstellaBAEModel
from vistok.modeling.instella.convert_instella import read_bae_config
from _captioned import captioned_image_folder

FIXTURES = Path(__file__).parent / "fixtures" / "instella"


def load(name):
    return json.loads((FIXTURES / f"{name}.json").read_text()), load_file(str(FIXTURES / f"{name}.safetensors"))


def pixel_values(meta, size, batch):
    """The fixture script's inputs (make_instella_fixtures.pixel_values), rebuilt from their seed."""
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(meta["weights_seed"] + size)) * 2 - 1


@pytest.fixture(scope="module")
def instella_bae_folder(tmp_path_factory):
    """The fixture's random weights saved as the release does (bae/model.safetensors) and converted through the
    CLI with the tiny original config (an mmengine-style .py, read as data)."""
    root = tmp_path_factory.mktemp("instella")
    meta, _ = load("bae")
    (root / "release" / "bae").mkdir(parents=True)
    save_file(random_state_dict(meta["state_dict_shapes"], meta["weights_seed"]), str(root / "release" / "bae" / "model.safetensors"))
    lines = [f"{key}={value!r}" for key, value in meta["original_config"].items()]
    (root / "bae_config.py").write_text("# tiny\nnum_latent_tkns=256\n" + "\n".join(lines) + "\nimport os\n")
    assert cli_main(["convert", "instella-bae", "--original", str(root / "release"), "--output", str(root / "bae"),
                     "--config", str(root / "bae_config.py"), "--image-size", str(meta["set_scale"])]) == 0
    return root / "bae"


def test_tokenizer_matches_original(instella_bae_folder):
    meta, expected = load("bae")
    tok = AutoModel.from_pretrained(instella_bae_folder)
    assert isinstance(tok, InstellaBAEModel) and not tok.training
    c = tok.config
    assert (c.num_tokens, c.num_bits, c.encoder_num_heads, c.downsample_layers, c.rope_scale) == (8, 16, 2, [1], 4.0)
    for size, batch in meta["sizes"].items():
        size = int(size)
        pixels = pixel_values(meta, size, batch)
        with torch.no_grad():
            enc = tok.encode(pixels)
        bits = expected[f"bits_{size}"]
        assert torch.equal(enc.token_ids, bits), size  # eval rule: sigmoid(logit) > 0.5
        assert enc.token_ids.shape == (batch, 8, 16) and enc.token_ids.dtype == torch.long
        assert_matches_original(tok, lambda m: m.encoder(pixels.to(m.dtype)), expected[f"pre_quant_{size}"], f"encoder {size}")
        assert_matches_original(tok, lambda m: m.quantizer.bits_to_codes(bits.to(m.dtype)), expected[f"latents_{size}"], "latents")
        assert_matches_original(tok, lambda m: m.decode(bits, image_size=size), expected[f"reconstruction_{size}"], f"decode {size}")
        with torch.no_grad():
            assert tok(pixels).reconstruction.shape == pixels.shape  # forward decodes at the input's size
        packed = tok.pack_bits(bits)
        assert packed.shape == (batch, 8) and torch.equal(tok.unpack_bits(packed), bits)
        assert torch.equal(packed, (bits << torch.arange(16)).sum(-1))  # bit b of a token weighs 2**b
        with torch.no_grad():
            assert torch.equal(tok.decode(packed, image_size=size), tok.decode(bits, image_size=size))
    card = (instella_bae_folder / "README.md").read_text()
    assert "library_name: vistok" in card and "instella-bae" in card and "16 bits" in card


def test_training_bits_are_bernoulli_draws_from_generator(instella_bae_folder):
    meta, expected = load("bae")
    tok = AutoModel.from_pretrained(instella_bae_folder).train()
    pixels = pixel_values(meta, 64, 2)
    with torch.no_grad():
        bits = tok.encode(pixels, generator=torch.Generator().manual_seed(meta["train_seed"])).token_ids
        again = tok.encode(pixels, generator=torch.Generator().manual_seed(meta["train_seed"])).token_ids
        deterministic = tok.encode(pixels, deterministic=True).token_ids
    # the original draws torch.bernoulli(sigmoid(logits / train_temp)) from the global RNG seeded the same way
    assert torch.equal(bits, expected["train_bits"]) and torch.equal(bits, again)
    assert torch.equal(deterministic, expected["bits_64"]) and not torch.equal(bits, deterministic)
    out = tok(pixels, generator=torch.Generator().manual_seed(0))
    out.reconstruction.mean().backward()  # straight-through: the encoder gets gradients through the bits
    assert tok.encoder.proj_out.weight.grad is not None and tok.encoder.proj_out.weight.grad.abs().sum() > 0


def test_bad_input_and_config_errors(instella_bae_folder, tmp_path, capsys):
    tok = AutoModel.from_pretrained(instella_bae_folder)
    with pytest.raises(ValueError, match=r"bit token_ids must have shape \[B, 8, 16\]"):
        tok.decode(torch.zeros(1, 8, 15, dtype=torch.long))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        tok.decode(torch.full((1, 8, 16), 2))
    with pytest.raises(ValueError, match=r"packed token_ids must lie in \[0, 65535\]"):
        tok.decode(torch.full((1, 8), 65536))
    with pytest.raises(TypeError, match="integer"):
        tok.decode(torch.zeros(1, 8, 16))
    with pytest.raises(ValueError, match="multiple of 32"):
        tok.encode(torch.zeros(1, 3, 48, 48))
    with pytest.raises(ValueError, match="multiple of 32"):
        tok.decode(torch.zeros(1, 8, 16, dtype=torch.long), image_size=80)
    with pytest.raises(ValueError, match="axes_dims_rope"):
        InstellaBAEConfig(axes_dims_rope=[8, 28, 30])
    with pytest.raises(ValueError, match="num_bits must be at most 64"):
        InstellaBAEConfig(num_bits=65)
    save_file({"w": torch.zeros(1)}, str(tmp_path / "x.safetensors"))
    assert cli_main(["convert", "instella-bae", "--original", str(tmp_path / "x.safetensors"), "--output", str(tmp_path / "o")]) != 0
    assert "not an Instella-T2I BAE checkpoint: missing encoder.latent_tokens" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConversionError, match="cannot read the original config"):
        read_bae_config(str(tmp_path / "missing.py"))


def test_release_widths_build():
    # the released architecture (no weights): 128 tokens of 64 bits; packed ids are the two's-complement pattern
    config = InstellaBAEConfig()
    assert (config.encoder_hidden_size, config.decoder_hidden_size, config.num_tokens, config.num_bits) == (768, 1024, 128, 64)
    assert config.downsample_factor == 32
    bits = torch.zeros(1, 128, 64, dtype=torch.long)
    bits[0, 0, 63] = 1
    assert int(InstellaBAEModel.pack_bits(bits)[0, 0]) == -(2**63)


# -- the AR generator ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ar_pipeline(tmp_path_factory, instella_bae_folder):
    """The fixture's random weights saved as the release's ar.pt ({"module": state_dict}, a pickle) and instella_bae_folder
    with the tiny tokenizer (8 tokens of 16 bits) into a pipeline folder, without a text encoder."""
    from vistok import BinaryAutoregressiveTextToImagePipeline

    root = tmp_path_factory.mktemp("instella_ar")
    meta, _ = load("ar")
    torch.save({"module": random_state_dict(meta["state_dict_shapes"], meta["weights_seed"])}, root / "ar.pt")
    assert cli_main(["convert", "instella-ar", "--original", str(root / "ar.pt"), "--tokenizer", str(instella_bae_folder),
                     "--head-dim", str(meta["original_args"]["attention_head_dim"]), "--output", str(root / "pipe")]) == 0
    pipe = BinaryAutoregressiveTextToImagePipeline.from_pretrained(root / "pipe")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def ar_model(ar_pipeline):
    return ar_pipeline.transformer


def test_ar_logits_match_original(ar_model):
    from vistok.modeling.instella import InstellaARModel

    meta, expected = load("ar")
    assert isinstance(ar_model, InstellaARModel)
    c = ar_model.config
    assert (c.num_bits, c.num_tokens, c.hidden_size, c.num_attention_heads, c.num_hidden_layers, c.text_hidden_size) == (16, 8, 32, 2, 2, 32)
    text, mask = expected["text_hidden_states"], torch.tensor(meta["attention_mask"])
    bits = expected["input_bits"]
    assert_matches_original(ar_model, lambda m: m(bits, text.to(m.dtype), mask).logits, expected["logits"], "teacher-forced logits")
    assert_matches_original(ar_model, lambda m: m(None, text.to(m.dtype), mask).logits, expected["logits_split_only"], "split token only")
    # left padding: masked text positions do not matter
    noisy = text.clone()
    noisy[1, :, :2] = 100.0
    with torch.no_grad():
        assert torch.allclose(ar_model(bits, noisy, mask).logits, ar_model(bits, text, mask).logits, atol=1e-6)


@pytest.mark.parametrize("name", ["released", "warm", "greedy"])
def test_ar_seeded_samples_match_original(ar_pipeline, name):
    meta, expected = load("ar")
    setting = meta["settings"][name]
    text, mask = expected["text_hidden_states"], torch.tensor(meta["attention_mask"])
    out = ar_pipeline(prompt_embeds=text[:2], prompt_attention_mask=mask[:2], negative_prompt_embeds=text[2:],
                      negative_prompt_attention_mask=mask[2:], guidance_scale=setting["guidance_scale"],
                      temperature=setting["temp"], generator=torch.Generator().manual_seed(setting["seed"]), output_type="latent")
    assert out.images.shape == (2, 8, 16)
    assert torch.equal(out.images, expected[f"sample_{name}"])


def test_ar_pipeline_images_and_defaults(ar_pipeline):
    meta, expected = load("ar")
    text, mask = expected["text_hidden_states"], torch.tensor(meta["attention_mask"])
    assert ar_pipeline.transformer.config.sampling_defaults == {"guidance_scale": 7.5, "temperature": 1.0}
    kwargs = dict(prompt_embeds=text[:1], prompt_attention_mask=mask[:1], negative_prompt_embeds=text[2:3],
                  negative_prompt_attention_mask=mask[2:3])
    g = lambda: torch.Generator().manual_seed(21)  # noqa: E731
    bits = ar_pipeline(**kwargs, generator=g(), output_type="latent").images
    assert bits.shape == (1, 8, 16) and torch.equal(bits, ar_pipeline(**kwargs, generator=g(), output_type="latent").images)
    assert not torch.equal(bits, ar_pipeline(**kwargs, guidance_scale=0.0, generator=g(), output_type="latent").images)
    images = ar_pipeline(**kwargs, generator=g(), output_type="pt", height=96, width=96).images
    assert images.shape == (1, 3, 96, 96) and 0 <= float(images.min()) and float(images.max()) <= 1
    with torch.no_grad():
        pixels = ar_pipeline.image_tokenizer.decode(bits, image_size=96).clamp(-1, 1)
    assert torch.allclose(images, (pixels + 1) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="no text_encoder/tokenizer"):
        ar_pipeline("a prompt")
    with pytest.raises(ValueError, match=r"prompt_embeds must be the text encoder's hidden states 1..2 stacked"):
        ar_pipeline(prompt_embeds=text[:1, 0], negative_prompt_embeds=text[2:3])
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        ar_pipeline(**kwargs, temperature=-1.0)
    with pytest.raises(ValueError, match="multiple of 32"):
        ar_pipeline(**kwargs, height=80, width=80)


def test_ar_bad_input(ar_model, tmp_path):
    from vistok.modeling.instella.convert_instella import load_ar

    meta, expected = load("ar")
    text = expected["text_hidden_states"]
    with pytest.raises(ValueError, match=r"text_hidden_states must be \[B, 2, T, 32\]"):
        ar_model(None, text[:, :1])
    with pytest.raises(ValueError, match=r"input_bits must be \[4, n, 16\]"):
        ar_model(torch.zeros(4, 3, 15), text)
    with pytest.raises(ValueError, match="at most 8"):
        ar_model(torch.zeros(4, 9, 16), text)
    torch.save({"module": {"w": torch.zeros(1)}}, tmp_path / "ar.pt")
    with pytest.raises(ConversionError, match="not an Instella-T2I AR checkpoint"):
        load_ar(str(tmp_path))


def _tiny_olmo_and_tokenizer(meta):
    """The fixture's tiny OLMo (same config, same seed before construction) and a word-level tokenizer whose words
    ``w<id>`` are the fixture's ids, with OLMo's ``</s>`` (id 2) appended and ``<pad>`` (id 1): the prompts below
    tokenize, left padded in one call, to exactly the fixture's ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import OlmoConfig, OlmoModel, PreTrainedTokenizerFast

    torch.manual_seed(meta["olmo_seed"])
    olmo = OlmoModel(OlmoConfig(**meta["olmo_config"])).eval()
    vocab = {"<unk>": 0, "<pad>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, meta["olmo_config"]["vocab_size"])}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
    prompts = [" ".join(f"w{i}" for i, m in zip(ids[:-1], mask[:-1]) if m) for ids, mask in zip(meta["input_ids"][:2], meta["attention_mask"][:2])]
    return olmo, tokenizer, prompts


def test_ar_text_path_matches_original(ar_pipeline):
    """Prompts through the OLMo components: one tokenizer call over [prompts; ""], left padded, hidden states 1..L —
    the original's text path — then the seeded sample equals the original's."""
    from vistok import BinaryAutoregressiveTextToImagePipeline

    meta, expected = load("ar")
    olmo, tokenizer, prompts = _tiny_olmo_and_tokenizer(meta)
    pipe = BinaryAutoregressiveTextToImagePipeline(ar_pipeline.image_tokenizer, ar_pipeline.transformer, olmo, tokenizer)
    pipe.set_progress_bar_config(disable=True)
    states, mask = pipe.encode_prompt(prompts + ["", ""])
    assert torch.equal(mask.cpu(), torch.tensor(meta["attention_mask"]))
    assert torch.allclose(states, expected["text_hidden_states"], atol=1e-5)
    setting = meta["settings"]["released"]
    bits = pipe(prompts, generator=torch.Generator().manual_seed(setting["seed"]), output_type="latent").images
    assert torch.equal(bits, expected["sample_released"])
    with pytest.raises(ValueError, match="the transformer takes 2 hidden states 32 wide"):
        from transformers import OlmoConfig, OlmoModel

        BinaryAutoregressiveTextToImagePipeline(ar_pipeline.image_tokenizer, ar_pipeline.transformer,
                                                OlmoModel(OlmoConfig(**{**meta["olmo_config"], "num_hidden_layers": 3})), tokenizer)


def snapshot_built_models(monkeypatch, training_module) -> list[dict]:
    """The state dict of every model the trainer of ``training_module`` builds, as built (before any step)."""
    built, build_model = [], training_module.build_model

    def build_and_snapshot(*args, **kwargs):
        model = build_model(*args, **kwargs)
        built.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(training_module, "build_model", build_and_snapshot)
    return built


def test_tokenizer_trains_with_vistok_train(tmp_path, monkeypatch):
    """`vistok train tokenizer` on the binary tokenizer: training-mode Bernoulli bits, straight-through gradients;
    the export loads with AutoModel and its weights moved."""
    import numpy as np
    import PIL.Image
    from accelerate.state import AcceleratorState

    from vistok.training import load_train_config
    from vistok.training.tokenizer import TokenizerTrainer

    for i in range(4):
        (tmp_path / "images" / "a").mkdir(parents=True, exist_ok=True)
        yy, xx = np.mgrid[0:64, 0:64] / 63.0
        PIL.Image.fromarray((np.stack([xx, yy * 0.25 * i, 1 - xx], -1) * 255).astype(np.uint8)).save(tmp_path / "images" / "a" / f"{i}.png")
    model = {"family": "instella-bae", "config": dict(
        image_size=64, patch_size=16, num_tokens=4, num_bits=8, encoder_hidden_size=32, encoder_num_layers=2, encoder_num_heads=2,
        decoder_hidden_size=32, decoder_num_layers=2, decoder_num_heads=2, downsample_layers=[0], upsample_layers=[0],
        axes_dims_rope=[4, 6, 6], rope_scale=4.0)}
    AcceleratorState._reset_state(True)
    config = load_train_config("tokenizer", overrides={
        "model": model, "data": {"dataset": str(tmp_path / "images")},
        "training": {"output_dir": str(tmp_path / "run"), "batch_size": 2, "max_steps": 3, "learning_rate": 1e-3,
                     "image_every": 1000, "checkpointing_steps": 1000}, "loss": {"reconstruction": "l2"}})
    from vistok.training import tokenizer as tokenizer_training

    built = snapshot_built_models(monkeypatch, tokenizer_training)
    try:
        TokenizerTrainer(config).train()
    finally:
        AcceleratorState._reset_state(True)
    trained = AutoModel.from_pretrained(tmp_path / "run" / "final")
    assert isinstance(trained, InstellaBAEModel)
    assert len(built) == 1
    initial = built[0]
    for name in ("encoder.proj_out.weight", "quantizer.proj.weight", "decoder.input_layer.1.weight", "to_pixel.weight"):
        assert not torch.equal(trained.state_dict()[name], initial[name]), name  # gradients reached every stage
    losses = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses and all(np.isfinite(v) for row in losses for k, v in row.items() if "loss" in k and isinstance(v, float))


# -- the AR sampler's static KV cache --------------------------------------------------------------------------


def test_ar_cached_logits_match_the_full_forward(ar_model):
    """The cached steps (prefill of text + split token, then one token per step) give the full forward's logits at
    every position, with left-padded text."""
    meta, expected = load("ar")
    text, mask, bits = expected["text_hidden_states"], torch.tensor(meta["attention_mask"]), expected["input_bits"].float()
    with torch.no_grad():
        full = ar_model(bits, text, mask).logits
        cache = ar_model.new_cache(4, text.shape[2])
        steps = [ar_model.cached_step(None, cache, 0, mask, text)]
        steps += [ar_model.cached_step(bits[:, i:i + 1], cache, i + 1, mask) for i in range(bits.shape[1])]
        cached = torch.cat(steps, dim=1)
        # a prefill that also carries tokens (the refill after a callback rewrote them)
        refill = ar_model.cached_step(bits[:, :3], ar_model.new_cache(4, text.shape[2]), 0, mask, text)
    assert cached.shape == full.shape and torch.allclose(cached, full, atol=1e-5), float((cached - full).abs().max())
    assert torch.allclose(refill, full[:, :4], atol=1e-5)
    with pytest.raises(ValueError, match="the prefill .* needs text_hidden_states"):
        ar_model.cached_step(bits[:, :1], ar_model.new_cache(4, text.shape[2]), 0, mask)


@pytest.mark.parametrize("name", ["released", "warm", "greedy"])
def test_ar_cached_sampling_gives_the_uncached_bits(ar_pipeline, name):
    """use_cache=True (default) and the original's full recomputation (use_cache=False) draw identical bits for the
    same seed; both equal the original's sample."""
    meta, expected = load("ar")
    setting = meta["settings"][name]
    text, mask = expected["text_hidden_states"], torch.tensor(meta["attention_mask"])
    kwargs = dict(prompt_embeds=text[:2], prompt_attention_mask=mask[:2], negative_prompt_embeds=text[2:],
                  negative_prompt_attention_mask=mask[2:], guidance_scale=setting["guidance_scale"], temperature=setting["temp"],
                  output_type="latent")
    runs = [ar_pipeline(**kwargs, use_cache=use_cache, generator=torch.Generator().manual_seed(setting["seed"])).images
            for use_cache in (True, False)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], expected[f"sample_{name}"])


def test_ar_cached_sampling_follows_a_callback_that_rewrites_earlier_tokens(ar_pipeline):
    meta, expected = load("ar")
    text, mask = expected["text_hidden_states"], torch.tensor(meta["attention_mask"])
    kwargs = dict(prompt_embeds=text[:2], prompt_attention_mask=mask[:2], negative_prompt_embeds=text[2:],
                  negative_prompt_attention_mask=mask[2:], output_type="latent")

    def flip_first_token(pipe, step, timestep, tensors):  # rewrites token 0 (already in the cache) at step 3
        if step == 3:
            tensors["token_ids"][:, 0] = 1 - tensors["token_ids"][:, 0]
        return {"token_ids": tensors["token_ids"]}

    runs = [ar_pipeline(**kwargs, use_cache=use_cache, generator=torch.Generator().manual_seed(5),
                        callback_on_step_end=flip_first_token).images for use_cache in (True, False)]
    plain = ar_pipeline(**kwargs, generator=torch.Generator().manual_seed(5)).images
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0][:, 4:], plain[:, 4:])  # later tokens saw the edit


# -- the diffusion generator -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diffusion_pipeline(tmp_path_factory, instella_bae_folder):
    """The fixture's random weights saved as the release's diffusion.pt ({"module": state_dict}, a pickle) and the tiny
    tokenizer folder, converted through the CLI into a pipeline folder without a text encoder."""
    from vistok import BinaryDiffusionTextToImagePipeline

    root = tmp_path_factory.mktemp("instella_diffusion")
    meta, _ = load("diffusion")
    torch.save({"module": random_state_dict(meta["state_dict_shapes"], meta["weights_seed"])}, root / "diffusion.pt")
    assert cli_main(["convert", "instella-diffusion", "--original", str(root / "diffusion.pt"), "--tokenizer",
                     str(instella_bae_folder), "--head-dim", str(meta["original_args"]["attention_head_dim"]),
                     "--output", str(root / "pipe")]) == 0
    pipe = BinaryDiffusionTextToImagePipeline.from_pretrained(root / "pipe")
    pipe.set_progress_bar_config(disable=True)
    card = (root / "pipe" / "README.md").read_text()
    assert "instella-diffusion" in card and "20 steps" in card and "protocol_1" in card
    from vistok.modeling.instella import InstellaDiffusionModel

    assert isinstance(AutoModel.from_pretrained(root / "pipe" / "transformer"), InstellaDiffusionModel)
    return pipe


def test_diffusion_logits_match_original(diffusion_pipeline):
    from vistok.modeling.instella import InstellaDiffusionModel

    meta, expected = load("diffusion")
    model = diffusion_pipeline.transformer
    assert isinstance(model, InstellaDiffusionModel) and not model.training
    c = model.config
    assert (c.num_bits, c.num_tokens, c.hidden_size, c.num_attention_heads, c.num_hidden_layers, c.text_hidden_size) == (16, 8, 32, 2, 2, 32)
    assert c.sampling_defaults == {"guidance_scale": 7.5, "temperature": 1.0, "num_inference_steps": 20, "rho": 1.0,
                                   "step_rule": "protocol_1"}
    text, mask, bits = expected["text_hidden_states"], torch.tensor(meta["attention_mask"]), expected["input_bits"]
    t = torch.tensor(meta["timesteps"])
    assert_matches_original(model, lambda m: m(bits, t.to(m.dtype), text.to(m.dtype), mask).logits, expected["logits"], "flip logits")
    noisy = text.clone()
    noisy[1, :, :2] = 100.0  # padded text positions do not matter
    with torch.no_grad():
        assert torch.allclose(model(bits, t, noisy, mask).logits, model(bits, t, text, mask).logits, atol=1e-6)
        assert not torch.allclose(model(bits, t.flip(0), text, mask).logits, model(bits, t, text, mask).logits, atol=1e-3)


@pytest.mark.parametrize("name", ["released", "warm", "protocol_2"])
def test_diffusion_seeded_samples_match_original(diffusion_pipeline, name):
    """The original's BinaryDiffusion.sample after torch.manual_seed(seed) (global RNG) and the pipeline with a
    generator seeded the same way draw the same noise: identical bits."""
    meta, expected = load("diffusion")
    s = meta["settings"][name]
    text, mask = expected["text_hidden_states"], torch.tensor(meta["attention_mask"])
    out = diffusion_pipeline(prompt_embeds=text[:2], prompt_attention_mask=mask[:2], negative_prompt_embeds=text[2:],
                             negative_prompt_attention_mask=mask[2:], guidance_scale=s["guidance_scale"], temperature=s["temp"],
                             num_inference_steps=s["num_sampling_steps"], rho=s["rho"], step_rule=s["protocal"].replace("protocal", "protocol"),
                             generator=torch.Generator().manual_seed(s["seed"]), output_type="latent")
    assert out.images.shape == (2, 8, 16)
    assert torch.equal(out.images, expected[f"sample_{name}"])


def test_diffusion_text_path_defaults_and_images(diffusion_pipeline):
    """Prompts through the tiny OLMo (the AR pipeline's shared text path) with the stored defaults give the original's
    released sample; images decode at the asked size; bad settings are refused."""
    from vistok import BinaryDiffusionTextToImagePipeline

    meta, expected = load("diffusion")
    olmo, tokenizer, prompts = _tiny_olmo_and_tokenizer(meta)
    pipe = BinaryDiffusionTextToImagePipeline(diffusion_pipeline.image_tokenizer, diffusion_pipeline.transformer, olmo, tokenizer)
    pipe.set_progress_bar_config(disable=True)
    bits = pipe(prompts, generator=torch.Generator().manual_seed(meta["settings"]["released"]["seed"]), output_type="latent").images
    assert torch.equal(bits, expected["sample_released"])
    steps = []
    images = pipe(prompts[:1], num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt",
                  height=96, width=96, callback_on_step_end=lambda p, i, t, kw: steps.append(i) or {}).images
    assert images.shape == (1, 3, 96, 96) and steps == [0, 1, 2]
    kwargs = dict(prompt_embeds=expected["text_hidden_states"][:1], negative_prompt_embeds=expected["text_hidden_states"][2:3])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        pipe(**kwargs, temperature=0.0)
    with pytest.raises(ValueError, match="num_inference_steps must be >= 1"):
        pipe(**kwargs, num_inference_steps=0)
    with pytest.raises(ValueError, match="step_rule must be one of"):
        pipe(**kwargs, step_rule="protocal_3")


def test_diffusion_bad_input(diffusion_pipeline, tmp_path):
    from vistok.modeling.instella import InstellaDiffusionConfig
    from vistok.modeling.instella.convert_instella import load_diffusion

    meta, expected = load("diffusion")
    model, text = diffusion_pipeline.transformer, expected["text_hidden_states"]
    with pytest.raises(ValueError, match=r"input_bits must be \[4, 8, 16\]"):
        model(torch.zeros(4, 7, 16), 0.5, text)
    with pytest.raises(ValueError, match=r"timestep must be a tensor of \[4\]"):
        model(torch.zeros(4, 8, 16), torch.zeros(3), text)
    with pytest.raises(ValueError, match=r"text_hidden_states must be \[B, 2, T, 32\]"):
        model(torch.zeros(4, 8, 16), 0.5, text[:, :1])
    with pytest.raises(ValueError, match="step_rule"):
        InstellaDiffusionConfig(sampling_defaults={"step_rule": "ddim"})
    torch.save({"module": {"w": torch.zeros(1)}}, tmp_path / "diffusion.pt")
    with pytest.raises(ConversionError, match="not an Instella-T2I diffusion checkpoint"):
        load_diffusion(str(tmp_path))


@pytest.mark.parametrize("family", ["instella-ar", "instella-diffusion"])
def test_generators_train_on_captions_and_export_a_pipeline(tmp_path, instella_bae_folder, monkeypatch, family):
    """``vistok train generator`` with ``model.family: instella-ar`` / ``instella-diffusion``: the tokenizer's bits of
    each image, the captions through a frozen tiny OLMo (dropped to "" for guidance), the per-bit binary cross-entropy
    of scripts/train_ar.py / train_diff.py; exported as the family's pipeline, which loads and samples from a prompt."""
    import numpy as np
    from accelerate.state import AcceleratorState

    from vistok import BinaryAutoregressiveTextToImagePipeline, BinaryDiffusionTextToImagePipeline
    from vistok.modeling.instella.training_instella import bits_as_two_class_logits
    from vistok.training import load_train_config
    from vistok.training.generator import GeneratorTrainer

    # the trainer's cross-entropy on (0, l) two-class logits is the original's binary cross-entropy on l
    logit, bit = torch.tensor([-1.3, 0.4, 2.0]), torch.tensor([1, 0, 1])
    assert torch.allclose(torch.nn.functional.cross_entropy(bits_as_two_class_logits(logit), bit),
                          torch.nn.functional.binary_cross_entropy_with_logits(logit, bit.float()))
    meta, _ = load("ar")
    olmo, text_tokenizer, _ = _tiny_olmo_and_tokenizer(meta)
    olmo.save_pretrained(tmp_path / "olmo")
    text_tokenizer.save_pretrained(tmp_path / "olmo")
    data = captioned_image_folder(tmp_path / "captioned", 64, ["w5 w9 w17", "w7 w21", "w33", "w12 w40 w5"])
    AcceleratorState._reset_state(True)
    config = load_train_config("generator", overrides={
        "model": {"family": family, "config": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                   text_hidden_size=32, caption_dropout_prob=0.5)},
        "data": {"dataset": str(data), "label_column": None, "caption_column": "text"},
        "training": {"output_dir": str(tmp_path / "run"), "batch_size": 2, "max_steps": 3, "log_every": 1,
                     "learning_rate": 1e-3, "image_every": 1000, "checkpointing_steps": 1000},
        "loss": {"tokenizer": str(instella_bae_folder), "text_encoder": str(tmp_path / "olmo")}})
    from vistok.training import generator as generator_training

    built = snapshot_built_models(monkeypatch, generator_training)
    try:
        trainer = GeneratorTrainer(config)
        summary = trainer.train()
    finally:
        AcceleratorState._reset_state(True)
    cfg = trainer.accelerator.unwrap_model(trainer.model).config
    assert (cfg.num_bits, cfg.num_tokens, cfg.codebook_size) == (16, 8, 2**16) and summary["step"] == 3
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # random bits of a random model: about log 2 per bit, accuracy about one half
    assert abs(rows[0]["loss"] - np.log(2)) < 0.5 and 0.2 < rows[0]["token_accuracy"] < 0.8
    pipeline_class = BinaryAutoregressiveTextToImagePipeline if family == "instella-ar" else BinaryDiffusionTextToImagePipeline
    pipe = pipeline_class.from_pretrained(tmp_path / "run" / "final")
    assert type(pipe) is pipeline_class
    pipe.set_progress_bar_config(disable=True)
    trained, initial = pipe.transformer.state_dict(), built[0]
    assert len(built) == 1
    for name in ("x_embedder.weight", "transformer_blocks.0.proj_cond.weight", "proj_out.weight"):
        assert not torch.equal(trained[name], initial[name]), name  # gradients reached the embedding, text and head
    steps = {"num_inference_steps": 2} if family == "instella-diffusion" else {}
    images = pipe("w5 w9", generator=torch.Generator().manual_seed(0), output_type="np", **steps).images
    assert images.shape == (1, 64, 64, 3)


def test_diffusion_objective_is_the_original_training_step(diffusion_pipeline):
    """caption_flip_objective against scripts/train_diff.py's step written out (non_uniform_t: LogisticNormal(0, 1)
    timesteps; add_noise; prediction_target 'epsilon'; binary cross-entropy), same global-RNG draws."""
    from torch.distributions import LogisticNormal

    from vistok.modeling.instella.training_instella import caption_flip_objective

    meta, expected = load("diffusion")
    model = diffusion_pipeline.transformer  # eval mode: no caption dropout
    text, mask, latents = expected["text_hidden_states"][:2], torch.tensor(meta["attention_mask"])[:2], expected["input_bits"][:2]

    class Text:  # the frozen text path: fixed OLMo states for the two captions
        @staticmethod
        def encode_prompt(captions):
            assert captions == ["a", "b"]
            return text, mask

    torch.manual_seed(7)
    with torch.no_grad():
        logits, targets = caption_flip_objective(model, None, latents, Text, ["a", "b"], None)
        ours = torch.nn.functional.cross_entropy(logits, targets)
    torch.manual_seed(7)
    x = latents.float()
    t = LogisticNormal(torch.tensor([0.0]), torch.tensor([1.0])).sample((x.shape[0],))[:, 0]
    x_t = torch.bernoulli(x * (1 - t.view(-1, 1, 1)) + t.view(-1, 1, 1) * (0.5 * torch.ones_like(x)))
    with torch.no_grad():
        out = model(x_t, t, text, mask).logits
    reference = torch.nn.functional.binary_cross_entropy_with_logits(x_t * (-out) + (1 - x_t) * out, x)
    assert torch.allclose(ours, reference, atol=1e-6), (float(ours), float(reference))


def test_diffusion_folder_with_olmo_generates_from_a_prompt(tmp_path, instella_bae_folder):
    """`vistok convert instella-diffusion --text-encoder` with an OLMo folder (model + tokenizer): the saved pipeline
    loads with the text components and a prompt gives the original's seeded sample."""
    from vistok import BinaryDiffusionTextToImagePipeline

    meta, expected = load("diffusion")
    olmo, text_tokenizer, prompts = _tiny_olmo_and_tokenizer(meta)
    olmo.save_pretrained(tmp_path / "olmo")
    text_tokenizer.save_pretrained(tmp_path / "olmo")
    torch.save({"module": random_state_dict(meta["state_dict_shapes"], meta["weights_seed"])}, tmp_path / "diffusion.pt")
    assert cli_main(["convert", "instella-diffusion", "--original", str(tmp_path / "diffusion.pt"), "--tokenizer",
                     str(instella_bae_folder), "--text-encoder", str(tmp_path / "olmo"), "--head-dim",
                     str(meta["original_args"]["attention_head_dim"]), "--output", str(tmp_path / "pipe")]) == 0
    pipe = BinaryDiffusionTextToImagePipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.text_encoder is not None and pipe.tokenizer is not None
    s = meta["settings"]["warm"]
    bits = pipe(prompts, guidance_scale=s["guidance_scale"], temperature=s["temp"], num_inference_steps=s["num_sampling_steps"],
                rho=s["rho"], generator=torch.Generator().manual_seed(s["seed"]), output_type="latent").images
    assert torch.equal(bits, expected["sample_warm"])


def test_ar_objective_is_the_original_training_step(ar_model):
    """caption_bit_objective against scripts/train_ar.py's step written out: the model reads bits[:, :-1] after the
    split token, binary cross-entropy against all bits; its accuracy is the original's (out > 0) == bit."""
    from vistok.modeling.instella.training_instella import caption_bit_objective

    meta, expected = load("ar")
    text, mask = expected["text_hidden_states"][:2], torch.tensor(meta["attention_mask"])[:2]
    latents = torch.bernoulli(torch.full((2, 8, 16), 0.5), generator=torch.Generator().manual_seed(3)).long()

    class Text:
        @staticmethod
        def encode_prompt(captions):
            return text, mask

    with torch.no_grad():
        logits, targets = caption_bit_objective(ar_model, None, latents, Text, ["a", "b"], None)
        out = ar_model(latents[:, :-1].float(), text, mask).logits
    reference = torch.nn.functional.binary_cross_entropy_with_logits(out, latents.float())
    assert torch.allclose(torch.nn.functional.cross_entropy(logits, targets), reference, atol=1e-6)
    assert torch.equal((logits.argmax(-1) == targets).float().mean(), ((out > 0).long() == latents).float().mean())
