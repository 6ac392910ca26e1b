"""STAR (Davinci-XLab/STAR-T2I): VAR's next-scale transformer with cross-attention to CLIP text
features, the pooled text feature as start token and a normalized 2D RoPE across scales; ported from
``models/var_drop.py``, ``models/basic_var.py`` and ``models/embed_rope.py``. The tokenizer is VAR's
multi-scale VQVAE (:class:`vistok.VARVQVAE`), unchanged; the self-attention and MLP are VAR's."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..layers.drop_path import drop_path
from ..layers.rope import scale_normalized_rope_angles
from ..layers.transformer import eager_attention_forward
from ..var.modeling_var import (VARMLP, VARAttention, _scale_layout, add_scaled_attention_parts, check_scale_inputs,
                                cosine_query_key, init_scaled_attention)
from .configuration_star import STARConfig


def text_attention_bias(mask: torch.Tensor | None, dtype) -> torch.Tensor | None:
    """A text attention mask ``[B, T]`` (1 = token, 0 = padding) -> the additive bias ``[B, 1, 1, T]``
    (0 / -inf, the original ``prepare_attn_mask``)."""
    if mask is None:
        return None
    return torch.where(mask[:, None, None, :] == 1, 0.0, -torch.inf).to(dtype)


class STARCrossAttention(nn.Module):
    """Cross-attention from the image tokens to the text features: bias-free ``q`` and ``kv``
    projections plus learned q and v biases (k has none), cosine attention as VAR's self-attention
    (``attn_l2_norm``), no RoPE."""

    def __init__(self, config: STARConfig, layer_idx: int):
        super().__init__()
        width, heads = config.hidden_size, config.num_attention_heads
        self.config, self.layer_idx = config, layer_idx
        self.num_heads, self.head_dim = heads, width // heads
        self.is_causal = False
        self.q = nn.Linear(width, width, bias=False)
        self.kv = nn.Linear(config.text_hidden_size, 2 * width, bias=False)
        add_scaled_attention_parts(self, config, width, heads)

    def forward(self, hidden_states: torch.Tensor, text_states: torch.Tensor, text_bias: torch.Tensor | None = None):
        batch, length, width = hidden_states.shape
        query = F.linear(hidden_states, self.q.weight, self.q_bias).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        kv = F.linear(text_states, self.kv.weight, torch.cat((torch.zeros_like(self.v_bias), self.v_bias)))
        key, value = kv.view(batch, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        query, key = cosine_query_key(self, query, key)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        output, weights = attention(self, query, key, value, text_bias, scaling=self.scaling,
                                    dropout=self.config.attention_dropout if self.training else 0.0, is_causal=False)
        return self.out_proj(output.reshape(batch, length, width)), weights


class STARBlock(GradientCheckpointingLayer):
    """``x += attn(LN(x))`` (2D RoPE on q, k); ``x += cross_attn(LN(x), text)``; ``x += mlp(LN(x))``,
    one LayerNorm without affine parameters (STAR's ``AttnBlock`` with ``shared_aln=False``). With
    ``config.cross_attention_first_sample_only`` every sample gets sample 0's cross-attention output
    (the original's ``cross_attn(...)[0]``)."""

    def __init__(self, config: STARConfig, layer_idx: int, drop_path: float, cross_attention: bool = True):
        super().__init__()
        width = config.hidden_size
        self.config, self.drop_path = config, drop_path
        self.norm = nn.LayerNorm(width, eps=config.norm_eps, elementwise_affine=False)
        self.attention = VARAttention(config, layer_idx)
        self.cross_attention = STARCrossAttention(config, layer_idx) if cross_attention else None
        self.mlp = VARMLP(width, round(width * config.mlp_ratio))
        self.mlp.fc2._var_init_role = "residual_out"
        self.dropout = nn.Dropout(config.drop_rate)

    def forward(self, hidden_states: torch.Tensor, rotary, attention_mask: torch.Tensor | None = None,
                cache: DynamicCache | None = None, text_states: torch.Tensor | None = None,
                text_bias: torch.Tensor | None = None) -> torch.Tensor:
        h = self.dropout(self.attention(self.norm(hidden_states), attention_mask, cache, rotary)[0])
        hidden_states = hidden_states + drop_path(h, self.drop_path, self.training)
        if self.cross_attention is not None and text_states is not None:
            normed = self.norm(hidden_states)
            if self.config.cross_attention_first_sample_only:
                bias = None if text_bias is None else text_bias[:1]
                cross = self.cross_attention(normed[:1], text_states[:1], bias)[0]
            else:
                cross = self.cross_attention(normed, text_states, text_bias)[0]
            hidden_states = self.dropout(cross) + hidden_states
        h = self.dropout(self.mlp(self.norm(hidden_states)))
        return hidden_states + drop_path(h, self.drop_path, self.training)


class STARPreTrainedModel(PreTrainedModel):
    config_class = STARConfig
    base_model_prefix = "star"
    main_input_name = "encoder_hidden_states"
    supports_gradient_checkpointing = True
    _no_split_modules = ["STARBlock"]
    _supports_sdpa = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": STARBlock, "attentions": OutputRecorder(VARAttention, index=1),
                           "cross_attentions": OutputRecorder(STARCrossAttention, index=1)}

    @torch.no_grad()
    def _init_weights(self, module):
        """STAR's ``init_weights`` (VAR's without AdaLN): truncated normals of ``initializer_range``, zero
        biases, the heads scaled by ``init_head``, residual output projections by 1/sqrt(2 * depth)."""
        cfg = self.config
        std = cfg.initializer_range
        if isinstance(module, STARTransformer):
            levels, mask = _scale_layout(cfg.patch_nums)
            init.copy_(module.token_levels, levels)
            init.copy_(module.block_causal_mask, mask)
            init.copy_(module.rope_angles, module._rope_angles())
            init.trunc_normal_(module.start_position_embedding, std=std)
            if module.sampler_start_embedding is not None:
                init.trunc_normal_(module.sampler_start_embedding, std=std)
        elif isinstance(module, (VARAttention, STARCrossAttention)):
            init_scaled_attention(module)
        elif isinstance(module, nn.Linear):
            role = getattr(module, "_var_init_role", None)
            scale = {"head": cfg.init_head, "residual_out": 1 / math.sqrt(2 * cfg.depth)}.get(role, 1.0)
            init.trunc_normal_(module.weight, std=std * scale)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.trunc_normal_(module.weight, std=std)


class STARTransformer(STARPreTrainedModel):
    """Text-conditional next-scale prediction: logits over the VQVAE's codes for every token of every scale.

    Text: ``encoder_hidden_states [B, T, text_hidden_size]`` (CLIP ``last_hidden_state``),
    ``encoder_attention_mask [B, T]`` (1 = token) and ``pooled_text_embeds [B, text_hidden_size]``
    (CLIP ``pooler_output``, the start token's source).

    Teacher forcing: ``inputs [B, L - pn_0^2, z_channels]`` (``VARVQVAE.teacher_forcing_input``), block-causal
    attention across scales, logits ``[B, L, codebook_size]``. Sampling, one scale at a time:
    ``scale_index=k`` with ``inputs [B, pn_k^2, z_channels]`` (None at k = 0) over a ``DynamicCache``.
    The refinement head of the masking sampler (``num_sampler_blocks > 0``) is :meth:`sampler_logits`.
    """

    def __init__(self, config: STARConfig):
        super().__init__(config)
        width, nums = config.hidden_size, config.patch_nums
        self.first_length = nums[0] ** 2
        self.scale_offsets = [sum(p * p for p in nums[:k]) for k in range(len(nums) + 1)]
        self.word_embed = nn.Linear(config.z_channels, width)
        self.text_projection = nn.Linear(config.text_hidden_size, width)
        self.start_position_embedding = nn.Parameter(torch.zeros(1, self.first_length, width))
        self.level_embedding = nn.Embedding(len(nums), width)
        levels, mask = _scale_layout(nums)
        self.register_buffer("token_levels", levels, persistent=False)
        self.register_buffer("block_causal_mask", mask, persistent=False)
        self.register_buffer("rope_angles", self._rope_angles(), persistent=False)
        rates = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList(STARBlock(config, i, rates[i]) for i in range(config.depth))
        self.head_norm = nn.LayerNorm(width, eps=config.norm_eps, elementwise_affine=False) if config.logit_norm else None
        self.lm_head = nn.Linear(width, config.codebook_size)
        self.lm_head._var_init_role = "head"
        n = config.num_sampler_blocks
        if n:  # the causal-driven stable sampler's refinement head (star-1024-sampler)
            self.sampler_word_embed = nn.Linear(config.z_channels, width)
            self.sampler_blocks = nn.ModuleList(STARBlock(config, i, rates[min(i, config.depth - 1)], cross_attention=False)
                                                for i in range(n))
            self.sampler_input_proj = nn.Linear(2 * width, width)
            self.sampler_text_projection = nn.Linear(config.text_hidden_size, width)
            self.sampler_start_embedding = nn.Parameter(torch.zeros(1, self.first_length, width))
            self.sampler_level_embedding = nn.Embedding(len(nums), width)
            self.sampler_lm_head = nn.Linear(width, config.codebook_size)
            self.sampler_lm_head._var_init_role = "head"
            self.sampler_norm = nn.LayerNorm(width, eps=config.norm_eps, elementwise_affine=False)
        else:
            self.sampler_start_embedding = None
        self.gradient_checkpointing = False
        self.post_init()

    def _rope_angles(self) -> torch.Tensor:
        cfg = self.config
        return scale_normalized_rope_angles(cfg.patch_nums, cfg.hidden_size // cfg.num_attention_heads, cfg.rope_theta, cfg.rope_norm)

    def rotary(self, begin: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        angles = self.rope_angles[begin:end].float()
        return angles.cos(), angles.sin()

    def get_input_embeddings(self):
        """The embedding of the image-token inputs (codes -> width); the text enters through ``text_projection``."""
        return self.word_embed

    def set_input_embeddings(self, value):
        self.word_embed = value

    def get_output_embeddings(self):
        return None  # the head predicts the tokenizer's codes

    def resize_token_embeddings(self, *args, **kwargs):
        raise ValueError("STAR's inputs are VQVAE codes and its head the tokenizer's codebook: build a new config instead")

    def logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.head_norm is not None:
            hidden_states = self.head_norm(hidden_states)
        return self.lm_head(hidden_states).float()

    def start_tokens(self, pooled_text_embeds: torch.Tensor) -> torch.Tensor:
        """The first scale's input ``[B, pn_0^2, C]`` before the level embedding: projected pooled text + ``pos_start``."""
        sos = self.text_projection(pooled_text_embeds.to(self.dtype))
        return sos[:, None].expand(-1, self.first_length, -1) + self.start_position_embedding

    # -- forward ------------------------------------------------------------------------------
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # transformers' older name for the cache
    @capture_outputs
    def forward(self, encoder_hidden_states: torch.Tensor, pooled_text_embeds: torch.Tensor,
                inputs: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
                scale_index: int | None = None, cache: DynamicCache | None = None, use_cache: bool | None = None,
                labels: torch.LongTensor | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool | None = None) -> CausalLMOutputWithPast | tuple:
        """See the class docstring. ``labels`` (token ids ``[B, L]``, teacher forcing) gives the mean cross-entropy ``loss``."""
        self._check_inputs(encoder_hidden_states, pooled_text_embeds, inputs, encoder_attention_mask, scale_index, labels, cache)
        text = encoder_hidden_states.to(self.dtype)
        text_bias = text_attention_bias(encoder_attention_mask, self.dtype)
        start = self.start_tokens(pooled_text_embeds)
        if scale_index is None:
            hidden = start if inputs is None else torch.cat((start, self.word_embed(inputs.to(self.dtype))), dim=1)
            length = hidden.shape[1]
            hidden = hidden + self.level_embedding(self.token_levels[:length])[None]
            mask = self.block_causal_mask[:, :, :length, :length].to(hidden.dtype)
            rotary = self.rotary(0, length)
            if use_cache and cache is None:
                cache = DynamicCache()
        else:
            begin, end = self.scale_offsets[scale_index], self.scale_offsets[scale_index + 1]
            level = self.level_embedding(self.token_levels[begin:end])[None]
            hidden = (start if scale_index == 0 else self.word_embed(inputs.to(self.dtype))) + level
            mask, rotary = None, self.rotary(begin, end)
            if cache is None:
                cache = DynamicCache()
        for block in self.blocks:
            hidden = block(hidden, rotary, mask, cache, text, text_bias)
        logits = self.logits(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache, hidden_states=None)

    def sampler_logits(self, features: torch.Tensor, codes: torch.Tensor, pooled_text_embeds: torch.Tensor,
                       scale_index: int) -> torch.Tensor:
        """The masking sampler's refinement head (original ``VAR.sample``): logits ``[B, pn^2, V]`` of scale
        ``scale_index`` from the main stack's output ``features [B, pn^2, C]`` and the codes committed so
        far ``codes [B, pn^2, z_channels]`` (zeros where masked)."""
        if not self.config.num_sampler_blocks:
            raise ValueError("this STAR transformer has no sampler head (num_sampler_blocks=0): sample without masking_sampler")
        begin, end = self.scale_offsets[scale_index], self.scale_offsets[scale_index + 1]
        text = self.sampler_text_projection(pooled_text_embeds.to(self.dtype))[:, None] + self.sampler_start_embedding
        level = self.sampler_level_embedding(self.token_levels[begin:end])[None]
        current = torch.cat([text, self.sampler_word_embed(codes.to(self.dtype)) + level], dim=1)
        previous = torch.cat([text, features], dim=1)
        hidden = self.sampler_input_proj(torch.cat([current, previous], dim=-1))
        angles = torch.cat([self.rope_angles[:1], self.rope_angles[begin:end]]).float()
        rotary = (angles.cos(), angles.sin())
        for block in self.sampler_blocks:
            hidden = block(hidden, rotary)
        return self.sampler_lm_head(self.sampler_norm(hidden)).float()[:, 1:]

    def _check_inputs(self, text, pooled, inputs, text_mask, scale_index, labels, cache) -> int:
        cfg = self.config
        if not isinstance(text, torch.Tensor) or not text.is_floating_point() or text.ndim != 3 or text.shape[-1] != cfg.text_hidden_size or text.shape[0] == 0:
            got = tuple(text.shape) if isinstance(text, torch.Tensor) else type(text).__name__
            raise ValueError(f"encoder_hidden_states must be text features [B, T, {cfg.text_hidden_size}], got {got}")
        batch = text.shape[0]
        if not isinstance(pooled, torch.Tensor) or not pooled.is_floating_point() or tuple(pooled.shape) != (batch, cfg.text_hidden_size):
            got = tuple(pooled.shape) if isinstance(pooled, torch.Tensor) else type(pooled).__name__
            raise ValueError(f"pooled_text_embeds must be the pooled text features [{batch}, {cfg.text_hidden_size}], got {got}")
        if text_mask is not None and (not isinstance(text_mask, torch.Tensor) or tuple(text_mask.shape) != tuple(text.shape[:2])):
            raise ValueError(f"encoder_attention_mask must have shape {tuple(text.shape[:2])} (1 = token, 0 = padding)")
        if text_mask is not None and not torch.compiler.is_compiling() and (
                ((text_mask != 0) & (text_mask != 1)).any() or not bool((text_mask == 1).any(dim=1).all())):
            raise ValueError("encoder_attention_mask must hold only 0 and 1, with at least one text token (1) per row")
        check_scale_inputs(cfg, self.first_length, batch, inputs, scale_index, labels, cache, "the pooled text token")
        return batch
