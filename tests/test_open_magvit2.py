"""Open-MAGVIT2 and IBQ: the LFQ and IBQ tokenizers, the factorized and adaLN AR generators against the original code
(tests/fixtures/README.md, "open_magvit2/"), the converters and CLI (Lightning checkpoints, EMA weights, the
AR checkpoint's embedded tokenizer), the factorized sampling pipeline, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import vistok  # noqa: F401  (registers the model types)
from vistok import (FactorizedAutoregressiveImagePipeline, IBQARTransformer, OpenMagvit2ARConfig, OpenMagvit2ARTransformer,
                    OpenMagvit2Model)
from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.open_magvit2.convert_open_magvit2 import convert_ar, convert_tokenizer
from _random_weights import random_state_dict
from _tolerances import assert_matches_original

FIXTURES = Path(__file__).parent / "fixtures" / "open_magvit2"
SETTINGS = ("cfg", "cfg_topk_topp_temperature", "no_guidance")


def load(name):
    return json.loads((FIXTURES / f"{name}.json").read_text()), load_file(str(FIXTURES / f"{name}.safetensors"))


def lightning_checkpoint(state: dict) -> dict:
    return {"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "2.1.0", "state_dict": state}


def tokenizer_release_state(meta) -> tuple[dict, dict]:
    """(the release state dict: raw weights + LitEma copies + loss weights, the EMA weights the fixture used)."""
    ema = random_state_dict(meta["state_dict_shapes"], meta["weights_seed"])
    raw = random_state_dict(meta["state_dict_shapes"], meta["weights_seed"] + 100)
    state = dict(raw)
    state.update({f"model_ema.{k.replace('.', '')}": v for k, v in ema.items()})
    state["model_ema.decay"] = torch.tensor(0.999)
    state["model_ema.num_updates"] = torch.tensor(-1, dtype=torch.int32)
    state["model_ema.lossdiscriminatorconv1weight"] = torch.zeros(4, 3, 3, 3)  # LitEma copies the losses' parameters too
    state["loss.discriminator.conv1.weight"] = torch.zeros(4, 3, 3, 3)
    return state, ema


@pytest.fixture(scope="module")
def omagvit2_converted(tmp_path_factory):
    """The fixtures' random weights saved as Lightning .ckpt files and converted through the CLI."""
    root = tmp_path_factory.mktemp("open_magvit2")
    tok_meta, _ = load("tokenizer")
    state, _ = tokenizer_release_state(tok_meta)
    torch.save(lightning_checkpoint(state), root / "tok.ckpt")
    assert cli_main(["convert", "open-magvit2", "--original", str(root / "tok.ckpt"), "--image-size", "32", "--output", str(root / "tok")]) == 0
    assert cli_main(["convert", "open-magvit2", "--original", str(root / "tok.ckpt"), "--image-size", "32", "--no-ema",
                     "--output", str(root / "tok_raw")]) == 0
    gpt_meta, _ = load("gpt")
    ar = {f"transformer.{k}": v for k, v in random_state_dict(gpt_meta["state_dict_shapes"], gpt_meta["weights_seed"]).items()}
    # the AR checkpoint's tokenizer copy: the raw weights the original decodes with (here: the fixture's)
    tok_weights = random_state_dict(gpt_meta["tokenizer"]["state_dict_shapes"], gpt_meta["tokenizer"]["weights_seed"])
    ar.update({f"first_stage_model.{k}": v for k, v in tok_weights.items()})
    ar["transformer.spatial_blocks.0.attention.kv_cache.k_cache"] = torch.zeros(6, 4, 24, 16)  # saved after sampling
    torch.save(lightning_checkpoint(ar), root / "ar.ckpt")
    assert cli_main(["convert", "open-magvit2-ar", "--original", str(root / "ar.ckpt"), "--image-size", "16", "--num-heads", "4",
                     "--output", str(root / "pipe")]) == 0
    return root


@pytest.fixture(scope="module")
def omagvit2_pipe(omagvit2_converted):
    pipe = FactorizedAutoregressiveImagePipeline.from_pretrained(omagvit2_converted / "pipe")
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- tokenizer -------------------------------------------------------------------------------------
def test_tokenizer_matches_original(omagvit2_converted):
    _, expected = load("tokenizer")
    tok = AutoModel.from_pretrained(omagvit2_converted / "tok")
    assert isinstance(tok, OpenMagvit2Model) and tok.config.token_layout == "2d" and tok.config.codebook_size == 64
    pixels = expected["pixel_values"]
    with torch.no_grad():
        enc = tok.encode(pixels)
    assert torch.equal(enc.token_ids, expected["token_ids"])
    pre, post = tok.split_token_ids(enc.token_ids, factorized_bits=[2, 4])
    assert torch.equal(pre, expected["token_pre"]) and torch.equal(post, expected["token_post"])
    assert torch.equal(tok.merge_token_ids(pre, post, factorized_bits=[2, 4]), enc.token_ids)
    # the codes are exactly ±1; the original's straight-through sum x + (q - x) rounds them by an ulp at most
    torch.testing.assert_close(enc.latents, expected["quantized"].flatten(1, 2), rtol=0, atol=1e-6)
    assert_matches_original(tok, lambda m: m.encoder(pixels.to(m.dtype)).permute(0, 2, 3, 1), expected["encoder_output"], "encoder")
    ids = expected["token_ids"]
    assert_matches_original(tok, lambda m: m.decode(ids), expected["reconstruction_from_ids"], "decode(token_ids)")
    assert_matches_original(tok, lambda m: m(pixels.to(m.dtype)).reconstruction, expected["reconstruction"], "forward")


def test_tokenizer_ema_and_raw_weights(omagvit2_converted):
    meta, _ = load("tokenizer")
    state, ema = tokenizer_release_state(meta)
    for folder, source in (("tok", ema), ("tok_raw", state)):
        weights = AutoModel.from_pretrained(omagvit2_converted / folder).state_dict()
        assert weights.keys() == ema.keys()
        assert all(torch.equal(weights[k], source[k]) for k in ema), folder
    raw_only = {k: v for k, v in state.items() if not k.startswith("model_ema.")}
    torch.save(lightning_checkpoint(raw_only), omagvit2_converted / "raw_only.ckpt")
    with pytest.raises(ConversionError, match="no EMA weights"):
        convert_tokenizer(str(omagvit2_converted / "raw_only.ckpt"), str(omagvit2_converted / "never"), image_size=32, ema=True)
    assert not (omagvit2_converted / "never").exists()


def test_tokenizer_other_sizes_and_bad_input(omagvit2_converted):
    tok = AutoModel.from_pretrained(omagvit2_converted / "tok")
    with torch.no_grad():
        assert tok.encode(torch.zeros(1, 3, 16, 16)).token_ids.shape == (1, 4, 4)
        assert tok.decode(torch.zeros(1, 2, 2, dtype=torch.long)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="multiple of 4"):
        tok.encode(torch.zeros(1, 3, 18, 18))
    with pytest.raises(ValueError, match=r"token_ids must lie in \[0, 63\]"):
        tok.decode(torch.full((1, 2, 2), 64))
    with pytest.raises(ValueError, match="no factorized_bits"):
        tok.split_token_ids(torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="must sum to the tokenizer's 6 bits"):
        tok.split_token_ids(torch.zeros(1, 2, 2, dtype=torch.long), factorized_bits=[2, 2])


# -- generator -------------------------------------------------------------------------------------
def test_ar_logits_match_original(omagvit2_pipe):
    _, expected = load("gpt")
    model = omagvit2_pipe.transformer
    assert isinstance(model, OpenMagvit2ARTransformer) and model.config.factorized_bits == [2, 4]
    labels, pre, post = expected["class_labels"], expected["pre_ids"], expected["post_ids"]
    null = torch.ones_like(labels, dtype=torch.bool)
    for drop, kind in ((None, "cond"), (null, "uncond")):
        for head in ("pre", "post"):
            assert_matches_original(model, lambda m: getattr(m(pre_ids=pre, post_ids=post, class_labels=labels, drop_condition=drop),
                                                             f"logits_{head}"),
                                    expected[f"logits_{head}_{kind}"], f"logits_{head}_{kind}")
    # full code ids are split low bits first: the same logits
    ids = omagvit2_pipe.image_tokenizer.merge_token_ids(pre, post)
    out = model(input_ids=ids, class_labels=labels, labels=ids)
    torch.testing.assert_close(out.logits_post, model(pre_ids=pre, post_ids=post, class_labels=labels).logits_post, rtol=0, atol=0)
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(out.loss, ce(out.logits_pre.flatten(0, 1), pre.flatten()) + ce(out.logits_post.flatten(0, 1), post.flatten()))


@pytest.mark.parametrize("setting", SETTINGS)
def test_seeded_samples_equal_original(omagvit2_pipe, setting):
    meta, expected = load("gpt")
    s = meta["settings"][setting]
    ids = omagvit2_pipe(class_labels=meta["condition"], guidance_scale=s["cfg_scale"], temperature=s["temperature"], top_k=s["top_k"],
               top_p=s["top_p"], generator=torch.Generator().manual_seed(s["seed"]), output_type="latent").images
    pre, post = omagvit2_pipe.image_tokenizer.split_token_ids(ids.flatten(1))
    assert torch.equal(pre, expected[f"pre_{setting}"]) and torch.equal(post, expected[f"post_{setting}"])


def test_pipeline_images_and_defaults(omagvit2_pipe, omagvit2_converted):
    meta, expected = load("gpt")
    s = meta["settings"]["cfg"]
    kwargs = dict(class_labels=meta["condition"], guidance_scale=s["cfg_scale"], generator=torch.Generator().manual_seed(s["seed"]))
    images = omagvit2_pipe(**kwargs, output_type="pt").images
    ids = omagvit2_pipe(**{**kwargs, "generator": torch.Generator().manual_seed(s["seed"])}, output_type="latent").images
    assert images.shape == (3, 3, 16, 16)
    assert_matches_original(omagvit2_pipe.image_tokenizer, lambda m: m.decode(ids), expected["images_cfg"], "decoded samples")
    # the stored defaults (AR-B's evaluation settings when no preset is given) and one value for both sub-tokens
    assert omagvit2_pipe.transformer.config.sampling_defaults == {"guidance_scale": [1.9, 2.0], "temperature": [1.0, 1.0],
                                                         "top_k": [0, 0], "top_p": [1.0, 1.0]}
    same = omagvit2_pipe(class_labels=[1], guidance_scale=1.5, top_k=3, generator=torch.Generator().manual_seed(1), output_type="latent").images
    listed = omagvit2_pipe(class_labels=[1], guidance_scale=[1.5, 1.5], top_k=[3, 3], generator=torch.Generator().manual_seed(1),
                  output_type="latent").images
    assert torch.equal(same, listed)
    reloaded = FactorizedAutoregressiveImagePipeline.from_pretrained(omagvit2_converted / "pipe")
    assert reloaded.image_tokenizer.config.factorized_bits == [2, 4]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"guidance_scale": [1.5, 1.5, 1.5]}, ValueError, r"guidance_scale must be one value or a list of 2"),
    ({"top_k": [3, -1]}, ValueError, r"top_k\[1\] must be >= 0"),
    ({"top_p": [0.0, 1.0]}, ValueError, r"top_p\[0\] must be in \(0, 1\]"),
    ({"temperature": [1.0, 0.0]}, ValueError, r"temperature\[1\] must be > 0"),
    ({"cfg_interval": 3}, ValueError, "cfg_interval is not part of this sampler"),
    ({"cfg_schedule": "linear"}, ValueError, "cfg_schedule is not part of this sampler"),
    ({"compile": True}, ValueError, "no compiled decode step"),
    ({"class_labels": [10]}, ValueError, r"class_labels must lie in \[0, 9\]"),
])
def test_pipeline_bad_input(omagvit2_pipe, kwargs, error, message):
    with pytest.raises(error, match=message):
        omagvit2_pipe(**{"class_labels": [1], **kwargs}, output_type="latent")


def test_model_bad_input(omagvit2_pipe):
    model = omagvit2_pipe.transformer
    with pytest.raises(ValueError, match="pass either input_ids"):
        model(class_labels=torch.tensor([1]))
    with pytest.raises(ValueError, match="pass class_labels"):
        model(input_ids=torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"post_ids must lie in \[0, 15\]"):
        model(pre_ids=torch.zeros(1, 4, dtype=torch.long), post_ids=torch.full((1, 4), 16), class_labels=torch.tensor([1]))
    with pytest.raises(ValueError, match="between 1 and 16 tokens"):
        model(input_ids=torch.zeros(1, 17, dtype=torch.long), class_labels=torch.tensor([1]))
    with pytest.raises(ValueError, match="factorized_bits must be two groups"):
        OpenMagvit2ARConfig(factorized_bits=[2, 2, 2])


def test_converter_errors_and_tokenizer_replacement(omagvit2_converted, tmp_path, caplog):
    gpt_meta, _ = load("gpt")
    ar = {f"transformer.{k}": v for k, v in random_state_dict(gpt_meta["state_dict_shapes"], gpt_meta["weights_seed"]).items()}
    torch.save(lightning_checkpoint(ar), tmp_path / "ar_only.ckpt")
    with pytest.raises(ConversionError, match="holds no tokenizer"):
        convert_ar(str(tmp_path / "ar_only.ckpt"), str(tmp_path / "out"), image_size=16, num_heads=4)
    with pytest.raises(ConversionError, match="none of the original sizes"):
        convert_ar(str(tmp_path / "ar_only.ckpt"), str(tmp_path / "out"), tokenizer=str(omagvit2_converted / "tok"), image_size=16)
    with pytest.raises(ConversionError, match="does not record its image size"):
        convert_ar(str(tmp_path / "ar_only.ckpt"), str(tmp_path / "out"), tokenizer=str(omagvit2_converted / "tok"), num_heads=4)
    with pytest.raises(ConversionError, match="not an Open-MAGVIT2 model"):
        convert_tokenizer(str(tmp_path / "ar_only.ckpt"), str(tmp_path / "out"), image_size=32)
    assert not (tmp_path / "out").exists()
    # --tokenizer replaces the embedded copy (here: the EMA tokenizer, whose weights differ) and says so
    with caplog.at_level("WARNING"):
        convert_ar(str(omagvit2_converted / "ar.ckpt"), str(tmp_path / "replaced"), tokenizer=str(omagvit2_converted / "tok_raw"), image_size=16,
                   num_heads=4)
    assert "differs from the tokenizer copy" in caplog.text
    replaced = FactorizedAutoregressiveImagePipeline.from_pretrained(tmp_path / "replaced")
    raw = AutoModel.from_pretrained(omagvit2_converted / "tok_raw").state_dict()
    assert all(torch.equal(v, raw[k]) for k, v in replaced.image_tokenizer.state_dict().items())


def test_release_presets():
    from vistok.modeling.open_magvit2.convert_open_magvit2 import AR_RELEASES, TOKENIZER_RELEASES

    assert TOKENIZER_RELEASES["in-128"].settings["image_size"] == 128
    b, xl = AR_RELEASES["ar-b-256"], AR_RELEASES["ar-xl-256"]
    assert b.sampling["guidance_scale"] == [1.9, 2.0] and xl.sampling == {"guidance_scale": [1.75, 1.85], "temperature": [1.1, 1.0],
                                                                          "top_k": [0, 0], "top_p": [1.0, 1.0]}
    assert b.tokenizer == "in-256" and b.filename == "AR_256_B.ckpt"


# -- training --------------------------------------------------------------------------------------
@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one AcceleratorState per process; each run sets its own mixed precision."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_tokenizer_and_factorized_generator_train_and_export(tmp_path, fresh_accelerator_state):
    import numpy as np
    import PIL.Image
    from vistok.training import load_train_config
    from vistok.training.generator import GeneratorTrainer
    from vistok.training.tokenizer import TokenizerTrainer

    images = tmp_path / "images"
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    for label, name in enumerate(("red", "blue")):
        (images / name).mkdir(parents=True)
        for i in range(2):
            image = np.stack([xx * (1 - label), yy * 0.5 + 0.1 * i, (1 - xx) * label], axis=-1)
            PIL.Image.fromarray((image * 255).astype(np.uint8)).save(images / name / f"{i}.png")
    TokenizerTrainer(load_train_config("tokenizer", overrides={
        "model": {"family": "open-magvit2", "config": dict(image_size=16, num_bits=6, hidden_channels=32, channel_mult=[1, 1, 2],
                                                            num_res_blocks=1, factorized_bits=[2, 4])},
        "data": {"dataset": str(images)},
        "training": {"output_dir": str(tmp_path / "tok"), "batch_size": 2, "max_steps": 2, "log_every": 1, "image_every": 1000}})).train()
    logged = json.loads((tmp_path / "tok" / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(logged["loss"])
    tok = AutoModel.from_pretrained(tmp_path / "tok" / "final")
    assert isinstance(tok, OpenMagvit2Model) and tok.config.factorized_bits == [2, 4]
    tok.train()  # LFQ's entropy term (the quantizer library's memory-bounded one) is in the training loss only
    out = tok(torch.rand(2, 3, 16, 16) * 2 - 1)
    entropy = tok.quantizer(tok.encoder(torch.zeros(1, 3, 16, 16)).permute(0, 2, 3, 1)).entropy_loss
    assert out.quantizer_loss.requires_grad and entropy is not None

    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    config = load_train_config("generator", overrides={
        "model": {"family": "open-magvit2-ar", "config": dict(hidden_size=32, num_hidden_layers=1, num_factorized_layers=1,
                                                               num_attention_heads=2)},
        "data": {"dataset": str(images), "label_column": "label"},
        "training": {"output_dir": str(tmp_path / "ar"), "batch_size": 2, "max_steps": 3, "log_every": 1, "image_every": 3,
                     "learning_rate": 1e-3},
        "loss": {"tokenizer": str(tmp_path / "tok" / "final")}})
    trainer = GeneratorTrainer(config)
    summary = trainer.train()
    cfg = trainer.accelerator.unwrap_model(trainer.model).config
    assert (cfg.factorized_bits, cfg.num_tokens, cfg.codebook_size, cfg.num_classes) == ([2, 4], 16, 64, 2)
    first = json.loads((tmp_path / "ar" / "metrics.jsonl").read_text().splitlines()[0])
    # zero-initialised heads: uniform over 4 pre and 16 post codes, the mean of the two cross-entropies
    assert abs(first["loss"] - (np.log(4) + np.log(16)) / 2) < 1e-4
    pipe = FactorizedAutoregressiveImagePipeline.from_pretrained(tmp_path / "ar" / "final")
    generated = pipe(class_labels=[1], generator=torch.Generator().manual_seed(0), output_type="np").images
    assert summary["step"] == 3 and generated.shape == (1, 16, 16, 3)


# -- IBQ tokenizer ---------------------------------------------------------------------------------
def test_ibq_tokenizer_matches_original(tmp_path):
    from vistok import IBQModel
    from vistok.modeling.open_magvit2.convert_open_magvit2 import convert_ibq

    meta, expected = load("ibq")
    ema = random_state_dict(meta["state_dict_shapes"], meta["weights_seed"])
    raw = random_state_dict(meta["state_dict_shapes"], meta["weights_seed"] + 100)
    state = {**raw, **{f"model_ema.{k.replace('.', '')}": v for k, v in ema.items()}, "loss.logvar": torch.zeros(())}
    torch.save(lightning_checkpoint(state), tmp_path / "ibq.ckpt")
    assert cli_main(["convert", "ibq", "--original", str(tmp_path / "ibq.ckpt"), "--image-size", "16", "--output", str(tmp_path / "tok")]) == 0
    tok = AutoModel.from_pretrained(tmp_path / "tok")
    assert isinstance(tok, IBQModel) and tok.config.codebook_size == 64 and tok.config.attention_levels == [2]
    pixels = expected["pixel_values"]
    with torch.no_grad():
        enc = tok.encode(pixels)
    assert torch.equal(enc.token_ids, expected["token_ids"])
    # the original's one_hot @ E with one_hot = hard - sg(soft) + soft rounds the code by an ulp or so
    torch.testing.assert_close(enc.latents, expected["quantized"].flatten(1, 2), rtol=0, atol=1e-6)
    ids = expected["token_ids"]
    assert_matches_original(tok, lambda m: m.decode(ids), expected["reconstruction_from_ids"], "decode(token_ids)")
    assert_matches_original(tok, lambda m: m(pixels.to(m.dtype)).reconstruction, expected["reconstruction"], "forward")
    # training: gradients reach every code through the softmax one-hot (index backpropagation)
    tok.train()
    out = tok(pixels)
    out.quantizer_loss.backward()
    assert out.quantizer_loss.requires_grad and int((tok.quantizer.embedding.weight.grad.abs().sum(-1) > 0).sum()) == 64
    # --no-ema: the raw weights
    convert_ibq(str(tmp_path / "ibq.ckpt"), str(tmp_path / "raw"), image_size=16, ema=False)
    converted_raw = AutoModel.from_pretrained(tmp_path / "raw").quantizer.embedding.weight
    assert torch.equal(converted_raw, raw["quantize.embedding.weight"])
    with pytest.raises(ConversionError, match="not an IBQ tokenizer"):
        convert_ibq(str(FIXTURES / "gpt.safetensors"), str(tmp_path / "never"), image_size=16)


def test_index_propagation_quantizer_round_trip_and_entropy():
    from vistok.modeling.quantizers import IndexPropagationQuantizer

    torch.manual_seed(0)
    q = IndexPropagationQuantizer(16, 4, entropy_weight=0.05)
    ids = torch.randint(0, 16, (2, 3))
    assert torch.equal(q.codes_to_indices(q.indices_to_codes(ids)), ids)
    z = torch.randn(2, 3, 4)
    out = q.eval()(z)
    assert torch.equal(out.indices, (z @ q.embedding.weight.t()).argmax(-1)) and torch.equal(out.quantized, q.indices_to_codes(out.indices))
    assert out.entropy_loss is None and q.train()(z).entropy_loss is not None
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 15\]"):
        q.indices_to_codes(torch.tensor([16]))


# -- IBQ generator ---------------------------------------------------------------------------------
IBQ_SETTINGS = ("cfg", "cfg_topk_topp_temperature", "cfg_topk_temperature")


@pytest.fixture(scope="module")
def ibq_pipe(tmp_path_factory):
    """The IBQ fixtures' weights as an AR Lightning checkpoint with its tokenizer copy, converted through the CLI."""
    from vistok import AutoregressiveImagePipeline

    root = tmp_path_factory.mktemp("ibq_ar")
    meta, _ = load("ibq_gpt")
    tok_meta, _ = load("ibq")
    state = {f"transformer.{k}": v for k, v in random_state_dict(meta["state_dict_shapes"], meta["weights_seed"]).items()}
    state.update({f"first_stage_model.{k}": v for k, v in random_state_dict(tok_meta["state_dict_shapes"], tok_meta["weights_seed"]).items()})
    torch.save(lightning_checkpoint(state), root / "ar.ckpt")
    assert cli_main(["convert", "ibq-ar", "--original", str(root / "ar.ckpt"), "--image-size", "16", "--num-heads", "4",
                     "--output", str(root / "pipe")]) == 0
    pipe = AutoregressiveImagePipeline.from_pretrained(root / "pipe")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_ibq_ar_logits_match_original(ibq_pipe):
    _, expected = load("ibq_gpt")
    model = ibq_pipe.transformer
    assert isinstance(model, IBQARTransformer)
    ids, labels = expected["input_ids"], expected["class_labels"]
    null = torch.ones_like(labels, dtype=torch.bool)
    for drop, kind in ((None, "cond"), (null, "uncond")):
        assert_matches_original(model, lambda m: m(input_ids=ids, class_labels=labels, drop_condition=drop).logits,
                                expected[f"logits_{kind}"], f"logits_{kind}")


@pytest.mark.parametrize("setting", IBQ_SETTINGS)
def test_ibq_ar_seeded_samples_equal_original(ibq_pipe, setting):
    meta, expected = load("ibq_gpt")
    s = meta["settings"][setting]
    ids = ibq_pipe(class_labels=meta["condition"], guidance_scale=s["cfg_scale"], temperature=s["temperature"], top_k=s["top_k"],
                   top_p=s["top_p"], generator=torch.Generator().manual_seed(s["seed"]), output_type="latent").images
    assert torch.equal(ids.flatten(1), expected[f"tokens_{setting}"])


def test_ibq_ar_defaults_and_bad_input(ibq_pipe):
    model = ibq_pipe.transformer
    assert model.config.sampling_defaults["guidance_scale"] == 2.25  # IBQ-AR-B's released setting
    images = ibq_pipe(class_labels=[1], generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="pass class_labels"):
        model(input_ids=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 63\]"):
        model(input_ids=torch.full((1, 3), 64), class_labels=torch.tensor([0]))
    fresh = IBQARTransformer(model.config)
    assert not fresh.lm_head.weight.detach().any()  # zero-initialised head, as the original
    assert not fresh.layers[0].adaln.bias.detach().any()



def test_ibq_tokenizer_and_generator_train_and_export(tmp_path, fresh_accelerator_state):
    import numpy as np
    import PIL.Image
    from accelerate.state import AcceleratorState
    from vistok import AutoregressiveImagePipeline, IBQModel
    from vistok.training import load_train_config
    from vistok.training.generator import GeneratorTrainer
    from vistok.training.tokenizer import TokenizerTrainer

    images = tmp_path / "images"
    for label, name in enumerate(("red", "blue")):
        (images / name).mkdir(parents=True)
        for i in range(2):
            value = np.full((16, 16, 3), 40 * i, dtype=np.uint8)
            value[..., 2 * label] = 200
            PIL.Image.fromarray(value).save(images / name / f"{i}.png")
    TokenizerTrainer(load_train_config("tokenizer", overrides={
        "model": {"family": "ibq", "config": dict(image_size=16, codebook_size=32, token_dim=4, z_channels=32, hidden_channels=32,
                                                   channel_mult=[1, 1, 2], num_res_blocks=1)},
        "data": {"dataset": str(images)},
        "training": {"output_dir": str(tmp_path / "tok"), "batch_size": 2, "max_steps": 2, "log_every": 1, "image_every": 1000}})).train()
    assert isinstance(AutoModel.from_pretrained(tmp_path / "tok" / "final"), IBQModel)
    AcceleratorState._reset_state(True)
    trainer = GeneratorTrainer(load_train_config("generator", overrides={
        "model": {"family": "ibq-ar", "config": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)},
        "data": {"dataset": str(images), "label_column": "label"},
        "training": {"output_dir": str(tmp_path / "ar"), "batch_size": 2, "max_steps": 2, "log_every": 1, "image_every": 1000},
        "loss": {"tokenizer": str(tmp_path / "tok" / "final")}}))
    trainer.train()
    first = json.loads((tmp_path / "ar" / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(first["loss"] - np.log(32)) < 1e-4  # zero-initialised head: uniform over the 32 codes
    pipe = AutoregressiveImagePipeline.from_pretrained(tmp_path / "ar" / "final")
    assert pipe(class_labels=[0], generator=torch.Generator().manual_seed(0), output_type="latent").images.shape == (1, 4, 4)


def test_generator_heads_are_zero_initialised():
    """Built from a config (training from scratch), both generators' output heads start at zero, as the originals'."""
    factorized = OpenMagvit2ARTransformer(OpenMagvit2ARConfig(factorized_bits=[2, 3], num_tokens=16, hidden_size=32,
                                                              num_hidden_layers=1, num_factorized_layers=1, num_attention_heads=2))
    assert all(torch.count_nonzero(head.weight) == 0 for head in factorized.heads)
    ibq = IBQARTransformer(vistok.IBQARConfig(codebook_size=32, num_tokens=16, hidden_size=32, num_hidden_layers=1,
                                              num_attention_heads=2))
    assert torch.count_nonzero(ibq.lm_head.weight) == 0 and ibq.layers[0].self_attn.wqkv.weight.std() > 0
