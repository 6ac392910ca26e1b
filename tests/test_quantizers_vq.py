"""VectorQuantizer: round trips, idempotence, gradient estimators, EMA, projections, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vistok.modeling.quantizers import VectorQuantizer

CONFIGS = [
    dict(),
    dict(use_l2_norm=True),
    dict(codebook_dim=3),
    dict(gradient_estimator="rotation"),
    dict(ema_decay=0.9),
]


def make(config, k=37, d=6, seed=0):
    torch.manual_seed(seed)
    return VectorQuantizer(k, d, **config)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@settings(max_examples=10, deadline=None)
@given(shape=st.sampled_from([(0, 6), (1, 6), (5, 6), (2, 3, 6), (2, 1, 4, 6)]),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]), seed=st.integers(0, 1000))
def test_round_trip_and_idempotence(config, shape, dtype, seed):
    vq = make(config).eval()
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    out = vq(z)
    assert out.quantized.shape == shape and out.indices.shape == shape[:-1] and out.indices.dtype == torch.long
    codes = vq.indices_to_codes(out.indices)
    torch.testing.assert_close(out.quantized.float(), codes, atol=1e-5, rtol=1e-5)
    assert torch.equal(vq.codes_to_indices(codes), out.indices)
    if "codebook_dim" in config:
        return  # project_in(project_out(code)) need not land on the same code: no idempotence claim
    again = vq(out.quantized.detach())
    assert torch.equal(again.indices, out.indices)
    torch.testing.assert_close(again.quantized, out.quantized.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("estimator", ["straight_through", "rotation"])
def test_gradients_reach_the_encoder(estimator):
    vq = make({"gradient_estimator": estimator}).train()
    z = torch.randn(4, 6, requires_grad=True)
    out = vq(z)
    (out.quantized.square().sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert vq.embedding.weight.grad.abs().sum() > 0
    assert out.commitment_loss > 0 and out.codebook_loss > 0


def test_rotation_trick_forward_equals_codes():
    vq = make({"gradient_estimator": "rotation"})
    z = torch.randn(9, 6)
    out = vq(z)
    torch.testing.assert_close(out.quantized, vq.indices_to_codes(out.indices), atol=1e-5, rtol=1e-5)


def test_cosine_codes_are_unit_norm():
    vq = make({"use_l2_norm": True})
    out = vq(torch.randn(7, 6) * 10)
    torch.testing.assert_close(out.quantized.norm(dim=-1), torch.ones(7), atol=1e-5, rtol=0)


def test_ema_pulls_codes_to_the_data_and_restarts_dead_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 2, ema_decay=0.5, dead_code_threshold=0.5).train()
    centers = torch.tensor([[5.0, 5.0], [-5.0, 5.0]])
    data = centers.repeat_interleave(50, 0) + 0.01 * torch.randn(100, 2)
    before = vq.embedding.weight.clone()
    for _ in range(20):
        out = vq(data)
    assert out.codebook_loss is None and not vq.embedding.weight.requires_grad
    assert not torch.equal(before, vq.embedding.weight)
    # every data cluster now has a code on top of it
    distances = torch.cdist(centers, vq.embedding.weight).min(dim=1).values
    assert torch.all(distances < 0.1)
    assert out.commitment_loss < 1e-3


def test_usage_statistics():
    vq = make({})
    out = vq(vq.indices_to_codes(torch.tensor([0, 1, 2, 3])))
    torch.testing.assert_close(out.perplexity, torch.tensor(4.0))
    torch.testing.assert_close(out.codebook_usage, torch.tensor(4 / 37))


def test_bad_input():
    vq = make({})
    with pytest.raises(ValueError, match="size 6"):
        vq(torch.randn(3, 5))
    with pytest.raises(TypeError, match="floating-point"):
        vq(torch.zeros(3, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 36\]"):
        vq.indices_to_codes(torch.tensor([37]))
    with pytest.raises(ValueError, match="gradient_estimator"):
        VectorQuantizer(4, 2, gradient_estimator="gumbel")
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizer(4, 2, ema_decay=1.5)
