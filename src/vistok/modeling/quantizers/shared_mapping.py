"""TokenFlow's dual-codebook, shared-mapping multi-scale residual quantizer (Qu et al. 2025, "TokenFlow:
Unified Image Tokenizer for Multimodal Understanding and Generation"; ByteFlow-AI/TokenFlow
``tokenflow/tokenizer/vq_model.py: VectorQuantizer`` driven by ``TokenFlow.encode``).

A feature map ``f [B, C, H, W]`` has its channels split into parts (TokenFlow: 32 semantic + 8 pixel
channels). Each part has its own codebook of the same ``codebook_size`` rows; one index addresses a row
of every codebook (the *shared mapping*). At each scale of side ``pn``, coarse to fine:

1. the residual is area-downsampled to ``pn x pn``;
2. every part of every vector and every codebook row is L2-normalised, and the index is the argmin of
   the sum over parts of the squared distances (TokenFlow ``d = d_vqkd + 1.0 * d_vqgan``) — the same as
   the nearest row of the concatenated normalised codebooks to the concatenated normalised parts;
3. the scale's codes are the concatenated *normalised* rows, bicubic-upsampled to ``H x W`` and added to
   ``f_hat``; the residual loses them.

The scale layout, splitting/merging of ``[B, L]`` ids, ``indices_to_codes`` (with ``up_to_scale``)
and the greedy encoding are :class:`MultiScaleResidualQuantizer`'s (no Phi convs: TokenFlow's
``using_shared_conv`` is off in every release).

Training terms (per scale, averaged over the scales as TokenFlow does): codebook ``mean((z_q - sg(z))^2)``,
commitment ``beta * mean((sg(z_q) - z)^2)`` on the normalised vectors, and ``entropy_loss_ratio`` times
the entropy loss of ``softmax(-d / 0.01)`` (off, 0, in the releases). The straight-through estimator is
TokenFlow's: each scale's codes carry the gradient of its normalised, downsampled residual.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...kernels import nearest_code
from .base import QuantizerOutput, usage_statistics
from .multiscale import MultiScaleResidualQuantizer


def entropy_loss(affinity: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """TokenFlow's (and LlamaGen's) ``compute_entropy_loss``: mean per-sample entropy minus the entropy of
    the mean distribution of ``softmax(affinity / temperature)``."""
    flat = affinity.reshape(-1, affinity.shape[-1]) / temperature
    probs = F.softmax(flat, dim=-1)
    log_probs = F.log_softmax(flat + 1e-5, dim=-1)
    avg_probs = probs.mean(dim=0)
    avg_entropy = -torch.sum(avg_probs * torch.log(avg_probs + 1e-5))
    sample_entropy = -torch.mean(torch.sum(probs * log_probs, dim=-1))
    return sample_entropy - avg_entropy


class SharedMappingMultiScaleQuantizer(MultiScaleResidualQuantizer):
    """Multi-scale residual quantization with one index over several L2-normalised codebooks.

    Args:
        codebook_size: rows of every codebook (TokenFlow ``codebook_size``, 32768 in the releases).
        split: channels of each part, in channel order (TokenFlow ``[semantic_code_dim, codebook_embed_dim]``
            = ``(32, 8)``); ``dim = sum(split)``.
        patch_nums: side of each scale, coarse to fine (TokenFlow ``scale_rq_layers``).
        commitment_cost: TokenFlow ``commit_loss_beta`` (1.0).
        entropy_loss_ratio: TokenFlow ``entropy_loss_ratio`` (0.0).

    Codebooks are ``codebooks.{i}.weight`` (``[codebook_size, split[i]]``), normalised on use.
    """

    def __init__(self, codebook_size: int = 32768, split: Sequence[int] = (32, 8),
                 patch_nums: Sequence[int] = (1, 2, 4, 6, 8, 10, 12, 14, 16), commitment_cost: float = 1.0,
                 entropy_loss_ratio: float = 0.0):
        parts = tuple(split) if isinstance(split, Sequence) else ()
        if not parts or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in parts):
            raise ValueError(f"split must be a non-empty sequence of positive channel counts, got {split!r}")
        super().__init__(codebook_size, sum(parts), patch_nums, commitment_cost=commitment_cost, use_l2_norm=True,
                         residual_ratio=0.0, num_residual_convs=1)
        del self.embedding  # one codebook per part instead
        self.split = parts
        self.entropy_loss_ratio = entropy_loss_ratio
        self.codebooks = nn.ModuleList(nn.Embedding(codebook_size, p) for p in parts)

    def extra_repr(self) -> str:
        return (f"split={self.split}, patch_nums={self.patch_nums}, commitment_cost={self.commitment_cost}, "
                f"entropy_loss_ratio={self.entropy_loss_ratio}, num_tokens={self.num_tokens}")

    # -- building blocks ----------------------------------------------------------------------
    def normalized_codebook(self) -> torch.Tensor:
        """``[codebook_size, dim]``: every part's codebook L2-normalised row-wise, concatenated (TokenFlow
        ``get_codebook_entry``'s table)."""
        return torch.cat([F.normalize(c.weight, p=2, dim=-1) for c in self.codebooks], dim=-1)

    def _normalize_parts(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.normalize(p, p=2, dim=-1) for p in torch.split(z, self.split, dim=-1)], dim=-1)

    def embed(self, indices: torch.LongTensor) -> torch.Tensor:
        """The normalised codes ``[..., dim]`` of ``indices [...]``."""
        return F.embedding(indices, self.normalized_codebook())

    def _nearest(self, f_rest: torch.Tensor, k: int) -> torch.LongTensor:
        pn, (b, c) = self.patch_nums[k], f_rest.shape[:2]
        z = F.interpolate(f_rest, size=(pn, pn), mode="area").permute(0, 2, 3, 1).reshape(-1, c)
        codebook = self.normalized_codebook().detach().float()
        return nearest_code(self._normalize_parts(z.float()), codebook).view(b, pn * pn)

    def _scale_codes(self, idx: torch.LongTensor, k: int) -> torch.Tensor:
        pn, side = self.patch_nums[k], self.patch_nums[-1]
        h = self.embed(idx.reshape(-1, pn, pn)).permute(0, 3, 1, 2)
        if k != self.num_scales - 1:
            h = F.interpolate(h.contiguous(), size=(side, side), mode="bicubic")
        return h

    def _quantize_scale(self, residual: torch.Tensor, k: int, with_losses: bool):
        """One scale of TokenFlow's encode loop: (codes upsampled to H x W with the straight-through
        gradient, indices [B, pn*pn], (codebook, commitment, entropy) terms or None)."""
        pn, side = self.patch_nums[k], self.patch_nums[-1]
        b, c = residual.shape[:2]
        z = F.interpolate(residual, size=(pn, pn), mode="area").permute(0, 2, 3, 1)  # [B, pn, pn, C]
        z = self._normalize_parts(z)
        codebook = self.normalized_codebook()
        flat = z.reshape(-1, c)
        idx = nearest_code(flat.detach().float(), codebook.detach().float())
        z_q = codebook[idx].view(z.shape)
        terms = None
        if with_losses:
            codebook_term = torch.mean((z_q - z.detach()) ** 2)
            commitment_term = self.commitment_cost * torch.mean((z_q.detach() - z) ** 2)
            entropy_term = None
            if self.entropy_loss_ratio:
                distances = sum(
                    (zp.pow(2).sum(1, keepdim=True) + ep.pow(2).sum(1) - 2 * zp @ ep.T)
                    for zp, ep in zip(torch.split(flat, self.split, -1), torch.split(codebook, self.split, -1)))
                entropy_term = self.entropy_loss_ratio * entropy_loss(-distances)
            terms = (codebook_term, commitment_term, entropy_term)
        z_q = z + (z_q - z).detach()
        q = z_q.permute(0, 3, 1, 2)
        if k != self.num_scales - 1:
            q = F.interpolate(q, size=(side, side), mode="bicubic")
        return q, idx.view(b, pn * pn), terms

    def _greedy(self, f: torch.Tensor) -> tuple[list[torch.LongTensor], list[torch.Tensor]]:
        residual = f.detach().float()
        f_hat = torch.zeros_like(residual)
        indices, partial = [], []
        for k in range(self.num_scales):
            q, idx, _ = self._quantize_scale(residual, k, with_losses=False)
            f_hat = f_hat + q
            residual = residual - q
            indices.append(idx)
            partial.append(f_hat)
        return indices, partial

    # -- contract -----------------------------------------------------------------------------
    def forward(self, f: torch.Tensor) -> QuantizerOutput:
        """Quantize ``f [B, dim, pn, pn]``: ``quantized`` is the sum of the scales' codes (TokenFlow's
        ``final_quantize``), ``indices [B, L]``; losses as in the module docstring."""
        self.check_input(f)
        with torch.autocast(f.device.type, enabled=False):
            residual = f.float()
            f_hat = 0.0
            indices, terms = [], []
            for k in range(self.num_scales):
                q, idx, t = self._quantize_scale(residual, k, with_losses=True)
                f_hat = f_hat + q
                residual = residual - q.detach()
                indices.append(idx)
                terms.append(t)
            scale = 1.0 / self.num_scales
            codebook = sum(t[0] for t in terms) * scale
            commitment = sum(t[1] for t in terms) * scale
            entropy = sum(t[2] for t in terms) * scale if self.entropy_loss_ratio else None
        loss = codebook + commitment + (entropy if entropy is not None else 0.0)
        indices = torch.cat(indices, dim=1)
        perplexity, usage = usage_statistics(indices, self.codebook_size)
        return QuantizerOutput(f_hat, indices, loss, commitment, codebook, entropy_loss=entropy,
                               perplexity=perplexity, codebook_usage=usage)

    # -- TokenFlow-t2i helpers ----------------------------------------------------------------
    def teacher_forcing_input(self, indices: torch.LongTensor) -> torch.Tensor | None:
        """TokenFlow-t2i's image inputs for scales 1..S-1 (``VQTower.forward``): the running sum of the
        codes at each scale's own resolution, bicubic-upsampled to the next scale (chained: f_hat is
        upsampled scale to scale, not from each scale to the last), as ``[B, L - pn_0^2, dim]``."""
        self.check_indices(indices)
        if indices.ndim != 2 or indices.shape[1] != self.num_tokens:
            raise ValueError(f"expected indices [B, {self.num_tokens}], got {tuple(indices.shape)}")
        codes = self.embed(indices)
        f_hat, inputs = 0.0, []
        for k in range(self.num_scales - 1):
            pn, nxt = self.patch_nums[k], self.patch_nums[k + 1]
            start = self.scale_offsets[k]
            f_hat = f_hat + codes[:, start:start + pn * pn].reshape(-1, pn, pn, self.dim).permute(0, 3, 1, 2)
            f_hat = F.interpolate(f_hat, size=(nxt, nxt), mode="bicubic")
            inputs.append(f_hat.permute(0, 2, 3, 1).flatten(1, 2))
        return torch.cat(inputs, dim=1) if inputs else None

    def next_autoregressive_input(self, scale_index: int, f_hat, h: torch.Tensor):
        """One step of TokenFlow-t2i's chained input: ``f_hat`` (at scale ``k``'s resolution, or 0 at
        scale 0) plus the codes ``h [B, dim, pn_k, pn_k]``, then the sum bicubic-upsampled to scale k+1
        (returned twice: the new running sum and the next scale's input). At the last scale the sum is
        returned as is."""
        if not 0 <= scale_index < self.num_scales:
            raise ValueError(f"scale_index must be in [0, {self.num_scales - 1}], got {scale_index}")
        f_hat = f_hat + h
        if scale_index == self.num_scales - 1:
            return f_hat, f_hat
        nxt = self.patch_nums[scale_index + 1]
        f_hat = F.interpolate(f_hat, size=(nxt, nxt), mode="bicubic")
        return f_hat, f_hat


def convert_tokenflow_quantizer_state_dict(state_dict, prefix: str = "quantize.") -> dict[str, torch.Tensor]:
    """TokenFlow ``VectorQuantizer`` keys under ``prefix`` -> :class:`SharedMappingMultiScaleQuantizer`'s:
    ``embedding_vqkd`` (semantic) is ``codebooks.0``, ``embedding_vqgan`` (pixel) ``codebooks.1``; the
    ``codebook_used`` buffer (a training-time usage log) is dropped; unknown keys pass through."""
    names = {"embedding_vqkd.weight": "codebooks.0.weight", "embedding_vqgan.weight": "codebooks.1.weight"}
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name == "codebook_used":
            continue
        out[names.get(name, name)] = value
    return out
