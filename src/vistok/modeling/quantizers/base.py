"""The output every quantizer returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class QuantizerOutput:
    """quantized: straight-through codes, same shape as the input ``[..., C]``; indices: ``[...]``."""

    quantized: torch.Tensor
    indices: torch.LongTensor
    loss: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
