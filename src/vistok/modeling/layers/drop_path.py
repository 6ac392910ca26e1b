"""Stochastic depth for the residual branches of the generators' transformer blocks (LlamaGen, VAR)."""

from __future__ import annotations

import torch


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop each sample's whole residual branch ``x [B, ...]`` with probability ``p`` and rescale the
    kept ones by ``1 / (1 - p)``; the identity when ``p == 0`` or not training. timm's ``drop_path``,
    which both LlamaGen and VAR train with (``p == 1`` drops everything, unscaled)."""
    if p == 0.0 or not training:
        return x
    keep_prob = 1 - p
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
    if keep_prob > 0.0:
        keep.div_(keep_prob)
    return x * keep
