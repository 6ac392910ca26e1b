"""MaskGIT's training objective (bytedance/1d-tokenizer): per sample a mask ratio from the arccos (or
cosine) schedule, at least one masked token, cross-entropy on the masked tokens only."""

from __future__ import annotations

import math

import torch


def mask_ratio(timesteps: torch.Tensor, schedule: str) -> torch.Tensor:
    """Fraction of tokens to mask at uniform ``timesteps`` in [0, 1): arccos (MaskGIT training) or cosine."""
    if schedule == "arccos":
        return torch.acos(timesteps) / (math.pi * 0.5)
    return torch.cos(timesteps * math.pi * 0.5)


def mask_tokens(tokens: torch.LongTensor, mask_token_id: int, schedule: str = "arccos"):
    """(masked input, boolean mask) with round(N * ratio) >= 1 random positions masked per sample."""
    batch, length = tokens.shape
    timesteps = torch.rand(batch, device=tokens.device)
    ratio = mask_ratio(timesteps, schedule).clamp(1e-6, 1.0)
    count = (length * ratio).round().clamp(min=1)
    order = torch.rand(batch, length, device=tokens.device).argsort(dim=-1)
    mask = order < count[:, None]
    return torch.where(mask, mask_token_id, tokens), mask


def masked_token_objective(model, model_config, tokenizer, tokens, labels, loss_config):
    """(logits, targets) of the masked positions."""
    inputs, mask = mask_tokens(tokens, model_config.mask_token_id, loss_config.mask_schedule)
    logits = model(input_ids=inputs, class_labels=labels).logits
    return logits[mask], tokens[mask]
