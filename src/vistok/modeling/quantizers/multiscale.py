"""Multi-scale residual quantization of VAR (Tian et al. 2024, "Visual Autoregressive Modeling").

A channels-first feature map ``f [B, C, H, W]`` (``H == W == patch_nums[-1]``) is quantized
coarse to fine with one shared codebook. At scale ``k`` of side ``pn``:

1. the residual ``f - f_hat`` is area-downsampled to ``pn x pn`` and each vector takes its nearest
   code (Euclidean, or cosine with ``use_l2_norm``);
2. the code map is bicubic-upsampled back to ``H x W`` and passed through a 3x3 conv ``Phi``:
   ``(1 - r) * h + r * conv(h)`` with ``r = |residual_ratio|``;
3. the result is added to ``f_hat``.

The last scale uses the residual and the codes as they are (no resampling). ``Phi`` convs are
shared between scales: ``num_residual_convs`` K convs (None: one per scale) sit at ticks on
[0, 1] and scale k takes the conv whose tick is nearest to ``k / (S - 1)``.

The arguments follow the library's quantizers; :func:`convert_var_quantizer_kwargs` and
:func:`convert_var_quantizer_state_dict` map VAR's ``VectorQuantizer2`` arguments and weights.

Token ids are flattened over scales, coarse first and row-major inside a scale: ``[B, L]`` with
``L = sum(pn**2)`` (680 for the default scales). ``split_scales`` / ``merge_scales`` convert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...kernels import nearest_code
from .base import Quantizer, QuantizerOutput, usage_statistics

DEFAULT_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


def phi_ticks(count: int) -> np.ndarray:
    """Positions on [0, 1] of ``count`` shared Phi convs. VAR spaces four of them as
    linspace(1/12, 11/12) and any other number as linspace(1/(2K), 1 - 1/(2K)); the arithmetic is
    kept exactly (float64) because some scales sit on exact midpoints between two ticks and the
    rounding decides."""
    if count == 4:
        return np.linspace(1 / 3 / count, 1 - 1 / 3 / count, count)
    return np.linspace(1 / 2 / count, 1 - 1 / 2 / count, count)


def scale_to_phi_indices(num_scales: int, num_phis: int) -> list[int]:
    """Which of ``num_phis`` Phi convs each of ``num_scales`` scales uses (nearest tick to
    ``k / (num_scales - 1)``; a single scale uses the first conv). For 10 scales and 4 convs:
    [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]."""
    if num_phis == 1:
        return [0] * num_scales
    ticks = phi_ticks(num_phis)
    positions = [k / (num_scales - 1) if num_scales > 1 else 0.0 for k in range(num_scales)]
    return [int(np.argmin(np.abs(ticks - at))) for at in positions]


def check_num_residual_convs(num_residual_convs: int | None) -> None:
    """ValueError unless ``num_residual_convs`` is a positive integer or None (one Phi conv per scale)."""
    if num_residual_convs is not None and (isinstance(num_residual_convs, bool)
                                           or not isinstance(num_residual_convs, int) or num_residual_convs < 1):
        raise ValueError(f"num_residual_convs must be a positive integer (K Phi convs shared by the scales) or "
                         f"None (one per scale), got {num_residual_convs!r}")


class PhiConv(nn.Conv2d):
    """``(1 - r) * h + r * conv3x3(h)``; the sign of the ratio is ignored, as in VAR."""

    def __init__(self, dim: int, ratio: float):
        super().__init__(dim, dim, kernel_size=3, stride=1, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + super().forward(h) * self.ratio

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ratio={self.ratio}"


class PhiBank(nn.Module):
    """The Phi convs and the scale -> conv mapping. Parameters live under ``qresi_ls.{i}`` whatever
    the sharing mode (VAR's partially shared layout); with ``|ratio| <= 1e-6`` Phi is the identity
    and has no parameters."""

    def __init__(self, dim: int, ratio: float, num_phis: int, num_scales: int):
        super().__init__()
        identity = abs(ratio) <= 1e-6
        self.qresi_ls = nn.ModuleList(nn.Identity() if identity else PhiConv(dim, ratio) for _ in range(num_phis))
        self.scale_to_phi = scale_to_phi_indices(num_scales, num_phis)

    def forward(self, h: torch.Tensor, scale_index: int) -> torch.Tensor:
        return self.qresi_ls[self.scale_to_phi[scale_index]](h)

    def extra_repr(self) -> str:
        return f"scale_to_phi={self.scale_to_phi}"


class MultiScaleResidualQuantizer(Quantizer):
    """VAR's multi-scale residual quantizer (``models/quant.py: VectorQuantizer2``) for feature maps
    ``f [B, dim, pn, pn]`` with ``pn = patch_nums[-1]``.

    Args:
        codebook_size, dim: codebook entries (VAR ``vocab_size``) and channels (VAR ``Cvae``).
        patch_nums: side of each scale's token map, coarse to fine (VAR ``v_patch_nums``).
        commitment_cost: weight of the commitment term ``||sg(f_hat) - f||^2`` (VAR ``beta``).
        use_l2_norm: cosine nearest-code lookup (inputs and codes L2-normalised for the lookup
            only; the codes added to ``f_hat`` stay unnormalised, as in VAR; VAR ``using_znorm``).
        residual_ratio: Phi ratio r (its absolute value is used; ``|r| <= 1e-6`` disables Phi;
            VAR ``quant_resi``).
        num_residual_convs: K Phi convs shared by the scales by nearest tick (1: one for all);
            None: one per scale (VAR ``share_quant_resi`` and ``default_qresi_counts``).

    ``forward`` returns the straight-through ``f_hat`` (fp32), indices ``[B, L]`` and VAR's loss
    ``mean over scales k of c * ||sg(f_hat_k) - f||^2 + ||f_hat_k - sg(f)||^2`` (``c`` the
    commitment cost, ``f_hat_k`` the running sum after scale k; mean squared errors). The codebook
    and the Phi convs learn from the second term; the encoder from the first and from the
    straight-through estimator.

    VAR's ``ema_vocab_hit_SV`` buffer is not kept: it changes no output, VAR updates it only under
    ``torch.distributed`` training and reads it only for its logged usage percentages; batch usage
    comes with every ``QuantizerOutput`` (``perplexity``, ``codebook_usage``) instead.
    :func:`convert_var_quantizer_state_dict` drops it when converting.
    """

    def __init__(self, codebook_size: int = 4096, dim: int = 32, patch_nums: Sequence[int] = DEFAULT_PATCH_NUMS,
                 commitment_cost: float = 0.25, use_l2_norm: bool = False, residual_ratio: float = 0.5,
                 num_residual_convs: int | None = 4):
        super().__init__()
        if codebook_size < 1 or dim < 1:
            raise ValueError(f"codebook_size and dim must be positive, got {codebook_size} and {dim}")
        nums = tuple(patch_nums) if isinstance(patch_nums, Sequence) else ()
        if not nums or any(isinstance(pn, bool) or not isinstance(pn, int) or pn < 1 for pn in nums):
            raise ValueError(f"patch_nums must be a non-empty sequence of positive integers, got {patch_nums!r}")
        check_num_residual_convs(num_residual_convs)
        self.codebook_size, self.dim = codebook_size, dim
        self.patch_nums = nums
        self.num_scales = len(nums)
        self.commitment_cost, self.use_l2_norm = commitment_cost, use_l2_norm
        self.residual_ratio, self.num_residual_convs = residual_ratio, num_residual_convs
        self.scale_lengths = tuple(pn * pn for pn in nums)
        self.scale_offsets = tuple(int(x) for x in np.cumsum((0,) + self.scale_lengths))  # S + 1 entries
        self.num_tokens = self.scale_offsets[-1]
        self.embedding = nn.Embedding(codebook_size, dim)
        # the submodule keeps VAR's name: converted checkpoints hold quant_resi.qresi_ls.{i}.*
        self.quant_resi = PhiBank(dim, residual_ratio, num_residual_convs or self.num_scales, self.num_scales)

    @property
    def scale_to_phi(self) -> list[int]:
        """Index of the Phi conv (``quant_resi.qresi_ls.{i}``) each scale uses."""
        return list(self.quant_resi.scale_to_phi)

    def extra_repr(self) -> str:
        return (f"patch_nums={self.patch_nums}, use_l2_norm={self.use_l2_norm}, commitment_cost={self.commitment_cost}, "
                f"residual_ratio={self.residual_ratio}, num_tokens={self.num_tokens}")

    # -- input checks -------------------------------------------------------------------------
    def check_input(self, f: torch.Tensor) -> None:
        side = self.patch_nums[-1]
        expected = f"[B, {self.dim}, {side}, {side}]"
        if not isinstance(f, torch.Tensor) or not f.is_floating_point():
            raise TypeError(f"{type(self).__name__} quantizes floating-point feature maps {expected}")
        if f.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects a channels-first feature map {expected}, got {tuple(f.shape)}")
        if f.shape[1] != self.dim:
            raise ValueError(f"{type(self).__name__} expects {self.dim} channels (dim 1 of {expected}), "
                             f"got {f.shape[1]} in {tuple(f.shape)}")
        if tuple(f.shape[2:]) != (side, side):
            raise ValueError(f"{type(self).__name__} expects a spatial size of {side}x{side} (the last of patch_nums "
                             f"{self.patch_nums}), got {f.shape[2]}x{f.shape[3]}")

    def _num_scales_of(self, length: int) -> int:
        if length not in self.scale_offsets[1:]:
            raise ValueError(f"expected {self.num_tokens} tokens per image (sum of pn^2 over patch_nums "
                             f"{self.patch_nums}), or a whole-scale prefix of {self.scale_offsets[1:]}; got {length}")
        return self.scale_offsets.index(length)

    # -- token layout -------------------------------------------------------------------------
    def split_scales(self, indices: torch.LongTensor) -> list[torch.LongTensor]:
        """``[B, L]`` (or a whole-scale prefix) -> one ``[B, pn, pn]`` map per scale present."""
        if not isinstance(indices, torch.Tensor) or indices.ndim != 2:
            raise ValueError(f"expected indices [B, {self.num_tokens}], got "
                             f"{tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__}")
        count = self._num_scales_of(indices.shape[1])
        return [indices[:, self.scale_offsets[k]:self.scale_offsets[k + 1]].reshape(-1, pn, pn)
                for k, pn in enumerate(self.patch_nums[:count])]

    def merge_scales(self, scales: Sequence[torch.LongTensor]) -> torch.LongTensor:
        """One ``[B, pn, pn]`` (or ``[B, pn*pn]``) map per scale, coarse first (a prefix of the scales
        is fine) -> ``[B, L]``."""
        if not isinstance(scales, Sequence) or not 1 <= len(scales) <= self.num_scales:
            raise ValueError(f"expected a list of 1 to {self.num_scales} token maps, coarse first")
        flat = []
        for k, idx in enumerate(scales):
            pn = self.patch_nums[k]
            if not isinstance(idx, torch.Tensor) or tuple(idx.shape[1:]) not in ((pn, pn), (pn * pn,)):
                shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
                raise ValueError(f"scale {k} must be [B, {pn}, {pn}] or [B, {pn * pn}], got {shape}")
            flat.append(idx.reshape(idx.shape[0], pn * pn))
        return torch.cat(flat, dim=1)

    # -- building blocks ----------------------------------------------------------------------
    def _nearest(self, f_rest: torch.Tensor, k: int) -> torch.LongTensor:
        """Codes ``[B, pn*pn]`` of the residual at scale k (area-downsampled except at the last scale)."""
        pn, (b, c) = self.patch_nums[k], f_rest.shape[:2]
        if k != self.num_scales - 1:
            f_rest = F.interpolate(f_rest, size=(pn, pn), mode="area")
        z = f_rest.permute(0, 2, 3, 1).reshape(-1, c)
        codebook = self.embedding.weight.detach().float()
        if self.use_l2_norm:
            z, codebook = F.normalize(z, dim=-1), F.normalize(codebook, dim=-1)
        return nearest_code(z, codebook).view(b, pn * pn)

    def _scale_codes(self, idx: torch.LongTensor, k: int) -> torch.Tensor:
        """Contribution ``[B, C, H, W]`` of scale k's codes to f_hat: upsampled (except at the
        last scale), then Phi."""
        pn, side = self.patch_nums[k], self.patch_nums[-1]
        h = self.embedding(idx.reshape(-1, pn, pn)).permute(0, 3, 1, 2)
        if k != self.num_scales - 1:
            h = F.interpolate(h, size=(side, side), mode="bicubic")
        return self.quant_resi(h.contiguous(), k)

    def _greedy(self, f: torch.Tensor) -> tuple[list[torch.LongTensor], list[torch.Tensor]]:
        f_rest = f.detach().float().clone()
        f_hat = torch.zeros_like(f_rest)
        indices, partial = [], []
        for k in range(self.num_scales):
            idx = self._nearest(f_rest, k)
            h = self._scale_codes(idx, k)
            f_hat = f_hat + h
            f_rest = f_rest - h
            indices.append(idx)
            partial.append(f_hat)
        return indices, partial

    # -- contract -----------------------------------------------------------------------------
    def forward(self, f: torch.Tensor) -> QuantizerOutput:
        """Quantize ``f [B, dim, pn, pn]``; see the class docstring for the loss."""
        self.check_input(f)
        f = f.float()
        f_no_grad = f.detach()
        f_rest = f_no_grad.clone()
        f_hat = torch.zeros_like(f_rest)
        indices = []
        loss = commitment = codebook = 0.0
        with torch.autocast(f.device.type, enabled=False):
            for k in range(self.num_scales):
                idx = self._nearest(f_rest, k)
                h = self._scale_codes(idx, k)
                f_hat = f_hat + h
                f_rest = f_rest - h.detach()
                commitment_k = F.mse_loss(f_hat.detach(), f) * self.commitment_cost
                codebook_k = F.mse_loss(f_hat, f_no_grad)
                loss = loss + (commitment_k + codebook_k)
                commitment = commitment + commitment_k
                codebook = codebook + codebook_k
                indices.append(idx)
            scale = 1.0 / self.num_scales
            loss, commitment, codebook = loss * scale, commitment * scale, codebook * scale
            # straight-through, written as VAR does it: (f_hat - f) + f, not f + (f_hat - f)
            quantized = (f_hat.detach() - f_no_grad) + f
        indices = torch.cat(indices, dim=1)
        perplexity, usage = usage_statistics(indices, self.codebook_size)
        return QuantizerOutput(quantized, indices, loss, commitment, codebook,
                               perplexity=perplexity, codebook_usage=usage)

    @torch.no_grad()
    def codes_to_indices(self, f: torch.Tensor) -> torch.LongTensor:
        """Greedy multi-scale encoding of ``f [B, dim, pn, pn]`` -> ``[B, L]`` (the indices
        ``forward`` returns; VAR ``f_to_idxBl_or_fhat(f, to_fhat=False)``, concatenated)."""
        self.check_input(f)
        return torch.cat(self._greedy(f)[0], dim=1)

    @torch.no_grad()
    def partial_codes(self, f: torch.Tensor) -> list[torch.Tensor]:
        """The running ``f_hat [B, dim, pn, pn]`` after each scale of the greedy encoding of ``f``
        (VAR ``f_to_idxBl_or_fhat(f, to_fhat=True)``); the last one is the full reconstruction."""
        self.check_input(f)
        return self._greedy(f)[1]

    def indices_to_codes(self, indices: torch.LongTensor, up_to_scale: int | None = None) -> torch.Tensor:
        """``f_hat [B, dim, pn, pn]`` from indices ``[B, L]``.

        ``up_to_scale=s`` stops after scales 0..s (coarse-to-fine previews; VAR ``embed_to_fhat``'s
        s-th output). ``indices`` may also hold only the first scales' tokens (a whole-scale
        prefix of ``[B, L]``); decoding then stops after the last scale given.
        """
        self.check_indices(indices)
        scales = self.split_scales(indices)
        if up_to_scale is not None:
            if isinstance(up_to_scale, bool) or not isinstance(up_to_scale, int) or not 0 <= up_to_scale < len(scales):
                raise ValueError(f"up_to_scale must be an integer in [0, {len(scales) - 1}] for indices of "
                                 f"{len(scales)} scales, got {up_to_scale!r}")
            scales = scales[: up_to_scale + 1]
        side = self.patch_nums[-1]
        f_hat = torch.zeros(indices.shape[0], self.dim, side, side, device=indices.device, dtype=torch.float32)
        for k, idx in enumerate(scales):
            f_hat = f_hat + self._scale_codes(idx, k)
        return f_hat

    # -- VAR generator helpers ----------------------------------------------------------------
    def teacher_forcing_input(self, indices: torch.LongTensor) -> torch.Tensor | None:
        """Inputs of the VAR transformer for scales 1..S-1 given all scales' tokens ``[B, L]``:
        the running f_hat after scale k, area-downsampled to scale k+1, as ``[B, L - pn_0^2, dim]``
        (VAR ``idxBl_to_var_input``). None with a single scale."""
        self.check_indices(indices)
        if indices.ndim != 2 or indices.shape[1] != self.num_tokens:
            raise ValueError(f"expected indices [B, {self.num_tokens}], got {tuple(indices.shape)}")
        scales = self.split_scales(indices)
        side = self.patch_nums[-1]
        b = indices.shape[0]
        f_hat = torch.zeros(b, self.dim, side, side, device=indices.device, dtype=torch.float32)
        inputs = []
        for k in range(self.num_scales - 1):
            f_hat = f_hat + self._scale_codes(scales[k], k)
            pn = self.patch_nums[k + 1]
            inputs.append(F.interpolate(f_hat, size=(pn, pn), mode="area").flatten(2).transpose(1, 2))
        return torch.cat(inputs, dim=1) if inputs else None

    def next_autoregressive_input(self, scale_index: int, f_hat: torch.Tensor,
                                  h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of coarse-to-fine generation (VAR ``get_next_autoregressive_input``).

        ``h [B, dim, pn_k, pn_k]``: the embedded codes of scale ``k = scale_index`` (or any soft
        mixture of codes). Returns ``(f_hat + Phi(upsample(h)), next input)`` where the next input
        is the new f_hat area-downsampled to scale k+1, or the new f_hat itself at the last scale.
        ``f_hat`` is not modified in place.
        """
        if not 0 <= scale_index < self.num_scales:
            raise ValueError(f"scale_index must be in [0, {self.num_scales - 1}], got {scale_index}")
        side = self.patch_nums[-1]
        if scale_index != self.num_scales - 1:
            h = F.interpolate(h, size=(side, side), mode="bicubic")
        f_hat = f_hat + self.quant_resi(h, scale_index)
        if scale_index == self.num_scales - 1:
            return f_hat, f_hat
        pn = self.patch_nums[scale_index + 1]
        return f_hat, F.interpolate(f_hat, size=(pn, pn), mode="area")


# VAR's VectorQuantizer2 argument -> MultiScaleResidualQuantizer's
VAR_ARGUMENT_NAMES = {"vocab_size": "codebook_size", "Cvae": "dim", "v_patch_nums": "patch_nums", "beta": "commitment_cost",
                      "using_znorm": "use_l2_norm", "quant_resi": "residual_ratio"}


def convert_var_quantizer_kwargs(var_kwargs: Mapping[str, object]) -> dict[str, object]:
    """VAR ``VectorQuantizer2`` keyword arguments (any subset) -> :class:`MultiScaleResidualQuantizer`'s.

    ``share_quant_resi`` (0: one Phi per scale, or ``default_qresi_counts`` of them when non-zero;
    K >= 1: K shared) becomes ``num_residual_convs`` (None: one per scale). Other names pass
    through unchanged so that the constructor names what it does not know.
    """
    out = {}
    for key, value in var_kwargs.items():
        if key not in ("share_quant_resi", "default_qresi_counts"):
            out[VAR_ARGUMENT_NAMES.get(key, key)] = value
    if "share_quant_resi" in var_kwargs or "default_qresi_counts" in var_kwargs:
        share = var_kwargs.get("share_quant_resi", 4)  # VectorQuantizer2's default
        if not isinstance(share, int) or isinstance(share, bool) or share < 0:
            raise ValueError(f"share_quant_resi must be an integer >= 0 (0: one Phi per scale, 1: one shared Phi, "
                             f"K: K partially shared), got {share!r}")
        out["num_residual_convs"] = share or var_kwargs.get("default_qresi_counts", 0) or None
    return out


def convert_var_quantizer_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """The keys of VAR's ``VectorQuantizer2`` under ``prefix`` (``"quantize."`` in a VQVAE
    checkpoint) renamed for :class:`MultiScaleResidualQuantizer`; other keys are left out.

    ``embedding.weight`` and the partially shared ``quant_resi.qresi_ls.{i}.*`` (the released
    layout) keep their names; the fully shared ``quant_resi.qresi.*`` becomes
    ``quant_resi.qresi_ls.0.*`` and the non-shared ``quant_resi.{i}.*`` becomes
    ``quant_resi.qresi_ls.{i}.*``. ``ema_vocab_hit_SV`` (usage logging only) is dropped. Unknown
    keys pass through so that ``load_state_dict(strict=True)`` names them.
    """
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name == "ema_vocab_hit_SV":
            continue
        parts = name.split(".")
        if parts[0] == "quant_resi" and len(parts) >= 3:
            if parts[1] == "qresi":
                name = ".".join(["quant_resi", "qresi_ls", "0", *parts[2:]])
            elif parts[1].isdigit():
                name = ".".join(["quant_resi", "qresi_ls", *parts[1:]])
        out[name] = value
    return out
