"""Pre-LN transformer blocks with QK-norm, SwiGLU, a configurable attention scale (μP: ``8 / head_dim``) and
optional adaLN-zero modulation, the modulation possibly different per segment of the sequence (e.g. a
decoder that modulates image patches and register tokens with separate shifts/scales/gates).

Attention goes through transformers' ``ALL_ATTENTION_FUNCTIONS`` (SDPA by default) with an additive float
mask, so prefix-LM and block masks need no FlexAttention.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .transformer import eager_attention_forward


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back (no affine parameters by default)."""

    def __init__(self, hidden_size: int, eps: float = 1e-5, elementwise_affine: bool = False, bias: bool = False):
        super().__init__(hidden_size, eps=eps, elementwise_affine=elementwise_affine, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(hidden_states.float(), self.normalized_shape, weight, bias, self.eps).type_as(hidden_states)


def swiglu_hidden_size(hidden_size: int, mlp_ratio: float) -> int:
    """The gated MLP's width: ``int(2 * int(hidden_size * mlp_ratio) / 3)`` (a SwiGLU of the same cost as a
    ``mlp_ratio`` GELU MLP)."""
    return int(2 * int(hidden_size * mlp_ratio) / 3)


class SwiGLUMLP(nn.Module):
    """``fc2(silu(fc1(x)) * fc3(x))``."""

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.fc2 = nn.Linear(intermediate_size, hidden_size, bias=bias)
        self.fc3 = nn.Linear(hidden_size, intermediate_size, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(hidden_states)) * self.fc3(hidden_states))


class QKNormAttention(nn.Module):
    """Multi-head self-attention with per-head LayerNorm of queries and keys (no affine) and scale
    ``scaling`` (``None``: ``head_dim ** -0.5``; μP: ``8 / head_dim``, equal to it at head_dim 64)."""

    def __init__(self, config, hidden_size: int, head_dim: int, qk_norm: bool = True, scaling: float | None = None,
                 qkv_bias: bool = False, proj_bias: bool = False, eps: float = 1e-5):
        super().__init__()
        if hidden_size % head_dim:
            raise ValueError(f"hidden_size {hidden_size} must be a multiple of head_dim {head_dim}")
        self.config = config
        self.num_heads = hidden_size // head_dim
        self.head_dim = head_dim
        self.scaling = head_dim**-0.5 if scaling is None else scaling
        self.is_causal = False
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.out_proj = nn.Linear(hidden_size, hidden_size, bias=proj_bias)
        self.q_norm = Fp32LayerNorm(head_dim, eps) if qk_norm else nn.Identity()
        self.k_norm = Fp32LayerNorm(head_dim, eps) if qk_norm else nn.Identity()

    def forward(self, hidden_states: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (output, attention weights — ``None`` unless the eager implementation computed them), as
        transformers' attention modules do, so ``output_attentions`` can record them."""
        batch, length, _ = hidden_states.shape
        shape = (batch, length, self.num_heads, self.head_dim)
        query = self.q_norm(self.q_proj(hidden_states).view(shape)).transpose(1, 2)
        key = self.k_norm(self.k_proj(hidden_states).view(shape)).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(
            self, query, key, value, attention_mask, scaling=self.scaling, dropout=0.0, is_causal=False
        )
        return self.out_proj(output.reshape(batch, length, -1)), weights


def modulate(hidden_states: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return hidden_states * (1.0 + scale) + shift


def segment_modulation(modulation: torch.Tensor, segment_lengths: tuple[int, ...]) -> torch.Tensor:
    """``[B, S * C]`` (one C-vector per segment) -> ``[B, sum(lengths), C]`` (each token its segment's vector)."""
    parts = modulation.chunk(len(segment_lengths), dim=-1)
    return torch.cat([part[:, None].expand(-1, n, -1) for part, n in zip(parts, segment_lengths)], dim=1)


class ModulatedTransformerBlock(GradientCheckpointingLayer):
    """``x + attn(norm1(x)); x + mlp(norm2(x))`` with non-affine fp32 LayerNorms, QK-norm attention and a SwiGLU
    MLP; with ``num_segments`` > 0, adaLN-zero from a conditioning vector ``[B, D]``: ``Linear(silu(c))`` gives
    ``num_segments`` sets of (gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp) — in that order —
    one per segment of the sequence (``segment_lengths``)."""

    def __init__(self, config, hidden_size: int, head_dim: int, mlp_ratio: float = 4.0, qk_norm: bool = True,
                 scaling: float | None = None, attention_bias: bool = False, mlp_bias: bool = False,
                 num_segments: int = 0, eps: float = 1e-5):
        super().__init__()
        self.norm1 = Fp32LayerNorm(hidden_size, eps)
        self.attn = QKNormAttention(config, hidden_size, head_dim, qk_norm, scaling, attention_bias, attention_bias, eps)
        self.norm2 = Fp32LayerNorm(hidden_size, eps)
        self.mlp = SwiGLUMLP(hidden_size, swiglu_hidden_size(hidden_size, mlp_ratio), bias=mlp_bias)
        self.num_segments = num_segments
        if num_segments:
            self.adaln_modulation = nn.Linear(hidden_size, num_segments * 6 * hidden_size)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                condition: torch.Tensor | None = None, segment_lengths: tuple[int, ...] | None = None) -> torch.Tensor:
        if not self.num_segments:
            hidden_states = hidden_states + self.attn(self.norm1(hidden_states), attention_mask)[0]
            return hidden_states + self.mlp(self.norm2(hidden_states))
        modulation = segment_modulation(self.adaln_modulation(F.silu(condition)), segment_lengths)
        gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp = modulation.chunk(6, dim=-1)
        attn = self.attn(modulate(self.norm1(hidden_states), shift_msa, scale_msa), attention_mask)[0]
        hidden_states = hidden_states + gate_msa * attn
        return hidden_states + gate_mlp * self.mlp(modulate(self.norm2(hidden_states), shift_mlp, scale_mlp))
