"""Instella-T2I's diffusion generator over binary latents (AMD-AGI/Instella-T2I models/diff_model.py).

A timestep t in [0, 1] enters through ``time_embed`` (Linear(1, D) -> SiLU -> Linear) and adaLN-zero in every block:
``h = LN(x) * (1 + scale) + shift + pos_emb``; keys/values over ``[proj_cond(OLMo hidden state i+1); h]``, queries
over ``h`` only, no causal mask (padded text keys off), q/k RMSNorm per head, no RoPE; ``x += gate * attn``;
``x += gate' * mlp(LN(x) * (1 + scale') + shift')`` (GELU-tanh). Head: ``proj_out(LN(x) * (1 + s) + b)`` with
(s, b) from ``norm_out`` gives one **flip** logit per bit: the probability that the bit of the noisy input differs
from the clean one.

The original sampler (``BinaryDiffusion.sample``) is :class:`vistok.pipelines.BinaryDiffusionTextToImagePipeline`;
its schedule and step rules are ``vistok.pipelines.binary_diffusion.binary_diffusion_timesteps`` and
``binary_diffusion_step``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel  # noqa: F401  (diffusers finds a pipeline component's loading class in its module)
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_instella import InstellaDiffusionConfig
from .modeling_instella_ar import (InstellaARAttention, InstellaGeneratorPreTrainedModel, add_text_attention_parts,
                                   check_text_inputs, clip_float16, text_inputs)


@dataclass
class InstellaDiffusionOutput(ModelOutput):
    """logits: ``[B, n, num_bits]`` flip logits (sigmoid: the probability that a bit of the input is wrong)."""

    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class InstellaTimestepEmbedding(nn.Module):
    """diffusers' ``TimestepEmbedding(in_channels=1)``: the raw t in [0, 1] through a two-layer SiLU MLP."""

    def __init__(self, width: int):
        super().__init__()
        self.linear_1 = nn.Linear(1, width)
        self.linear_2 = nn.Linear(width, width)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(timestep[:, None])))


class InstellaModulation(nn.Module):
    """``linear(silu(temb))`` split in ``chunks`` (diffusers' AdaLayerNormZero / AdaLayerNormContinuous weights)."""

    def __init__(self, width: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(width, chunks * width)

    def forward(self, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(part[:, None] for part in self.linear(F.silu(temb)).chunk(self.chunks, dim=1))


class InstellaDiffusionBlock(GradientCheckpointingLayer):
    def __init__(self, config: InstellaDiffusionConfig):
        super().__init__()
        width = config.hidden_size
        self.eps = config.layer_norm_eps
        self.norm1 = InstellaModulation(width, 6)
        add_text_attention_parts(self, config, config.num_tokens)

    def forward(self, hidden_states, temb, text_states, attention_mask):
        length, width = hidden_states.shape[1], hidden_states.shape[-1]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(temb)
        normed = F.layer_norm(hidden_states, (width,), eps=self.eps) * (1 + scale_msa) + shift_msa
        joint = torch.cat([self.proj_cond(text_states), normed + self.pos_emb], dim=1)
        hidden_states = hidden_states + gate_msa * self.attn(joint, length, attention_mask)[0]
        normed = F.layer_norm(hidden_states, (width,), eps=self.eps) * (1 + scale_mlp) + shift_mlp
        hidden_states = hidden_states + gate_mlp * self.mlp(normed)
        return clip_float16(hidden_states)


class InstellaDiffusionPreTrainedModel(InstellaGeneratorPreTrainedModel):
    config_class = InstellaDiffusionConfig
    base_model_prefix = "instella_diffusion"
    _no_split_modules = ["InstellaDiffusionBlock"]
    _block_class = InstellaDiffusionBlock
    _can_record_outputs = {"hidden_states": InstellaDiffusionBlock, "attentions": OutputRecorder(InstellaARAttention, index=1)}


def padded_text_mask(text_attention_mask: torch.Tensor, image_length: int, dtype) -> torch.Tensor:
    """Additive ``[B, 1, n, T+n]``: every image query sees the unpadded text and all image tokens (the original's
    non-causal flash-attn call over the joint [text; image] padding mask)."""
    batch, text_length = text_attention_mask.shape
    allowed = torch.cat([text_attention_mask.bool(),
                         torch.ones(batch, image_length, dtype=torch.bool, device=text_attention_mask.device)], dim=1)
    mask = torch.zeros(batch, 1, 1, text_length + image_length, dtype=dtype, device=text_attention_mask.device)
    return mask.masked_fill(~allowed[:, None, None], torch.finfo(dtype).min).expand(-1, -1, image_length, -1)


class InstellaDiffusionModel(InstellaDiffusionPreTrainedModel):
    """Instella-T2I binary diffusion generator: ``forward(input_bits, timestep, text_hidden_states,
    text_attention_mask)`` -> flip logits per bit."""

    def __init__(self, config: InstellaDiffusionConfig):
        super().__init__(config)
        self.time_embed = InstellaTimestepEmbedding(config.hidden_size)
        self.x_embedder = nn.Linear(config.num_bits, config.hidden_size)
        self.transformer_blocks = nn.ModuleList(InstellaDiffusionBlock(config) for _ in range(config.num_hidden_layers))
        self.norm_out = InstellaModulation(config.hidden_size, 2)
        self.proj_out = nn.Linear(config.hidden_size, config.num_bits)
        self.post_init()

    def check_inputs(self, input_bits, timestep, text_hidden_states, text_attention_mask) -> None:
        c = self.config
        batch = check_text_inputs(c, text_hidden_states, text_attention_mask)
        if not isinstance(input_bits, torch.Tensor) or tuple(input_bits.shape) != (batch, c.num_tokens, c.num_bits):
            shape = None if not isinstance(input_bits, torch.Tensor) else tuple(input_bits.shape)
            raise ValueError(f"input_bits must be [{batch}, {c.num_tokens}, {c.num_bits}] (the noisy bits, 0/1), got {shape}")
        if not isinstance(timestep, torch.Tensor) or timestep.ndim > 1 or (timestep.ndim == 1 and timestep.shape[0] not in (1, batch)):
            shape = None if not isinstance(timestep, torch.Tensor) else tuple(timestep.shape)
            raise ValueError(f"timestep must be a tensor of [{batch}] (or one) noise levels in [0, 1], got {shape}")

    @capture_outputs
    def forward(self, input_bits: torch.Tensor | None = None, timestep: torch.Tensor | float | None = None,
                text_hidden_states: torch.Tensor | None = None, text_attention_mask: torch.Tensor | None = None,
                **kwargs) -> InstellaDiffusionOutput:
        """``input_bits`` ``[B, num_tokens, num_bits]`` (the noisy bits z_t, 0/1), ``timestep`` ``[B]`` (or a float:
        t in [0, 1], 1 = pure noise), ``text_hidden_states`` ``[B, num_hidden_layers, T, text_hidden_size]`` (OLMo
        hidden states 1..L), ``text_attention_mask`` ``[B, T]`` (1 = token) -> flip logits ``[B, num_tokens, num_bits]``."""
        if isinstance(timestep, (int, float)) and not isinstance(timestep, bool):
            timestep = torch.tensor(float(timestep))
        self.check_inputs(input_bits, timestep, text_hidden_states, text_attention_mask)
        batch = text_hidden_states.shape[0]
        hidden = self.x_embedder(input_bits.to(self.dtype))
        temb = self.time_embed(timestep.to(hidden.device, self.dtype).reshape(-1).expand(batch))
        text_hidden_states, text_attention_mask = text_inputs(text_hidden_states, text_attention_mask, self.dtype, hidden.device)
        mask = padded_text_mask(text_attention_mask.to(hidden.device), hidden.shape[1], hidden.dtype)
        for index, block in enumerate(self.transformer_blocks):
            hidden = block(hidden, temb, text_hidden_states[:, index], mask)
        scale, shift = self.norm_out(temb)
        hidden = F.layer_norm(hidden, (hidden.shape[-1],), eps=self.config.layer_norm_eps) * (1 + scale) + shift
        return InstellaDiffusionOutput(logits=self.proj_out(hidden))

