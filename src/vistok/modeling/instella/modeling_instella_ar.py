"""Instella-T2I's autoregressive generator over binary tokens (AMD-AGI/Instella-T2I models/ar_model.py).

Each block: ``h = rms(x) + pos_emb``; keys/values over ``[proj_cond(OLMo hidden state i+1); h]``, queries over
``h`` only, causal with bottom-right alignment (image token i sees every unpadded text token and image tokens
<= i), q/k RMSNorm per head, no RoPE; ``x += attn``; ``x += mlp(rms(x))`` (GELU-tanh). Head: ``proj_out(rms(x))``
gives one logit per bit. The unused ``time_embed`` of the release is not kept.

The original sampler (``BinaryAR.sample``) is :class:`vistok.pipelines.BinaryAutoregressiveTextToImagePipeline`.
The original recomputes the whole text + image sequence at each of its 128 steps; ``new_cache`` / ``cached_step``
give the same logits with a static KV cache (the text keys/values and the split token written once, then one image
token per step), which the pipeline uses by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..layers.kv_cache import StaticKVCache
from ..layers.norms import RMSNorm
from ..layers.transformer import eager_attention_forward
from .configuration_instella import InstellaARConfig


@dataclass
class InstellaAROutput(ModelOutput):
    """logits: ``[B, n+1, num_bits]`` bit logits; position i predicts image token i (position 0 is the split token)."""

    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class InstellaARAttention(nn.Module):
    def __init__(self, config: InstellaARConfig):
        super().__init__()
        width, heads = config.hidden_size, config.num_attention_heads
        self.config = config
        self.num_heads, self.head_dim = heads, width // heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False  # the mask below carries the causal structure
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.o_proj = nn.Linear(width, width, bias=False)
        self.norm_q = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.norm_k = RMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def forward(self, hidden_states: torch.Tensor, query_length: int, attention_mask: torch.Tensor,
                cache: StaticKVCache | None = None, cache_position: torch.LongTensor | None = None,
                key_length: int | None = None, layer_idx: int = 0):
        """Queries over the last ``query_length`` positions, keys/values over all; with ``cache`` the keys/values
        computed here are written at ``cache_position`` and attention reads the cache's first ``key_length``."""
        batch, length, _ = hidden_states.shape
        query = self.norm_q(self.q_proj(hidden_states[:, -query_length:]).view(batch, query_length, self.num_heads, self.head_dim))
        key = self.norm_k(self.k_proj(hidden_states).view(batch, length, self.num_heads, self.head_dim)).transpose(1, 2)
        value = self.v_proj(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        if cache is not None:
            key, value = cache.update(layer_idx, key, value, cache_position, key_length)
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        output, weights = interface(self, query.transpose(1, 2), key, value, attention_mask,
                                    scaling=self.scaling, dropout=0.0, is_causal=False)
        return self.o_proj(output.reshape(batch, query_length, -1)), weights


class InstellaARMLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def add_text_attention_parts(block: nn.Module, config, positions: int) -> None:
    """What every Instella generator block holds after its norms: ``proj_cond`` (text width -> width), ``pos_emb``
    over ``positions`` image positions, the joint text/image ``attn`` and the GELU-tanh ``mlp``."""
    width = config.hidden_size
    block.proj_cond = nn.Linear(config.text_hidden_size, width)
    block.pos_emb = nn.Parameter(torch.zeros(1, positions, width))
    block.attn = InstellaARAttention(config)
    block.mlp = InstellaARMLP(width, int(width * config.mlp_ratio))


def clip_float16(hidden_states: torch.Tensor) -> torch.Tensor:
    """The originals' block tail: fp16 activations clipped to the finite fp16 range."""
    if hidden_states.dtype == torch.float16:
        hidden_states = hidden_states.clip(-65504, 65504)
    return hidden_states


class InstellaARBlock(GradientCheckpointingLayer):
    def __init__(self, config: InstellaARConfig):
        super().__init__()
        width = config.hidden_size
        self.input_layernorm = RMSNorm(width, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(width, eps=config.rms_norm_eps)
        add_text_attention_parts(self, config, config.num_tokens + 1)

    def forward(self, hidden_states, text_states, attention_mask, cache=None, cache_position=None, key_length=None,
                layer_idx: int = 0, image_position: int = 0):
        """``hidden_states``: image positions ``image_position ..``; ``text_states`` None (a cached step after the
        prefill: the text keys/values are in ``cache``)."""
        length = hidden_states.shape[1]
        normed = self.input_layernorm(hidden_states) + self.pos_emb[:, image_position:image_position + length]
        joint = normed if text_states is None else torch.cat([self.proj_cond(text_states), normed], dim=1)
        hidden_states = hidden_states + self.attn(joint, length, attention_mask, cache, cache_position, key_length, layer_idx)[0]
        hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))
        return clip_float16(hidden_states)


class InstellaGeneratorPreTrainedModel(PreTrainedModel):
    """What the AR and diffusion generators share: bits in, attention through ``ALL_ATTENTION_FUNCTIONS``, and the
    initialisation (``pos_emb`` of the blocks zero, RMSNorm weights one, linear layers N(0, initializer_range))."""

    main_input_name = "input_bits"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flex_attn = False
    _supports_attention_backend = True
    _block_class: type[nn.Module]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, self._block_class):
            init.zeros_(module.pos_emb)
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)


class InstellaARPreTrainedModel(InstellaGeneratorPreTrainedModel):
    config_class = InstellaARConfig
    base_model_prefix = "instella_ar"
    _no_split_modules = ["InstellaARBlock"]
    _block_class = InstellaARBlock
    _can_record_outputs = {"hidden_states": InstellaARBlock, "attentions": OutputRecorder(InstellaARAttention, index=1)}

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, InstellaARModel):
            init.normal_(module.split_token, std=0.02)


def check_text_inputs(config, text_hidden_states, text_attention_mask) -> int:
    """Checks the text condition of a generator's forward (``[B, num_hidden_layers, T, text_hidden_size]`` hidden
    states, a ``[B, T]`` mask or None); returns B."""
    c = config
    if not isinstance(text_hidden_states, torch.Tensor) or text_hidden_states.ndim != 4 \
            or text_hidden_states.shape[1] != c.num_hidden_layers or text_hidden_states.shape[-1] != c.text_hidden_size:
        shape = None if not isinstance(text_hidden_states, torch.Tensor) else tuple(text_hidden_states.shape)
        raise ValueError(f"text_hidden_states must be [B, {c.num_hidden_layers}, T, {c.text_hidden_size}] (the text "
                         f"encoder's hidden states 1..{c.num_hidden_layers}, stacked), got {shape}")
    batch, _, length, _ = text_hidden_states.shape
    if text_attention_mask is not None and tuple(text_attention_mask.shape) != (batch, length):
        raise ValueError(f"text_attention_mask must be [{batch}, {length}], got {tuple(text_attention_mask.shape)}")
    return batch


def text_inputs(text_hidden_states: torch.Tensor, text_attention_mask: torch.Tensor | None, dtype, device):
    """The checked text condition: the hidden states in ``dtype``, the mask as given or all ones on ``device``."""
    if text_attention_mask is None:
        batch, _, text_length, _ = text_hidden_states.shape
        text_attention_mask = torch.ones(batch, text_length, dtype=torch.long, device=device)
    return text_hidden_states.to(dtype), text_attention_mask


def joint_attention_mask(text_attention_mask: torch.Tensor, image_length: int, dtype) -> torch.Tensor:
    """Additive ``[B, 1, n, T+n]``: query i sees unpadded text and image positions <= i (flash-attn's causal
    mask aligned bottom-right on the unpadded sequence, as the original)."""
    batch, text_length = text_attention_mask.shape
    device = text_attention_mask.device
    causal = torch.ones(image_length, image_length, dtype=torch.bool, device=device).tril()
    allowed = torch.cat([text_attention_mask.bool()[:, None, :].expand(batch, image_length, text_length),
                         causal[None].expand(batch, -1, -1)], dim=2)
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


class InstellaARModel(InstellaARPreTrainedModel):
    """Instella-T2I AR generator: ``forward(input_bits, text_hidden_states, text_attention_mask)`` -> bit logits."""

    def __init__(self, config: InstellaARConfig):
        super().__init__(config)
        self.x_embedder = nn.Linear(config.num_bits, config.hidden_size)
        self.split_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.transformer_blocks = nn.ModuleList(InstellaARBlock(config) for _ in range(config.num_hidden_layers))
        self.norm_out = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.proj_out = nn.Linear(config.hidden_size, config.num_bits)
        self.post_init()

    def check_inputs(self, input_bits, text_hidden_states, text_attention_mask) -> None:
        c = self.config
        batch = check_text_inputs(c, text_hidden_states, text_attention_mask)
        if input_bits is not None:
            if input_bits.ndim != 3 or input_bits.shape[0] != batch or input_bits.shape[-1] != c.num_bits:
                raise ValueError(f"input_bits must be [{batch}, n, {c.num_bits}], got {tuple(input_bits.shape)}")
            if input_bits.shape[1] > c.num_tokens:
                raise ValueError(f"input_bits holds {input_bits.shape[1]} tokens, at most {c.num_tokens}")

    @capture_outputs
    def forward(self, input_bits: torch.Tensor | None = None, text_hidden_states: torch.Tensor | None = None,
                text_attention_mask: torch.Tensor | None = None, **kwargs) -> InstellaAROutput:
        """``input_bits`` ``[B, n, num_bits]`` (0/1; None: only the split token), ``text_hidden_states``
        ``[B, num_hidden_layers, T, text_hidden_size]`` (OLMo hidden states 1..L), ``text_attention_mask`` ``[B, T]``
        (1 = token, left padding) -> logits ``[B, n+1, num_bits]``."""
        self.check_inputs(input_bits, text_hidden_states, text_attention_mask)
        batch = text_hidden_states.shape[0]
        hidden = self.split_token.expand(batch, -1, -1).to(self.dtype)
        if input_bits is not None and input_bits.shape[1]:
            hidden = torch.cat([hidden, self.x_embedder(input_bits.to(self.dtype))], dim=1)
        text_hidden_states, text_attention_mask = text_inputs(text_hidden_states, text_attention_mask, self.dtype, hidden.device)
        mask = joint_attention_mask(text_attention_mask, hidden.shape[1], hidden.dtype)
        for index, block in enumerate(self.transformer_blocks):
            hidden = block(hidden, text_hidden_states[:, index], mask)
        return InstellaAROutput(logits=self.proj_out(self.norm_out(hidden)))

    # -- a static KV cache for sampling (the original recomputes the whole sequence at every step) -------------
    def new_cache(self, batch_size: int, text_length: int, dtype=None, device=None) -> StaticKVCache:
        """A static cache for ``batch_size`` rows: ``text_length`` text positions, then the split token and the
        image tokens (all but the last, which is never fed back)."""
        cfg = self.config
        return StaticKVCache(cfg.num_hidden_layers, batch_size, cfg.num_attention_heads, text_length + cfg.num_tokens,
                             cfg.hidden_size // cfg.num_attention_heads, dtype=dtype or self.dtype, device=device or self.device)

    def cached_step(self, input_bits: torch.Tensor | None, cache: StaticKVCache, image_position: int,
                    text_attention_mask: torch.Tensor, text_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        """One sampling step with ``cache`` (``new_cache``): bit logits ``[B, n, num_bits]`` (float32) of the positions
        fed, equal to ``forward``'s at those positions up to rounding.

        ``image_position`` 0 is the prefill: ``text_hidden_states`` (hidden states 1..L) and the split token, then
        ``input_bits`` if given, are written; later calls feed ``input_bits`` ``[B, n, num_bits]`` at image positions
        ``image_position ..`` (position i + 1 holds token i; 0 is the split token). ``text_attention_mask``
        ``[B, T]`` is the prefill's text mask every time."""
        batch, text_length = text_attention_mask.shape
        pieces = []
        if image_position == 0:
            if text_hidden_states is None:
                raise ValueError("the prefill (image_position 0) needs text_hidden_states")
            pieces.append(self.split_token.expand(batch, -1, -1).to(self.dtype))
        elif text_hidden_states is not None:
            raise ValueError("text_hidden_states are written by the prefill (image_position 0) only")
        if input_bits is not None and input_bits.shape[1]:
            pieces.append(self.x_embedder(input_bits.to(self.dtype)))
        hidden = torch.cat(pieces, dim=1)
        length = hidden.shape[1]
        if image_position + length > self.config.num_tokens + 1 or text_length + image_position + length > cache.max_length:
            raise ValueError(f"image positions {image_position}..{image_position + length - 1} do not fit the cache/model")
        device = hidden.device
        start = 0 if image_position == 0 else text_length + image_position
        cache_position = torch.arange(start, text_length + image_position + length, device=device)
        key_length = text_length + image_position + length
        queries = torch.arange(image_position, image_position + length, device=device)
        images = torch.arange(image_position + length, device=device)
        allowed = torch.cat([text_attention_mask.bool()[:, None, :].expand(batch, length, text_length),
                             (images[None, :] <= queries[:, None])[None].expand(batch, -1, -1)], dim=2)
        mask = torch.zeros(allowed.shape, dtype=hidden.dtype, device=device).masked_fill(~allowed, torch.finfo(hidden.dtype).min)[:, None]
        if text_hidden_states is not None:
            text_hidden_states = text_hidden_states.to(self.dtype)
        for index, block in enumerate(self.transformer_blocks):
            text = None if text_hidden_states is None else text_hidden_states[:, index]
            hidden = block(hidden, text, mask, cache, cache_position, key_length, index, image_position)
        return self.proj_out(self.norm_out(hidden)).float()
