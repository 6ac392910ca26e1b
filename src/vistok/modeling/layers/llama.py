"""The Llama decoder layer of the 2D-RoPE autoregressive image generators (LlamaGen's
autoregressive/models/gpt.py ``TransformerBlock``; Open-MAGVIT2's spatial and factorized blocks are the
same layer): pre-norm RMSNorm (fp32), fused ``wqkv`` (GQA-capable), interleaved 2D RoPE (or none: ``cos=None``
when the model adds learned absolute positions), SwiGLU, no biases, attention through transformers' registry
returning ``(output, weights)`` (weights from eager only) and an optional :class:`StaticKVCache`.

The config passed in gives ``hidden_size``, ``num_attention_heads``, ``num_key_value_heads``, ``head_dim``,
``intermediate_size``, ``rms_norm_eps``, ``attention_dropout``, ``residual_dropout`` and ``ffn_dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .drop_path import drop_path
from .kv_cache import StaticKVCache
from .norms import RMSNorm
from .rope import apply_interleaved_rope
from .transformer import eager_attention_forward


class LlamaAttention(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config, self.layer_idx = config, layer_idx
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.num_key_value_groups = self.num_heads // self.num_kv_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        self.wqkv = nn.Linear(config.hidden_size, (self.num_heads + 2 * self.num_kv_heads) * self.head_dim, bias=False)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.residual_dropout = nn.Dropout(config.residual_dropout)

    def forward(self, hidden_states, cos, sin, attention_mask=None, cache: StaticKVCache | None = None,
                cache_position=None, key_length: int | None = None):
        batch, length, _ = hidden_states.shape
        kv_size = self.num_kv_heads * self.head_dim
        query, key, value = self.wqkv(hidden_states).split([self.num_heads * self.head_dim, kv_size, kv_size], dim=-1)
        query, key = query.view(batch, length, self.num_heads, self.head_dim), key.view(batch, length, self.num_kv_heads, self.head_dim)
        if cos is not None:  # None: learned absolute positions instead of RoPE
            query, key = apply_interleaved_rope(query, cos, sin), apply_interleaved_rope(key, cos, sin)
        query, key = query.transpose(1, 2), key.transpose(1, 2)
        value = value.view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if cache is not None:
            key, value = cache.update(self.layer_idx, key, value, cache_position, key_length)
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        if interface is eager_attention_forward:
            key, value = repeat_kv(key, self.num_key_value_groups), repeat_kv(value, self.num_key_value_groups)
            if attention_mask is None:  # eager has no is_causal: spell the causal mask out
                attention_mask = torch.ones(length, key.shape[2], dtype=torch.bool, device=key.device).tril()[None, None]
            attention_mask = torch.zeros_like(attention_mask, dtype=query.dtype).masked_fill(~attention_mask, float("-inf"))
        output, weights = interface(self, query, key, value, attention_mask, scaling=self.scaling,
                                    dropout=self.config.attention_dropout if self.training else 0.0,
                                    is_causal=attention_mask is None)
        return self.residual_dropout(self.o_proj(output.reshape(batch, length, -1))), weights


class LlamaMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)) — the original's w2(silu(w1 x) * w3 x)."""

    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.dropout = nn.Dropout(config.ffn_dropout)

    def forward(self, x):
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class LlamaDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config, layer_idx: int, drop_path_rate: float):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = LlamaMLP(config)
        self.drop_path_rate = drop_path_rate

    def forward(self, hidden_states, cos, sin, attention_mask=None, cache=None, cache_position=None, key_length=None):
        attn = self.self_attn(self.input_layernorm(hidden_states), cos, sin, attention_mask, cache, cache_position, key_length)[0]
        hidden_states = hidden_states + drop_path(attn, self.drop_path_rate, self.training)
        mlp = self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states + drop_path(mlp, self.drop_path_rate, self.training)
