"""TokenFlow: the dual-codebook shared-mapping multi-scale tokenizer.

Parity with the original ByteFlow-AI/TokenFlow code (tests/fixtures/README.md, "tokenflow/"): the original
checkpoints are rebuilt from the fixture's seeds and key lists (wrapped in ``{"ema": ...}`` as released),
converted with ``vistok convert tokenflow``, and compared with what the original computed: token ids
identical at every scale, semantic features, latents, reconstructions and the quantizer's training terms
within the float32 rounding bound of tests/_tolerances.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import vistok  # noqa: F401  (registers the model types)
from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.quantizers import SharedMappingMultiScaleQuantizer
from vistok.modeling.tokenflow import TokenFlowModel
from vistok.modeling.tokenflow.convert_tokenflow import convert
from _random_weights import random_state_dict
from _tolerances import assert_close_to_fp32_fixture, float64_copy, rounding_error

FIXTURES = Path(__file__).parent / "fixtures" / "tokenflow"
META = json.loads((FIXTURES / "tokenflow.json").read_text())
TENSORS = load_file(str(FIXTURES / "tokenflow.safetensors"))
VARIANTS = tuple(META["variants"])
TEACHER = {"clipb_224": "clip", "siglip_384": "siglip"}


def expected(name: str) -> dict[str, torch.Tensor]:
    return {k[len(name) + 1:]: v for k, v in TENSORS.items() if k.startswith(name + ".")}


def original_state(meta: dict) -> dict[str, torch.Tensor]:
    shapes = meta["state_dict_shapes"]
    buffers = {k: torch.tensor(v).reshape(shapes[k]) for k, v in meta["buffers"].items()}
    weights = {k: v for k, v in shapes.items() if k not in buffers and not k.endswith("codebook_used")}
    state = {**random_state_dict(weights, meta["weights_seed"]), **buffers}
    state["quantize.codebook_used"] = torch.zeros(shapes["quantize.codebook_used"])
    return state


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenflow")
    out = {}
    for name in VARIANTS:
        meta = META["variants"][name]
        torch.save({"ema": original_state(meta), "model": {"unused": torch.zeros(1)}}, root / f"{name}.pt")
        folder = root / name
        assert cli_main(["convert", "tokenflow", "--original", str(root / f"{name}.pt"), "--output", str(folder),
                         "--patch-nums", ",".join(map(str, meta["scales"])), "--image-size", str(meta["image_size"])]) == 0
        model = AutoModel.from_pretrained(folder)
        assert isinstance(model, TokenFlowModel) and model.config.semantic_encoder_type == TEACHER[meta["teacher"]]
        out[name] = (model.eval(), expected(name), folder, float64_copy(model).eval())
    return out


def check(models, compute, expected_value, what):
    """``compute(model)`` (ours, float32) against the original's fixture within tests/_tolerances.py's bound, the
    rounding error measured against the float64 copy made once per variant."""
    model, _, _, model64 = models
    with torch.no_grad():
        ours, reference = compute(model), compute(model64)
    assert_close_to_fp32_fixture(ours, expected_value, rounding_error(ours, reference), what)


@pytest.mark.parametrize("name", VARIANTS)
def test_token_ids_and_features_match_the_original(converted, name):
    model, exp, *_ = converted[name]
    x = exp["pixel_values"]
    check(converted[name], lambda m: m._tower_tokens(x.to(m.dtype)), exp["tower_tokens"], f"{name} tower tokens")
    check(converted[name], lambda m: m.semantic_features(x.to(m.dtype)), exp["semantic_features"], f"{name} semantic features")
    with torch.no_grad():
        enc = model.encode(x)
    assert torch.equal(enc.token_ids, exp["token_ids"])  # every scale
    check(converted[name], lambda m: m.encode(x.to(m.dtype)).latents, exp["latents"], f"{name} latents")
    features = model.get_image_features(x).last_hidden_state
    side = model.config.patch_nums[-1]
    assert features.shape == (x.shape[0], side * side, model.config.code_dim)
    assert torch.allclose(features, exp["latents"].flatten(2).transpose(1, 2), atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_decoding_matches_the_original(converted, name):
    exp = converted[name][1]
    latents, ids = exp["latents"], exp["token_ids"]
    check(converted[name], lambda m: m.decode_latents(latents.to(m.dtype)), exp["reconstruction"], f"{name} reconstruction")
    check(converted[name], lambda m: m.decode_semantic(latents.to(m.dtype)), exp["semantic_reconstruction"],
          f"{name} semantic reconstruction")
    check(converted[name], lambda m: m.decode(ids), exp["code_reconstruction"], f"{name} decode(token_ids)")
    check(converted[name], lambda m: m.quantizer.teacher_forcing_input(ids).to(m.dtype), exp["teacher_forcing_input"],
          f"{name} t2i inputs")


@pytest.mark.parametrize("name", VARIANTS)
def test_quantizer_training_terms_match_the_original(converted, name):
    model, exp, *_ = converted[name]
    with torch.no_grad():
        features = model._features(exp["pixel_values"])
        q = model.quantizer(features)
    assert torch.equal(q.indices, exp["token_ids"])
    assert torch.allclose(q.codebook_loss, exp["vq_loss"], rtol=1e-5, atol=1e-7)
    assert torch.allclose(q.commitment_loss, exp["commit_loss"], rtol=1e-5, atol=1e-7)
    assert torch.allclose(q.loss, exp["vq_loss"] + exp["commit_loss"], rtol=1e-5, atol=1e-7)


def test_scale_layout_and_prefix_decoding(converted):
    model, exp, *_ = converted["clip"]
    ids = exp["token_ids"]
    cfg = model.config
    assert cfg.token_layout == "multiscale" and cfg.num_tokens == ids.shape[1] == sum(p * p for p in cfg.patch_nums)
    scales = model.split_scales(ids)
    assert [s.shape[1:] for s in scales] == [(p, p) for p in cfg.patch_nums]
    assert torch.equal(model.merge_scales(scales), ids)
    with torch.no_grad():
        coarse = model.decode(ids, up_to_scale=0)
        prefix = model.decode(ids[:, : cfg.scale_offsets[1]])
    assert torch.allclose(coarse, prefix, atol=1e-6)
    with pytest.raises(ValueError, match="tokens per image"):
        model.decode(ids[:, :3])


def test_bad_inputs_get_clear_errors(converted):
    model, exp, *_ = converted["clip"]
    with pytest.raises(ValueError, match="64x64"):
        model.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="codebook_size"):
        model.decode(torch.full((1, model.config.num_tokens), model.config.codebook_size))
    with pytest.raises(ValueError, match="latents must have shape"):
        model.decode_semantic(torch.zeros(1, 3, 4, 4))


def test_training_forward_backpropagates_through_both_branches(converted):
    model, exp, *_ = converted["clip"]
    model = copy.deepcopy(model).train()
    out = model(exp["pixel_values"])
    semantic = model.decode_semantic(out.latents)
    loss = (out.reconstruction - exp["pixel_values"]).abs().mean() + semantic.pow(2).mean() + out.quantizer_loss
    loss.backward()
    assert model.encoder.conv_in.weight.grad is not None and model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.semantic_in[0].weight.grad.abs().sum() > 0
    assert model.semantic_encoder.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert model.quantizer.codebooks[0].weight.grad.abs().sum() > 0


def test_converter_errors(tmp_path):
    meta = META["variants"]["clip"]
    state = original_state(meta)
    del state["quantize.embedding_vqgan.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ConversionError, match="embedding_vqgan"):
        convert(str(tmp_path / "broken.pt"), str(tmp_path / "out"), patch_nums=meta["scales"], image_size=64)
    assert not (tmp_path / "out").exists()
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ConversionError, match="teacher"):
        convert(str(tmp_path / "other.pt"), str(tmp_path / "out"))
    with pytest.raises(ConversionError, match="preset"):
        convert(str(tmp_path / "broken.pt"), str(tmp_path / "out"), preset="nope")


def test_shared_mapping_quantizer_contract():
    torch.manual_seed(0)
    q = SharedMappingMultiScaleQuantizer(codebook_size=16, split=(3, 2), patch_nums=(1, 2, 4))
    f = torch.randn(2, 5, 4, 4)
    out = q(f)
    assert out.indices.shape == (2, 21) and out.quantized.shape == f.shape
    assert torch.equal(q.codes_to_indices(f), out.indices)
    assert torch.allclose(q.indices_to_codes(out.indices), out.quantized, atol=1e-5)
    # one shared index: the codes of each part are that index's normalised row of each codebook
    row = q.embed(torch.tensor([5]))[0]
    assert torch.allclose(row[:3].norm(), torch.tensor(1.0)) and torch.allclose(row[3:].norm(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="split"):
        SharedMappingMultiScaleQuantizer(16, split=(3, 0))
