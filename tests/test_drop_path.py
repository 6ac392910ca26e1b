"""Stochastic depth shared by LlamaGen's and VAR's transformer blocks (modeling/layers/drop_path.py)."""

from __future__ import annotations

import torch

from vistok.modeling.layers.drop_path import drop_path


def test_drop_path_drops_whole_samples_and_rescales_the_rest():
    x = torch.randn(4000, 3, 5)
    torch.manual_seed(0)
    out = drop_path(x, 0.25, training=True)
    dropped = (out == 0).flatten(1).all(1)
    kept = ~dropped
    # each sample is dropped or kept whole; the kept ones scaled by 1 / (1 - p) (exactly as timm: x * (keep / (1 - p)))
    assert torch.equal(out[kept], x[kept] * (torch.ones(()) / 0.75))
    assert torch.equal(dropped | kept, torch.ones(4000, dtype=torch.bool))
    # 4000 Bernoulli(0.25) draws: the dropped fraction is within 5 standard deviations (0.034) of 0.25
    assert abs(dropped.float().mean().item() - 0.25) < 0.035


def test_drop_path_is_the_identity_in_eval_or_at_rate_zero_and_drops_all_at_rate_one():
    x = torch.randn(8, 4)
    assert drop_path(x, 0.5, training=False) is x
    assert drop_path(x, 0.0, training=True) is x
    assert torch.equal(drop_path(x, 1.0, training=True), torch.zeros_like(x))
