"""The contract every quantizer follows, declared as abstract methods of :class:`Quantizer` (a
subclass that leaves one out cannot be instantiated).

``forward(z)`` quantizes the last dimension of ``z [..., D]`` and returns a :class:`QuantizerOutput`;
``indices_to_codes(indices)`` and ``codes_to_indices(codes)`` convert between the two without
gradients. Losses are already weighted; ``loss`` is their sum. :class:`ProjectedQuantizer` adds the
Linear projections in and out of a lower-dimensional code space that several quantizers share.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput


@dataclass
class QuantizerOutput(ModelOutput):
    """quantized: straight-through codes, the input's shape ``[..., D]``.
    indices: ``[...]`` (one id per vector), or ``[..., Q]`` for residual stacks of Q quantizers.
    loss: the weighted sum of the terms below that apply (a 0-dim tensor).
    perplexity / codebook_usage: exp(entropy) of the batch's code histogram, and the fraction of codes used.
    A transformers ModelOutput (a dict as well): hook-based sharding (DeepSpeed ZeRO-3 registers its backward
    re-gather on the tensors it finds in a module's output) and pytree traversal see its tensors.
    """

    quantized: torch.Tensor
    indices: torch.LongTensor = None  # always given (ModelOutput wants defaults after the first field)
    loss: torch.Tensor = None
    commitment_loss: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None
    entropy_loss: torch.Tensor | None = None
    perplexity: torch.Tensor | None = None
    codebook_usage: torch.Tensor | None = None


# Above this many codes, usage statistics count the distinct indices instead of a full histogram.
HISTOGRAM_MAX_CODES = 2**24


def usage_statistics(indices: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity, fraction of codes used) of a batch of indices: a histogram up to 2^24 codes,
    distinct-index counting (O(number of indices) memory) above."""
    flat = indices.reshape(-1)
    if flat.numel() == 0:
        zero = torch.zeros((), device=indices.device)
        return zero, zero
    if codebook_size <= HISTOGRAM_MAX_CODES:
        counts = torch.bincount(flat, minlength=codebook_size).float()
        used = (counts > 0).float().mean()
        counts = counts[counts > 0]
    else:
        counts = torch.unique(flat, return_counts=True)[1].float()
        used = torch.tensor(counts.numel() / codebook_size, device=indices.device)
    probs = counts / flat.numel()
    entropy = -(probs * torch.log(probs)).sum()
    return entropy.exp(), used


class Quantizer(nn.Module, metaclass=ABCMeta):
    """Base class: subclasses set ``codebook_size`` and ``dim`` and implement the three abstract
    methods (their own extra arguments, such as a number of stages or scales, are keyword arguments
    with defaults)."""

    codebook_size: int
    dim: int

    @abstractmethod
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize ``z`` (straight-through codes, indices, weighted losses, usage statistics)."""

    @abstractmethod
    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """The codes of ``indices`` in the input's space (what ``forward`` returns as ``quantized``)."""

    @abstractmethod
    def codes_to_indices(self, codes: torch.Tensor) -> torch.LongTensor:
        """The indices of ``codes``: for codes from ``indices_to_codes`` or ``forward``, the indices
        they came from."""

    def check_input(self, z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            raise TypeError(f"{type(self).__name__} quantizes floating-point tensors [..., {self.dim}]")
        if z.ndim == 0 or z.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__} expects vectors of size {self.dim} in the last dimension, got {tuple(z.shape)}")

    def check_indices(self, indices: torch.Tensor) -> None:
        if not isinstance(indices, torch.Tensor) or indices.is_floating_point() or indices.dtype == torch.bool:
            raise TypeError(f"{type(self).__name__} indices must be an integer tensor")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(
                f"indices must lie in [0, {self.codebook_size - 1}], got [{int(indices.min())}, {int(indices.max())}]"
            )


class ProjectedQuantizer(Quantizer):
    """A quantizer of ``[..., dim]`` vectors whose codes live in a ``codebook_dim``-dimensional space,
    behind ``project_in``/``project_out`` Linear layers when the two differ.

    ``_codes_to_code_space`` maps output-space codes back by the least-squares inverse of
    ``project_out`` (exact for codes from ``indices_to_codes`` when ``dim >= codebook_dim``).
    ``_from_code_space`` keeps the codes' dtype (or casts to the one given) without projections;
    with them the output has the projection's.
    """

    def __init__(self, dim: int, codebook_dim: int):
        super().__init__()
        if dim < 1 or codebook_dim < 1:
            raise ValueError(f"dim and the code dimension must be positive, got {dim} and {codebook_dim}")
        self.dim, self.codebook_dim = dim, codebook_dim
        if self.has_projections:
            self.project_in = nn.Linear(dim, codebook_dim)
            self.project_out = nn.Linear(codebook_dim, dim)

    @property
    def has_projections(self) -> bool:
        return self.dim != self.codebook_dim

    def _to_code_space(self, z: torch.Tensor) -> torch.Tensor:
        """Inputs ``[..., dim]`` -> fp32 ``[..., codebook_dim]`` (through ``project_in``)."""
        if self.has_projections:
            z = self.project_in(z.to(self.project_in.weight.dtype))
        return z.float()

    def _from_code_space(self, codes: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Code-space vectors ``[..., codebook_dim]`` -> ``[..., dim]`` (through ``project_out``;
        without projections cast to ``dtype`` when given)."""
        if self.has_projections:
            return self.project_out(codes.to(self.project_out.weight.dtype))
        return codes if dtype is None else codes.to(dtype)

    def _codes_to_code_space(self, codes: torch.Tensor) -> torch.Tensor:
        """Output-space codes ``[..., dim]`` -> fp32 code-space vectors (least squares through project_out)."""
        self.check_input(codes)
        if not self.has_projections:
            return codes.float()
        weight = self.project_out.weight.detach().double()  # [dim, codebook_dim]
        bias = self.project_out.bias.detach().double()
        return ((codes.detach().double() - bias) @ torch.linalg.pinv(weight).T).float()
