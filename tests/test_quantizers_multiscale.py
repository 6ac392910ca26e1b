"""Multi-scale residual quantizer (VAR) against the original code, and the residual VQ stack.

The VAR fixture (tests/fixtures/README.md, ``var_quantizer/``) holds the outputs of VAR's own
``VectorQuantizer2`` on random weights rebuilt here from a seed.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from _random_weights import random_state_dict
from vistok.modeling.quantizers import MultiScaleResidualQuantizer, ResidualVQ, VectorQuantizer
from vistok.modeling.quantizers.multiscale import (convert_var_quantizer_kwargs, convert_var_quantizer_state_dict,
                                                  scale_to_phi_indices)

FIXTURE = Path(__file__).parent / "fixtures" / "var_quantizer" / "var_quantizer"
ATOL = 1e-5
HYPOTHESIS = settings(max_examples=25, deadline=None, derandomize=True)


@functools.cache
def _fixture():
    meta = json.loads(FIXTURE.with_suffix(".json").read_text())
    return meta, load_file(str(FIXTURE.with_suffix(".safetensors")))


VARIANTS = list(_fixture()[0]["variants"])


def original_state_dict(name: str) -> dict[str, torch.Tensor]:
    variant = _fixture()[0]["variants"][name]
    return random_state_dict(variant["state_dict_shapes"], variant["weights_seed"])


def from_original(name: str) -> MultiScaleResidualQuantizer:
    variant = _fixture()[0]["variants"][name]
    cfg = variant["original_config"]
    quantizer = MultiScaleResidualQuantizer(**convert_var_quantizer_kwargs(cfg))  # VAR's argument names -> ours
    quantizer.load_state_dict(convert_var_quantizer_state_dict(original_state_dict(name)), strict=True)
    return quantizer.eval()


def expected(name: str) -> dict[str, torch.Tensor]:
    prefix = name + "."
    return {key[len(prefix):]: value for key, value in _fixture()[1].items() if key.startswith(prefix)}


def close(actual, wanted, atol=ATOL):
    torch.testing.assert_close(actual, wanted, atol=atol, rtol=1e-5)


# -- parity with VAR's VectorQuantizer2 -------------------------------------------------------


def test_scale_to_phi_mapping_of_the_released_config():
    assert scale_to_phi_indices(10, 4) == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert MultiScaleResidualQuantizer(codebook_size=8, dim=4).scale_to_phi == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert MultiScaleResidualQuantizer(codebook_size=8, dim=4).num_tokens == 680


@pytest.mark.parametrize("name", VARIANTS)
def test_scale_to_phi_matches_original(name):
    assert from_original(name).scale_to_phi == _fixture()[0]["variants"][name]["scale_to_phi"]


@pytest.mark.parametrize("name", VARIANTS)
def test_greedy_encoding_matches_original(name):
    quantizer, exp = from_original(name), expected(name)
    num_scales = quantizer.num_scales
    indices = quantizer.codes_to_indices(exp["f"])
    assert indices.shape == (exp["f"].shape[0], quantizer.num_tokens)
    assert torch.equal(indices, torch.cat([exp[f"idx.{k}"] for k in range(num_scales)], dim=1))
    for k, (scale, pn) in enumerate(zip(quantizer.split_scales(indices), quantizer.patch_nums)):
        assert torch.equal(scale, exp[f"idx.{k}"].view(-1, pn, pn))
    for k, partial in enumerate(quantizer.partial_codes(exp["f"])):
        close(partial, exp[f"fhat.{k}"])


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_matches_original(name):
    quantizer, exp = from_original(name), expected(name)
    with torch.no_grad():
        out = quantizer(exp["f"])
    assert torch.equal(out.indices, quantizer.codes_to_indices(exp["f"]))
    close(out.quantized, exp["forward.fhat"])
    close(out.loss, exp["forward.loss"])
    close(out.commitment_loss + out.codebook_loss, out.loss)
    assert 1.0 <= float(out.perplexity) <= quantizer.codebook_size and 0.0 < float(out.codebook_usage) <= 1.0


@pytest.mark.parametrize("name", VARIANTS)
def test_decoding_and_partial_reconstructions_match_original(name):
    quantizer, exp = from_original(name), expected(name)
    indices = torch.cat([exp[f"idx.{k}"] for k in range(quantizer.num_scales)], dim=1)
    with torch.no_grad():
        close(quantizer.indices_to_codes(indices), exp["embed_fhat.last"])
        close(quantizer.indices_to_codes(indices), exp[f"fhat.{quantizer.num_scales - 1}"])
        for k in range(quantizer.num_scales):
            partial = quantizer.indices_to_codes(indices, up_to_scale=k)
            close(partial, exp[f"embed_fhat.{k}"])
            close(partial, exp[f"fhat.{k}"])  # the greedy encoder's running f_hat
            prefix = indices[:, : quantizer.scale_offsets[k + 1]]
            close(quantizer.indices_to_codes(prefix), exp[f"embed_fhat.{k}"])


@pytest.mark.parametrize("name", VARIANTS)
def test_generator_inputs_match_original(name):
    quantizer, exp = from_original(name), expected(name)
    indices = torch.cat([exp[f"idx.{k}"] for k in range(quantizer.num_scales)], dim=1)
    with torch.no_grad():
        var_input = quantizer.teacher_forcing_input(indices)
        assert var_input.shape == (indices.shape[0], quantizer.num_tokens - quantizer.scale_lengths[0], quantizer.dim)
        close(var_input, exp["var_input"])
        f_hat = torch.zeros_like(exp["f"])
        for k, scale in enumerate(quantizer.split_scales(indices)):
            h = quantizer.embedding(scale).permute(0, 3, 1, 2)
            before = f_hat.clone()
            f_hat, next_input = quantizer.next_autoregressive_input(k, f_hat, h)
            close(next_input, exp[f"ar_next.{k}"])
        assert not torch.equal(before, f_hat)  # not updated in place
        close(f_hat, exp["ar_fhat"])


@pytest.mark.parametrize("name", VARIANTS)
def test_training_loss_and_gradients_match_original(name):
    quantizer, exp = from_original(name), expected(name)
    quantizer.train()
    f = exp["f"].clone().requires_grad_(True)
    out = quantizer(f)
    (out.loss + (out.quantized * exp["grad_weight"]).sum()).backward()
    close(out.quantized.detach(), exp["train.fhat"])
    close(out.loss.detach(), exp["train.loss"])
    close(f.grad, exp["grad.f"])
    without = set(_fixture()[0]["variants"][name]["params_without_grad"])
    original_name = {ours: theirs for theirs in _fixture()[0]["variants"][name]["state_dict_shapes"]
                     for ours in convert_var_quantizer_state_dict({theirs: None})}
    for key, param in quantizer.named_parameters():
        theirs = original_name[key]
        if theirs in without:
            assert param.grad is None, key
        else:
            close(param.grad, exp[f"grad.{theirs}"])


def test_converter_mapping_and_prefix():
    state = {f"quantize.{k}": v for k, v in original_state_dict("main").items()}
    state["encoder.conv_in.weight"] = torch.zeros(1)
    converted = convert_var_quantizer_state_dict(state, prefix="quantize.")
    assert "ema_vocab_hit_SV" not in converted and "encoder.conv_in.weight" not in converted
    assert set(converted) == set(from_original("main").state_dict())
    shared = convert_var_quantizer_state_dict({"quant_resi.qresi.weight": 1, "quant_resi.3.bias": 2})
    assert shared == {"quant_resi.qresi_ls.0.weight": 1, "quant_resi.qresi_ls.3.bias": 2}
    quantizer = from_original("main")
    with pytest.raises(RuntimeError, match="unexpected_key"):
        quantizer.load_state_dict({**converted, "unexpected_key": torch.zeros(1)}, strict=True)


# -- behaviour of the multi-scale quantizer ---------------------------------------------------


@functools.cache
def main_quantizer() -> MultiScaleResidualQuantizer:
    """Shared by the read-only property tests (eval mode, no gradients)."""
    return from_original("main").requires_grad_(False)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 3))
def test_multiscale_encode_decode_consistency(seed, batch):
    quantizer = main_quantizer()
    f = torch.randn(batch, 8, 6, 6, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = quantizer(f)
        indices = quantizer.codes_to_indices(f)
        assert torch.equal(out.indices, indices)
        decoded = quantizer.indices_to_codes(indices)
        close(decoded, out.quantized)
        close(decoded, quantizer.partial_codes(f)[-1])
        # decoding is deterministic and independent of the batch's other images
        close(quantizer.indices_to_codes(indices[:1]), decoded[:1])


@HYPOTHESIS
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 3), scales=st.integers(1, 5))
def test_split_merge_round_trip(seed, batch, scales):
    quantizer = main_quantizer()
    length = quantizer.scale_offsets[scales]
    indices = torch.randint(0, quantizer.codebook_size, (batch, length), generator=torch.Generator().manual_seed(seed))
    parts = quantizer.split_scales(indices)
    assert [p.shape[1:] for p in parts] == [(pn, pn) for pn in quantizer.patch_nums[:scales]]
    assert torch.equal(quantizer.merge_scales(parts), indices)
    assert torch.equal(quantizer.merge_scales([p.flatten(1) for p in parts]), indices)


@HYPOTHESIS
@given(seed=st.integers(0, 2**31 - 1), side=st.integers(1, 5))
def test_single_scale_without_phi_is_plain_vq(seed, side):
    """One scale and no Phi: the multi-scale quantizer reduces to VQ, so decode -> encode is the
    identity and a second quantization changes nothing."""
    gen = torch.Generator().manual_seed(seed)
    quantizer = MultiScaleResidualQuantizer(codebook_size=16, dim=4, patch_nums=(side,), residual_ratio=0.0)
    vq = VectorQuantizer(16, 4)
    with torch.no_grad():
        quantizer.embedding.weight.copy_(torch.randn(16, 4, generator=gen))
        vq.embedding.weight.copy_(quantizer.embedding.weight)
    f = torch.randn(2, 4, side, side, generator=gen)
    with torch.no_grad():
        out = quantizer(f)
        assert torch.equal(out.indices, vq(f.permute(0, 2, 3, 1)).indices.flatten(1))
        indices = torch.randint(0, 16, (2, side * side), generator=gen)
        assert torch.equal(quantizer.codes_to_indices(quantizer.indices_to_codes(indices)), indices)
        assert torch.equal(quantizer(out.quantized).indices, out.indices)


def test_multiscale_gradients_and_straight_through():
    quantizer = from_original("main").train()
    f = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    weight = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(1))
    (quantizer(f).quantized * weight).sum().backward()
    torch.testing.assert_close(f.grad, weight, rtol=0, atol=0)  # straight-through: identity
    assert quantizer.embedding.weight.grad is None
    f.grad = None
    quantizer(f).loss.backward()
    assert f.grad.abs().sum() > 0
    assert quantizer.embedding.weight.grad.abs().sum() > 0
    for phi in quantizer.quant_resi.qresi_ls:
        assert phi.weight.grad.abs().sum() > 0


def test_multiscale_low_precision_input_returns_fp32():
    quantizer = from_original("main")
    f = expected("main")["f"]
    with torch.no_grad():
        out = quantizer(f.to(torch.bfloat16))
    assert out.quantized.dtype == torch.float32 and out.quantized.shape == f.shape


def test_multiscale_bad_input():
    quantizer = from_original("main")  # dim 8, patch_nums (1, 2, 3, 4, 6): 66 tokens
    with pytest.raises(ValueError, match="expects 8 channels"):
        quantizer(torch.randn(2, 4, 6, 6))
    with pytest.raises(ValueError, match="6x6"):
        quantizer(torch.randn(2, 8, 5, 5))
    with pytest.raises(ValueError, match="6x6"):
        quantizer.codes_to_indices(torch.randn(2, 8, 6, 7))
    with pytest.raises(ValueError, match=r"\[B, 8, 6, 6\]"):
        quantizer(torch.randn(2, 6, 6, 8)[..., 0])
    with pytest.raises(TypeError, match="floating-point"):
        quantizer(torch.zeros(2, 8, 6, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="66 tokens"):
        quantizer.indices_to_codes(torch.zeros(2, 65, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, 66\]"):
        quantizer.indices_to_codes(torch.zeros(66, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 63\]"):
        quantizer.indices_to_codes(torch.full((2, 66), 64))
    with pytest.raises(TypeError, match="integer"):
        quantizer.indices_to_codes(torch.zeros(2, 66))
    with pytest.raises(ValueError, match=r"up_to_scale must be an integer in \[0, 4\]"):
        quantizer.indices_to_codes(torch.zeros(2, 66, dtype=torch.long), up_to_scale=5)
    with pytest.raises(ValueError, match=r"up_to_scale must be an integer in \[0, 1\]"):
        quantizer.indices_to_codes(torch.zeros(2, 5, dtype=torch.long), up_to_scale=2)
    with pytest.raises(ValueError, match=r"scale 1 must be \[B, 2, 2\]"):
        quantizer.merge_scales([torch.zeros(2, 1, 1, dtype=torch.long), torch.zeros(2, 3, 3, dtype=torch.long)])
    with pytest.raises(ValueError, match=r"\[B, 66\]"):
        quantizer.teacher_forcing_input(torch.zeros(2, 14, dtype=torch.long))
    with pytest.raises(ValueError, match="patch_nums"):
        MultiScaleResidualQuantizer(codebook_size=8, dim=4, patch_nums=(1, 0, 2))
    with pytest.raises(ValueError, match="num_residual_convs"):
        MultiScaleResidualQuantizer(codebook_size=8, dim=4, num_residual_convs=0)
    with pytest.raises(ValueError, match="share_quant_resi"):
        convert_var_quantizer_kwargs({"share_quant_resi": -1})


# -- residual VQ ------------------------------------------------------------------------------


def hierarchical_rvq(num_quantizers=3, codebook_size=16, dim=8, **kwargs) -> ResidualVQ:
    """Stage q's codes are 100**-q times smaller than stage 0's: greedy decoding is exact."""
    rvq = ResidualVQ(num_quantizers, codebook_size, dim, **kwargs).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for q, layer in enumerate(rvq.layers):
            layer.embedding.weight.copy_(torch.randn(codebook_size, dim, generator=gen) * 100.0 ** -q)
    return rvq


@HYPOTHESIS
@given(seed=st.integers(0, 2**31 - 1), stages=st.integers(1, 3), shape=st.sampled_from([(5,), (2, 3), (1, 2, 2)]))
def test_residual_vq_round_trip(seed, stages, shape):
    rvq = hierarchical_rvq()
    indices = torch.randint(0, 16, (*shape, stages), generator=torch.Generator().manual_seed(seed))
    codes = rvq.indices_to_codes(indices)
    assert codes.shape == (*shape, 8)
    assert torch.equal(rvq.codes_to_indices(codes, num_quantizers=stages), indices)
    out = rvq(codes, num_quantizers=stages)
    assert torch.equal(out.indices, indices)
    close(out.quantized, codes)


@HYPOTHESIS
@given(seed=st.integers(0, 2**31 - 1), shared=st.booleans())
def test_residual_vq_forward_matches_lookups(seed, shared):
    rvq = ResidualVQ(4, 16, 8, shared_codebook=shared).eval()
    z = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = rvq(z)
        assert out.indices.shape == (3, 5, 4)
        assert torch.equal(rvq.codes_to_indices(z), out.indices)
        close(rvq.indices_to_codes(out.indices), out.quantized)
        for n in (1, 2, 3):  # fewer stages: a prefix of the greedy encoding
            fewer = rvq(z, num_quantizers=n)
            assert torch.equal(fewer.indices, out.indices[..., :n])
            close(fewer.quantized, rvq.indices_to_codes(out.indices[..., :n]))
        # the loss sums the stages
        residual, total = z, 0.0
        for q in range(4):
            stage_out = rvq.stage(q)(residual)
            total = total + stage_out.loss
            residual = residual - rvq.stage(q).indices_to_codes(stage_out.indices)
        close(out.loss, total)


def test_residual_vq_more_stages_reduce_error():
    rvq = hierarchical_rvq(num_quantizers=3, codebook_size=64, dim=4)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(3)
        z = rvq.indices_to_codes(torch.randint(0, 64, (200, 2), generator=gen)) + 1e-4 * torch.randn(200, 4, generator=gen)
        errors = [float((rvq(z, num_quantizers=n).quantized - z).pow(2).mean()) for n in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("estimator,codebook_dim", [("straight_through", None), ("rotation", None),
                                                    ("straight_through", 4)])
def test_residual_vq_gradients_flow(estimator, codebook_dim):
    rvq = ResidualVQ(3, 16, 8, gradient_estimator=estimator, codebook_dim=codebook_dim).train()
    z = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = rvq(z)
    close(out.quantized.detach(), rvq.indices_to_codes(out.indices))
    (out.loss + out.quantized.pow(2).sum()).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    for layer in rvq.layers:
        assert layer.embedding.weight.grad.abs().sum() > 0  # every stage's codebook learns
        if codebook_dim:
            assert layer.project_in.weight.grad.abs().sum() > 0 and layer.project_out.weight.grad.abs().sum() > 0
    if estimator == "straight_through":
        z.grad = None
        weight = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(1))
        (rvq(z).quantized * weight).sum().backward()
        torch.testing.assert_close(z.grad, weight, rtol=0, atol=0)


def test_residual_vq_shared_codebook_ema_and_usage():
    shared = ResidualVQ(3, 16, 8, shared_codebook=True)
    assert set(shared.state_dict()) == {"layers.0.embedding.weight"}
    assert shared.stage(0) is shared.stage(2)
    rvq = ResidualVQ(2, 4, 2, ema_decay=0.9, commitment_cost=0.5).train()
    before = rvq.layers[1].embedding.weight.clone()
    out = rvq(torch.randn(32, 2, generator=torch.Generator().manual_seed(2)))
    assert out.codebook_loss is None and not torch.equal(before, rvq.layers[1].embedding.weight)
    # usage: stage 0 uses codes {0, 1}, stage 1 code {0}: 3 of the 8 distinct entries
    rvq = hierarchical_rvq(num_quantizers=2, codebook_size=4, dim=2)
    codes = rvq.indices_to_codes(torch.tensor([[0, 0], [1, 0]]))
    out = rvq(codes)
    close(out.codebook_usage, torch.tensor(3 / 8))
    close(out.perplexity, torch.tensor(2.0 ** 1.5))  # histogram (1, 1, 2) / 4 over the entries
    shared = ResidualVQ(2, 4, 2, shared_codebook=True).eval()
    out = shared(torch.randn(3, 2, generator=torch.Generator().manual_seed(4)))
    close(out.codebook_usage, torch.tensor(out.indices.unique().numel() / 4))


def test_residual_vq_bad_input():
    rvq = ResidualVQ(3, 16, 8)
    with pytest.raises(ValueError, match=r"num_quantizers must be an integer in \[1, 3\]"):
        rvq(torch.randn(2, 8), num_quantizers=4)
    with pytest.raises(ValueError, match="size 8"):
        rvq(torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"Q in \[1, 3\]"):
        rvq.indices_to_codes(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        rvq.indices_to_codes(torch.full((2, 3), 16))
    with pytest.raises(ValueError, match="positive integer"):
        ResidualVQ(0, 16, 8)
