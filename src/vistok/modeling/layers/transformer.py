"""Pre-LayerNorm transformer block (CLIP/ViT style) with attention through transformers' registry."""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (converters split fused in_proj weights)."""

    def __init__(self, config, hidden_size: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, attention weights): the weights come from the eager implementation only (transformers' convention)."""
        batch, length, _ = hidden_states.shape
        shape = (batch, length, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(
            self, query, key, value, attention_mask, scaling=self.scaling, dropout=0.0, is_causal=False
        )
        return self.out_proj(output.reshape(batch, length, -1)), weights


class MLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden_states)))


class TransformerBlock(GradientCheckpointingLayer):
    """x + attn(ln1(x)); x + mlp(ln2(x)) — open_clip's ResidualAttentionBlock (TiTok) and, with
    ``skip=True``, U-ViT's long-skip block: x = skip_linear([x, skip]) first."""

    def __init__(self, config, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-5,
                 qkv_bias: bool = True, skip: bool = False):
        super().__init__()
        self.skip_linear = nn.Linear(2 * hidden_size, hidden_size) if skip else None
        self.layer_norm1 = nn.LayerNorm(hidden_size, eps=eps)
        self.self_attn = Attention(config, hidden_size, num_heads, qkv_bias=qkv_bias)
        self.layer_norm2 = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = MLP(hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            hidden_states = self.skip_linear(torch.cat([hidden_states, skip], dim=-1))
        hidden_states = hidden_states + self.self_attn(self.layer_norm1(hidden_states), attention_mask)[0]
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))
