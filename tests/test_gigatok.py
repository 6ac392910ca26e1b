"""GigaTok: parity of the converted 1D and 2D tokenizers with the original code's outputs
(tests/fixtures/README.md, "gigatok/"), the converter and CLI, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import vistok  # noqa: F401  (registers the vistok model types)
from _random_weights import random_state_dict
from _tolerances import assert_matches_original
from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.gigatok import GigaTokConfig, GigaTokModel
from vistok.modeling.gigatok.convert_gigatok import convert as convert_gigatok

FIXTURES = Path(__file__).parent / "fixtures" / "gigatok"
NAMES = ("gigatok_1d", "gigatok_2d")


def load(name):
    return json.loads((FIXTURES / f"{name}.json").read_text()), load_file(str(FIXTURES / f"{name}.safetensors"))


def original_weights(meta):
    return random_state_dict(meta["state_dict_shapes"], meta["weights_seed"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The fixtures' random weights saved as the original training checkpoints do ({"model", "ema"}; the
    evaluation reads "ema") and converted through the CLI."""
    root = tmp_path_factory.mktemp("gigatok")
    for name in NAMES:
        meta, _ = load(name)
        ema = original_weights(meta)
        raw = {k: v + 1.0 for k, v in ema.items()}  # the non-EMA weights must not be the ones converted
        torch.save({"model": raw, "ema": ema, "steps": 10}, root / f"{name}.pt")
        assert cli_main(["convert", "gigatok", "--original", str(root / f"{name}.pt"), "--output", str(root / name),
                         "--image-size", str(meta["image_size"])]) == 0
    return root


@pytest.mark.parametrize("name", NAMES)
def test_tokenizer_matches_original(converted, name):
    meta, expected = load(name)
    tok = AutoModel.from_pretrained(converted / name)
    layout = "1d" if name.endswith("1d") else "2d"
    assert isinstance(tok, GigaTokModel) and tok.config.token_layout == layout
    assert (tok.config.encoder_hidden_size, tok.config.encoder_num_layers, tok.config.encoder_num_heads) == (256, 4, 4)
    assert tok.config.distill_depth == 3 and tok.config.distill_dim == 24
    pixels = expected["pixel_values"]
    with torch.no_grad():
        enc = tok.encode(pixels)
    assert torch.equal(enc.token_ids, expected["token_ids"])
    assert enc.token_ids.shape == ((2, 16) if layout == "1d" else (2, 4, 4))

    def pre_quant(m):
        return m.quant_proj(m.token_encoder(m.encoder(pixels.to(m.dtype))))

    assert_matches_original(tok, pre_quant, expected["pre_quant"], "pre-quantization tokens")
    ids = expected["token_ids"]
    assert_matches_original(tok, lambda m: m.decode(ids), expected["reconstruction"], "decode")
    assert_matches_original(tok, lambda m: m.semantic_features(m.quantizer.indices_to_codes(ids.flatten(1))),
                            expected["semantic_features"], "semantic head")
    card = (converted / name / "README.md").read_text()
    assert "library_name: vistok" in card and "license: mit" in card and f"{layout.upper()}:" in card


def test_bad_input_and_config_errors(converted):
    tok = AutoModel.from_pretrained(converted / "gigatok_1d")
    with pytest.raises(ValueError, match=r"token_ids must lie in \[0, 63\]"):
        tok.decode(torch.full((1, 16), 64))
    with pytest.raises(ValueError, match="takes 32x32 images, got 64x64"):
        tok.encode(torch.zeros(1, 3, 64, 64))  # the transformers' positions fix the image size
    with pytest.raises(ValueError, match="power of two"):
        GigaTokConfig(num_latent_tokens=24)
    with pytest.raises(ValueError, match="query pyramid"):
        GigaTokConfig(image_size=32, num_latent_tokens=256)
    with pytest.raises(ValueError, match="token_layout"):
        GigaTokConfig(token_layout="3d")
    with pytest.raises(ValueError, match="no semantic-regularisation head"):
        small = GigaTokConfig(image_size=32, num_latent_tokens=4, codebook_size=8, hidden_channels=32,
                              encoder_channel_mult=[1, 2], z_channels=32, encoder_hidden_size=32, encoder_num_layers=1,
                              encoder_num_heads=2, decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2,
                              distill_depth=None)
        GigaTokModel(small).semantic_features(torch.zeros(1, 4, 8))


def test_encode_decode_frees_each_feature_map_once_it_is_used():
    """Issue 21 (peak memory 1.7x the original's in the S-B benchmark): with no grad graph, a ResNet block frees
    conv1's output before conv2 runs, and the CNN decoder frees the map an adaptive GroupNorm reads before the level
    after it runs (the original's ``h = f(h)`` steps); each kept one full-resolution map too many at the peak."""
    import weakref

    from vistok.modeling.layers.conv_autoencoder import ConvResnetBlock

    torch.manual_seed(0)
    model = GigaTokModel(GigaTokConfig(
        image_size=16, num_latent_tokens=4, codebook_size=32, token_dim=4, hidden_channels=32, encoder_channel_mult=[1, 2],
        z_channels=32, num_res_blocks=1, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2,
        decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2, distill_depth=None)).eval()
    alive, checked = {}, []

    def remember(key):
        def hook(module, args, output):
            alive[key] = weakref.ref(output)
        return hook

    def expect_freed(key):
        def hook(module, args):
            assert alive.pop(key)() is None, f"{key} still alive"
            checked.append(key)
        return hook

    blocks = [m for m in model.modules() if isinstance(m, ConvResnetBlock)]
    for i, block in enumerate(blocks):
        block.conv1.register_forward_hook(remember(f"block {i} conv1 output"))
        block.conv2.register_forward_pre_hook(expect_freed(f"block {i} conv1 output"))
    decoder = model.decoder
    before = [decoder.mid, *decoder.up_levels[:-1]]
    for i, (previous, level) in enumerate(zip(before, decoder.up_levels)):
        previous.register_forward_hook(remember(f"decoder level {i} input before its norm"))
        level.register_forward_pre_hook(expect_freed(f"decoder level {i} input before its norm"))
    with torch.inference_mode():
        model.decode(model.encode(torch.rand(1, 3, 16, 16) * 2 - 1).token_ids)
    assert len(checked) == len(blocks) + len(decoder.up_levels) and len(blocks) >= 6


def test_converter_errors_name_the_problem_and_leave_nothing(converted, tmp_path):
    meta, _ = load("gigatok_1d")
    state = original_weights(meta)
    del state["s2to1encoder.transformer.1.multihead_attn.out_proj.weight"]
    torch.save({"model": state}, tmp_path / "broken.pt")
    with pytest.raises(ConversionError, match=r"token_encoder.layers.1.cross_attn.out_proj.weight.*"
                                              r"s2to1encoder.transformer.1.multihead_attn.out_proj.weight"):
        convert_gigatok(str(tmp_path / "broken.pt"), str(tmp_path / "out"), image_size=32)
    with pytest.raises(ConversionError, match="positional embedding covers 16 positions"):
        convert_gigatok(str(converted / "gigatok_1d.pt"), str(tmp_path / "out"), image_size=128)
    with pytest.raises(ConversionError, match="is a 2D tokenizer but the checkpoint is 1D"):
        convert_gigatok(str(converted / "gigatok_1d.pt"), str(tmp_path / "out"), preset="s-b-2d", image_size=32)
    with pytest.raises(ConversionError, match="neither 's2to1encoder"):
        torch.save({"model": {"encoder.conv_in.weight": torch.zeros(32, 3, 3, 3)}}, tmp_path / "other.pt")
        convert_gigatok(str(tmp_path / "other.pt"), str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pt", "other.pt"]
    assert cli_main(["convert", "gigatok", "--original", str(tmp_path / "broken.pt"), "--output", str(tmp_path / "o2"),
                     "--image-size", "32"]) == 2


# -- generator -------------------------------------------------------------------------------------
GPT_SETTINGS = ("cfg_topk", "cfg_topp_interval", "no_guidance", "step", "linear", "linear_re", "triangular", "rectangular")
GPT_2D_SETTINGS = ("cfg_topk", "step", "no_guidance", "token_decode_cfg")


def sample_like_original(pipe, meta, setting):
    """pipe.sample_tokens with the fixture's generate() settings (the original's global-RNG seed as the generator)."""
    s = meta["settings"][setting]
    extra = {"decode_feeds_condition": False} if s.get("token_decode") else {}
    return pipe.sample_tokens(meta["condition"], guidance_scale=s["cfg_scale"], cfg_interval=s["cfg_interval"],
                              temperature=s["temperature"], top_k=s["top_k"], top_p=s["top_p"], do_sample=s["sample_logits"],
                              cfg_schedule=s["cfg_schedule"], cfg_schedule_kwargs=s.get("cfg_schedule_kwargs"),
                              generator=torch.Generator().manual_seed(s["seed"]), **extra)


def converted_gpt(converted, name: str, tokenizer: str, output: str):
    """The ``name`` fixture's weights (a training checkpoint: {"model", "ema"}, the GPT evaluated with "model")
    converted with the converted ``tokenizer``, loaded as an AutoregressiveImagePipeline."""
    from vistok import AutoregressiveImagePipeline

    meta, _ = load(name)
    weights = original_weights(meta)
    torch.save({"model": weights, "ema": {k: v + 1.0 for k, v in weights.items()}}, converted / f"{name}.pt")
    assert cli_main(["convert", "gigatok-gpt", "--original", str(converted / f"{name}.pt"), "--tokenizer",
                     str(converted / tokenizer), "--num-heads", "4", "--output", str(converted / output)]) == 0
    return AutoregressiveImagePipeline.from_pretrained(converted / output)


def assert_gpt_logits_match_original(model, expected):
    """Conditional and null-class logits of the fixture's ids and labels."""
    ids, labels = expected["input_ids"], expected["class_labels"]
    assert_matches_original(model, lambda m: m(ids, class_labels=labels).logits, expected["logits_cond"], "cond logits")
    drop = torch.ones_like(labels, dtype=torch.bool)
    assert_matches_original(model, lambda m: m(ids, class_labels=labels, drop_condition=drop).logits,
                            expected["logits_uncond"], "null-class logits")


@pytest.fixture(scope="module")
def c2i(converted):
    """The gpt_1d fixture (gpt_1d.py) converted with the converted 1D tokenizer."""
    return converted_gpt(converted, "gpt_1d", "gigatok_1d", "c2i")


def test_gpt_logits_match_original(c2i):
    from vistok import LlamaGenTransformer

    _, expected = load("gpt_1d")
    model = c2i.transformer
    assert isinstance(model, LlamaGenTransformer) and model.config.position_embedding == "learned"
    assert_gpt_logits_match_original(model, expected)


@pytest.mark.parametrize("setting", GPT_SETTINGS)
def test_seeded_samples_equal_original_generate(c2i, setting):
    meta, expected = load("gpt_1d")
    ids = sample_like_original(c2i, meta, setting)
    assert ids.shape == (3, 16)  # 1D tokens
    assert torch.equal(ids, expected[f"tokens_{setting}"])


def test_pipeline_generates_images_with_the_1d_tokenizer(c2i, converted):
    out = c2i(class_labels=[1, 2], generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.images.shape == (2, 3, 32, 32)
    assert c2i.transformer.config.sampling_defaults["guidance_scale"] == 4.0
    card = (converted / "c2i" / "README.md").read_text()
    assert "library_name: vistok" in card and "learned absolute positions" in card and "16 (1D)" in card


def test_gpt_converter_errors(converted, tmp_path):
    meta, _ = load("gpt_1d")
    state = original_weights(meta)
    state.pop("positional_embedding")
    torch.save({"model": state}, tmp_path / "rope.pt")
    with pytest.raises(ConversionError, match="is a 2D-token GPT but the tokenizer makes 1D tokens"):
        from vistok.modeling.gigatok.convert_gigatok import convert_gpt
        convert_gpt(str(tmp_path / "rope.pt"), str(tmp_path / "out"), tokenizer=str(converted / "gigatok_1d"), num_heads=4)
    with pytest.raises(ConversionError, match="none of the original sizes"):
        convert_gpt(str(converted / "gpt_1d.pt"), str(tmp_path / "out"), tokenizer=str(converted / "gigatok_1d"))
    with pytest.raises(ConversionError, match="not a GigaTok tokenizer"):
        convert_gpt(str(converted / "gpt_1d.pt"), str(tmp_path / "out"), tokenizer=str(converted / "c2i" / "transformer"),
                    num_heads=4)
    with pytest.raises(ConversionError, match="is a 1D-token GPT but the tokenizer makes 2D tokens"):
        convert_gpt(str(converted / "gpt_1d.pt"), str(tmp_path / "out"), tokenizer=str(converted / "gigatok_2d"), num_heads=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rope.pt"]


def test_guidance_schedule_errors(c2i):
    with pytest.raises(ValueError, match="cfg_schedule must be one of"):
        c2i.sample_tokens([1], guidance_scale=2.0, cfg_schedule="cosine")
    with pytest.raises(ValueError, match="'step' needs cfg_schedule_kwargs"):
        c2i.sample_tokens([1], guidance_scale=2.0, cfg_schedule="step")
    with pytest.raises(ValueError, match=r"takes \['window_start'\] cfg_schedule_kwargs, got \['peak'\]"):
        c2i.sample_tokens([1], guidance_scale=2.0, cfg_schedule="step", cfg_schedule_kwargs={"window_start": 0.1, "peak": 0.3})
    with pytest.raises(ValueError, match="must be a ratio in"):
        c2i.sample_tokens([1], guidance_scale=2.0, cfg_schedule="rectangular", cfg_schedule_kwargs={"window_start": 2})


# -- 2D generator ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def c2i_2d(converted):
    """The gpt_2d fixture (gpt.py: LlamaGen's GPT with 2D RoPE) converted with the converted 2D tokenizer."""
    return converted_gpt(converted, "gpt_2d", "gigatok_2d", "c2i_2d")


def test_2d_gpt_logits_match_original(c2i_2d):
    from vistok import LlamaGenTransformer

    _, expected = load("gpt_2d")
    model = c2i_2d.transformer
    assert isinstance(model, LlamaGenTransformer) and model.config.position_embedding == "rope_2d"
    assert model.config.grid_size == 4 and model.config.sampling_defaults["decode_feeds_condition"] is True
    assert_gpt_logits_match_original(model, expected)


@pytest.mark.parametrize("setting", GPT_2D_SETTINGS)
def test_2d_seeded_samples_equal_original_generate(c2i_2d, setting):
    meta, expected = load("gpt_2d")
    ids = sample_like_original(c2i_2d, meta, setting)
    assert ids.shape == (3, 4, 4)  # 2D tokens
    assert torch.equal(ids.flatten(1), expected[f"tokens_{setting}"])


def test_2d_original_decoding_ignores_the_sampled_tokens(c2i_2d):
    """The original's (default) decoding: replacing every sampled token (a step-end callback) leaves the next
    steps' logits unchanged; with decode_feeds_condition=False (LlamaGen's decoding) the replaced tokens are fed
    back and the logits change."""
    def logits_seen(replace, **kwargs):
        seen = []

        def callback(pipe, step, timestep, tensors):
            seen.append(tensors["logits"].clone())
            if replace:
                ids = tensors["token_ids"].clone()
                ids[:, -1] = (ids[:, -1] + 1) % 64
                return {"token_ids": ids}
            return {}
        c2i_2d.sample_tokens([3, 8], guidance_scale=2.0, top_k=0, generator=torch.Generator().manual_seed(5),
                             callback_on_step_end=callback, callback_on_step_end_tensor_inputs=("token_ids", "logits"), **kwargs)
        return torch.stack(seen)

    assert torch.equal(logits_seen(False), logits_seen(True))
    assert not torch.allclose(logits_seen(False, decode_feeds_condition=False), logits_seen(True, decode_feeds_condition=False))


def test_pipeline_generates_images_with_the_2d_tokenizer(c2i_2d, converted):
    out = c2i_2d(class_labels=[1, 2], generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.images.shape == (2, 3, 32, 32)
    card = (converted / "c2i_2d" / "README.md").read_text()
    assert "2D RoPE over the token grid" in card and "16 (2D)" in card and "decode_feeds_condition" in card


# -- training --------------------------------------------------------------------------------------
def test_semantic_regularisation_trains_the_head_against_a_frozen_dinov2(tmp_path):
    """`vistok train tokenizer` with loss.semantic_weight: the head's -cos to a tiny random DINOv2's patch features."""
    import numpy as np
    import PIL.Image
    from accelerate.state import AcceleratorState
    from transformers import Dinov2Config, Dinov2Model

    from vistok.training import load_train_config
    from vistok.training.tokenizer import TokenizerTrainer

    for i in range(4):
        rng = np.random.default_rng(i)
        PIL.Image.fromarray((rng.random((20, 20, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "data").mkdir()
    for i in range(4):
        (tmp_path / f"{i}.png").rename(tmp_path / "data" / f"{i}.png")
    torch.manual_seed(0)
    teacher = Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                       patch_size=2, image_size=16))
    teacher.save_pretrained(tmp_path / "dinov2")
    model = {"family": "gigatok", "config": dict(
        image_size=16, num_latent_tokens=4, codebook_size=32, token_dim=4, hidden_channels=32, encoder_channel_mult=[1, 2],
        z_channels=32, num_res_blocks=1, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2,
        decoder_hidden_size=32, decoder_num_layers=2, decoder_num_heads=2, distill_depth=1, distill_dim=16)}

    def config(out, **loss):
        return load_train_config("tokenizer", overrides={
            "model": model, "data": {"dataset": str(tmp_path / "data")},
            "training": {"output_dir": str(out), "batch_size": 2, "max_steps": 3, "learning_rate": 1e-3, "log_every": 1,
                         "image_every": 1000, "checkpointing_steps": 1000, "export": False},
            "loss": {"reconstruction": "l2", **loss}})

    def head(trainer):
        return trainer.accelerator.unwrap_model(trainer.model).token_decoder.distill_mlp.state_dict()

    AcceleratorState._reset_state(True)
    trainer = TokenizerTrainer(config(tmp_path / "run", semantic_weight=1.0, semantic_teacher=str(tmp_path / "dinov2"),
                                      semantic_image_size=16))
    summary = trainer.train()
    assert -1.0 <= summary["last"]["semantic_loss"] <= 1.0
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in trainer.teacher.state_dict().items())  # frozen
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in trainer.teacher.parameters()}
    # the same seeded run without the term: the head (trained by nothing else) ends elsewhere
    AcceleratorState._reset_state(True)
    plain = TokenizerTrainer(config(tmp_path / "plain"))
    plain_summary = plain.train()
    assert "semantic_loss" not in plain_summary["last"]
    first = [json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[0]) for run in ("run", "plain")]
    assert first[0]["reconstruction_loss"] == first[1]["reconstruction_loss"]  # the same seeded start
    assert any(not torch.equal(v, head(plain)[k]) for k, v in head(trainer).items())
    AcceleratorState._reset_state(True)
    with pytest.raises(ValueError, match="needs loss.semantic_teacher"):
        TokenizerTrainer(config(tmp_path / "run2", semantic_weight=1.0)).train()
    AcceleratorState._reset_state(True)
    with pytest.raises(ValueError, match="match loss.semantic_image_size"):
        TokenizerTrainer(config(tmp_path / "run3", semantic_weight=1.0, semantic_teacher=str(tmp_path / "dinov2"),
                                semantic_image_size=32)).train()
    AcceleratorState._reset_state(True)
