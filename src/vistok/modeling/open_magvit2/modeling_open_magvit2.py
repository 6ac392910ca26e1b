"""Open-MAGVIT2 (TencentARC/SEED-Voken, "Open-MAGVIT2: An Open-Source Project Toward Democratizing
Auto-regressive Visual Generation", arXiv 2409.04410; MAGVIT-v2, arXiv 2310.05737): the lookup-free image
tokenizers and the factorized autoregressive generator.

Tokenizer (modules/diffusionmodules/improved_model.py, modules/vqvae/lookup_free_quantize.py): module names
follow the original's (so its EMA buffers, named by the parameter names without dots, map one to one).
LFQ is the quantizer library's :class:`~vistok.modeling.quantizers.LFQ`; the adaptive GroupNorm and the
depth-to-space upsampler are the shared ``layers/adaptive_norm.py``.

Generator (modules/transformer/gpt.py ``GPT``): LlamaGen blocks (the shared ``layers/llama.py`` layer, 2D RoPE
with the class position's queries/keys zeroed) over ``[class, pre_emb + post_emb]``, then at each position a
small causal transformer over the two-element sequence ``[h, pre_emb(pre)]`` (RoPE rows 0 and 1 of the same
table: zero, then grid cell (0, 0)), a shared final RMSNorm and one head per sub-token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..base import VisualTokenizerEncoderOutput, VisualTokenizerMixin
from ..layers.adaptive_norm import AdaptiveGroupNorm, DepthToSpaceUpsample
from ..layers.conv_autoencoder import ConvDecoder, ConvEncoder
from ..layers.conv_tokenizer import ConvTokenizerPreTrainedModel, QuantConvTokenizerMixin, latents_to_grid
from ..layers.kv_cache import StaticKVCache
from ..layers.drop_path import drop_path
from ..layers.llama import LlamaAttention, LlamaDecoderLayer, LlamaMLP
from ..layers.llama_generator import (LlamaGeneratorPreTrainedModel, TokenEmbeddingsMixin, check_class_labels, check_token_ids,
                                      drop_path_rates, embed_class_labels, step_attention_mask, training_condition_drop,
                                      with_condition_mask)
from ..layers.norms import RMSNorm
from ..layers.rope import rope_2d_cos_sin
from ..layers.zero_init import zero_initialised
from ..quantizers import LFQ, IndexPropagationQuantizer, merge_indices, split_indices
from .configuration_open_magvit2 import IBQARConfig, IBQConfig, OpenMagvit2ARConfig, OpenMagvit2Config


# -- tokenizer -------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """GroupNorm(32) -> swish -> conv3x3 (no bias), twice; a 1x1 ``nin_shortcut`` (no bias) when widths differ."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(32, out_channels, eps=1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(x))


class _Level(nn.Module):
    def __init__(self, blocks, resample: nn.Module | None, resample_name: str):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if resample is not None:
            self.add_module(resample_name, resample)


class Encoder(nn.Module):
    def __init__(self, config: OpenMagvit2Config):
        super().__init__()
        ch, mult, n = config.hidden_channels, config.channel_mult, config.num_res_blocks
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        block_in = ch
        for i, m in enumerate(mult):
            blocks = []
            for _ in range(n):
                blocks.append(ResBlock(block_in, ch * m))
                block_in = ch * m
            last = i == len(mult) - 1
            self.down.append(_Level(blocks, None if last else nn.Conv2d(block_in, block_in, 3, stride=2, padding=1), "downsample"))
        self.mid_block = nn.ModuleList(ResBlock(block_in, block_in) for _ in range(n))
        self.norm_out = nn.GroupNorm(32, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, config.num_bits, 1)

    def forward(self, x):
        x = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                x = block(x)
            if hasattr(level, "downsample"):
                x = level.downsample(x)
        for block in self.mid_block:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    """conv_in -> mid ResBlocks -> per level (coarse to fine): adaptive GroupNorm on the quantized map,
    ResBlocks, depth-to-space upsampling -> GroupNorm, swish, conv_out."""

    def __init__(self, config: OpenMagvit2Config):
        super().__init__()
        ch, mult, n, z = config.hidden_channels, config.channel_mult, config.num_res_blocks, config.num_bits
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(z, block_in, 3, padding=1)
        self.mid_block = nn.ModuleList(ResBlock(block_in, block_in) for _ in range(n))
        adaptive, up = [None] * len(mult), [None] * len(mult)
        for i in reversed(range(len(mult))):
            adaptive[i] = AdaptiveGroupNorm(z, block_in)
            blocks = []
            for _ in range(n):
                blocks.append(ResBlock(block_in, ch * mult[i]))
                block_in = ch * mult[i]
            up[i] = _Level(blocks, DepthToSpaceUpsample(block_in) if i > 0 else None, "upsample")
        self.adaptive = nn.ModuleList(adaptive)
        self.up = nn.ModuleList(up)
        self.norm_out = nn.GroupNorm(32, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, 3, 3, padding=1)

    def forward(self, z):
        style = z
        x = self.conv_in(z)
        for block in self.mid_block:
            x = block(x)
        for i in reversed(range(len(self.up))):
            x = self.adaptive[i](x, style)
            for block in self.up[i].block:
                x = block(x)
            if i > 0:
                x = self.up[i].upsample(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class OpenMagvit2PreTrainedModel(PreTrainedModel):
    config_class = OpenMagvit2Config
    base_model_prefix = "open_magvit2"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["ResBlock"]
    # the output of every ResNet block, encoder (levels, mid) then decoder (mid, levels): feature maps [B, C, h, w]
    _can_record_outputs = {"hidden_states": ResBlock}


class OpenMagvit2Model(VisualTokenizerMixin, OpenMagvit2PreTrainedModel):
    """``encode(pixels [B, 3, H, H] in [-1, 1])`` -> ``token_ids [B, H/f, H/f]`` over ``2**num_bits`` codes
    (bit i of an id = sign of channel i) and ``latents [B, (H/f)^2, num_bits]`` (the ±1 codes, row-major);
    ``decode(token_ids)`` -> pixels. ``split_token_ids``/``merge_token_ids``: the generator's sub-token view."""

    def __init__(self, config: OpenMagvit2Config):
        super().__init__(config)
        self.encoder = Encoder(config)
        self.quantizer = LFQ(config.num_bits, entropy_weight=config.entropy_weight, commitment_cost=config.commitment_cost,
                             diversity_gamma=config.diversity_gamma, entropy_temperature=config.entropy_temperature)
        self.decoder = Decoder(config)
        self.post_init()

    def _encode(self, pixel_values):
        z = self.encoder(pixel_values).permute(0, 2, 3, 1)  # [B, h, w, num_bits]
        q = self.quantizer(z)
        return VisualTokenizerEncoderOutput(token_ids=q.indices, latents=q.quantized.flatten(1, 2), quantizer_loss=q.loss,
                                            commitment_loss=q.commitment_loss)

    def _token_ids_to_latents(self, token_ids):
        return self.quantizer.indices_to_codes(token_ids.long()).flatten(1, 2)

    def _decode_latents(self, latents):
        return self.decoder(latents_to_grid(latents, self.dtype))

    def _bits(self, factorized_bits):
        bits = factorized_bits if factorized_bits is not None else self.config.factorized_bits
        if bits is None:
            raise ValueError("this tokenizer has no factorized_bits: pass factorized_bits (e.g. [6, 12])")
        if sum(bits) != self.config.num_bits:
            raise ValueError(f"factorized_bits must sum to the tokenizer's {self.config.num_bits} bits, got {list(bits)}")
        return bits

    def split_token_ids(self, token_ids: torch.LongTensor, factorized_bits=None) -> tuple[torch.LongTensor, ...]:
        """Sub-token ids over consecutive bit groups, lowest bits first (``[6, 12]``: ``(ids & 63, ids >> 6)``,
        the original's ``(indices_pre, indices_post)`` of channels 0-5 and 6-17). Any shape of integer ids."""
        return split_indices(token_ids, self._bits(factorized_bits))

    def merge_token_ids(self, *parts: torch.LongTensor, factorized_bits=None) -> torch.LongTensor:
        """The token ids whose ``split_token_ids`` are ``parts``."""
        return merge_indices(parts, self._bits(factorized_bits))


# -- IBQ tokenizer ---------------------------------------------------------------------------------
class IBQPreTrainedModel(ConvTokenizerPreTrainedModel):
    config_class = IBQConfig
    base_model_prefix = "ibq"


class IBQModel(QuantConvTokenizerMixin, VisualTokenizerMixin, IBQPreTrainedModel):
    """``encode(pixels [B, 3, H, H] in [-1, 1])`` -> ``token_ids [B, H/f, H/f]`` and ``latents [B, (H/f)^2,
    token_dim]`` (the chosen codes, row-major); ``decode(token_ids)`` -> pixels. The shared taming-style
    ``ConvEncoder``/``ConvDecoder`` and the quantizer library's ``IndexPropagationQuantizer``."""

    def __init__(self, config: IBQConfig):
        super().__init__(config)
        ch, mult, n, z = config.hidden_channels, config.channel_mult, config.num_res_blocks, config.z_channels
        self.encoder = ConvEncoder(ch, mult, n, z, attention_levels=config.attention_levels)
        self.quant_conv = nn.Conv2d(z, config.token_dim, 1)
        self.quantizer = IndexPropagationQuantizer(config.codebook_size, config.token_dim, commitment_cost=config.commitment_cost,
                                                   entropy_weight=config.entropy_weight, entropy_temperature=config.entropy_temperature)
        self.post_quant_conv = nn.Conv2d(config.token_dim, z, 1)
        self.decoder = ConvDecoder(ch, mult, n + 1, z, attention_levels=config.attention_levels)
        self.post_init()


# -- generator -------------------------------------------------------------------------------------
@dataclass
class OpenMagvit2AROutput(ModelOutput):
    """logits_pre / logits_post: fp32 ``[B, n, 2**bits]`` per sub-token; position j predicts token j (its
    ``post`` given its true ``pre``). loss: CE(pre) + CE(post), as the original's training step. hidden_states /
    attentions: per spatial layer (the first hidden state is the embedded input), when asked for."""

    loss: torch.FloatTensor | None = None
    logits_pre: torch.FloatTensor | None = None
    logits_post: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class OpenMagvit2ARPreTrainedModel(LlamaGeneratorPreTrainedModel):
    config_class = OpenMagvit2ARConfig
    base_model_prefix = "open_magvit2_ar"
    _no_split_modules = ["LlamaDecoderLayer"]
    # the spatial layers (the factorized layers run per position over two sub-tokens)
    _can_record_outputs = {"hidden_states": OutputRecorder(LlamaDecoderLayer, layer_name="spatial_layers"),
                           "attentions": OutputRecorder(LlamaAttention, index=1, layer_name="spatial_layers")}


class OpenMagvit2ARTransformer(OpenMagvit2ARPreTrainedModel):
    """``forward(input_ids [B, n] (full code ids) or pre_ids/post_ids, class_labels [B])`` -> per-sub-token
    logits. Sampling (the pipeline) goes through ``spatial_step`` (cached) and ``subtoken_step``."""

    def __init__(self, config: OpenMagvit2ARConfig):
        super().__init__(config)
        pre_bits, post_bits = config.factorized_bits
        self.pre_embed = nn.Embedding(2**pre_bits, config.hidden_size)
        self.post_embed = nn.Embedding(2**post_bits, config.hidden_size)
        self.class_embed = nn.Embedding(config.num_classes + int(config.has_null_condition), config.hidden_size)
        self.token_dropout = nn.Dropout(config.token_dropout)
        spatial = drop_path_rates(config.drop_path_rate, config.num_hidden_layers)
        factorized = drop_path_rates(config.drop_path_rate, config.num_factorized_layers)
        self.spatial_layers = nn.ModuleList(LlamaDecoderLayer(config, i, spatial[i]) for i in range(config.num_hidden_layers))
        self.factorized_layers = nn.ModuleList(LlamaDecoderLayer(config, i, factorized[i])
                                               for i in range(config.num_factorized_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.heads = nn.ModuleList(zero_initialised(nn.Linear(config.hidden_size, 2**bits, bias=False))
                                   for bits in config.factorized_bits)
        self.post_init()

    def get_input_embeddings(self):
        return self.post_embed

    def set_input_embeddings(self, value):
        self.post_embed = value

    # -- pieces -----------------------------------------------------------------------------------
    def embed_class(self, class_labels, drop_condition=None):
        return embed_class_labels(self.class_embed, class_labels, drop_condition)

    def _rope(self, positions):
        cfg = self.config
        return rope_2d_cos_sin(positions, cfg.grid_size, cfg.head_dim, cfg.rope_theta, cfg.num_condition_tokens)

    @staticmethod
    def _cached_mask(rows, length, key_length, cache_position, device):
        keys = torch.arange(key_length, device=device)
        mask = keys[None, :] <= cache_position[:, None]
        return mask.expand(rows, length, key_length)[:, None]

    def _run(self, layers, hidden, positions, cache=None):
        cos, sin = self._rope(positions)
        mask = key_length = None
        if cache is not None:
            key_length = int(positions[-1]) + 1
            mask = self._cached_mask(hidden.shape[0], hidden.shape[1], key_length, positions, hidden.device)
        for layer in layers:
            hidden = layer(hidden, cos, sin, mask, cache, positions if cache is not None else None, key_length)
        return hidden

    def new_cache(self, batch_size: int, factorized: bool = False, dtype=None, device=None) -> StaticKVCache:
        """A static cache for the spatial layers (condition + image tokens) or, with ``factorized``, for the
        factorized layers' two positions (fresh at every spatial step, as the original)."""
        cfg = self.config
        layers = cfg.num_factorized_layers if factorized else cfg.num_hidden_layers
        length = 2 if factorized else cfg.num_condition_tokens + cfg.num_tokens
        return StaticKVCache(layers, batch_size, cfg.num_key_value_heads, length, cfg.head_dim,
                             dtype=dtype or self.dtype, device=device or self.device)

    def spatial_step(self, cache: StaticKVCache, position: int, class_labels=None, drop_condition=None,
                     pre_ids=None, post_ids=None) -> torch.Tensor:
        """The spatial layers' output ``[B, 1, D]`` at ``position``: the class token (position 0) or the token
        ``(pre_ids, post_ids)`` ``[B, 1]`` (position j + 1 holds token j)."""
        if class_labels is not None:
            hidden = self.embed_class(class_labels, drop_condition)
        else:
            hidden = self.pre_embed(pre_ids) + self.post_embed(post_ids)
        hidden = self.token_dropout(hidden)
        positions = torch.tensor([position], device=hidden.device)
        return self._run(self.spatial_layers, hidden, positions, cache)

    def subtoken_step(self, hidden: torch.Tensor, cache: StaticKVCache, index: int) -> torch.Tensor:
        """fp32 logits ``[B, 2**bits[index]]`` of sub-token ``index``: the factorized layers at position ``index``
        of ``[h, pre_emb(pre)]`` (``hidden`` is h for index 0, ``pre_embed(pre)`` for index 1)."""
        positions = torch.tensor([index], device=hidden.device)
        out = self.norm(self._run(self.factorized_layers, hidden, positions, cache))
        return self.heads[index](out[:, -1]).float()

    # -- full sequence ----------------------------------------------------------------------------
    @capture_outputs
    def forward(self, input_ids: torch.LongTensor | None = None, class_labels: torch.LongTensor | None = None,
                pre_ids: torch.LongTensor | None = None, post_ids: torch.LongTensor | None = None,
                drop_condition: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                generator: torch.Generator | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool | None = None) -> OpenMagvit2AROutput | tuple:
        """Teacher-forced logits for ``n`` tokens given as full code ids ``input_ids [B, n]`` or as sub-tokens
        ``pre_ids``/``post_ids``: the spatial sequence is ``[class, tokens 0..n-2]`` and position j's factorized
        step sees token j's ``pre``. ``labels`` (full code ids ``[B, n]``) gives ``loss = CE(pre) + CE(post)``.
        In training the class is dropped with probability ``class_dropout_prob`` (drawn from ``generator``)."""
        cfg = self.config
        pre_ids, post_ids = self.check_inputs(input_ids, pre_ids, post_ids, class_labels)
        batch, length = pre_ids.shape
        if self.training and cfg.class_dropout_prob > 0:
            drop_condition = training_condition_drop(batch, cfg.class_dropout_prob, drop_condition, generator,
                                                     self.class_embed.weight.device)
        pre_emb = self.pre_embed(pre_ids)
        tokens = pre_emb + self.post_embed(post_ids)
        hidden = self.token_dropout(torch.cat([self.embed_class(class_labels, drop_condition), tokens[:, :-1]], dim=1))
        hidden = self._run(self.spatial_layers, hidden, torch.arange(length, device=hidden.device))
        context = torch.stack([hidden, pre_emb], dim=2).reshape(batch * length, 2, -1)
        context = self._run(self.factorized_layers, context, torch.arange(2, device=hidden.device))
        context = self.norm(context).view(batch, length, 2, -1)
        logits_pre, logits_post = (self.heads[i](context[:, :, i]).float() for i in range(2))
        loss = None
        if labels is not None:
            pre_labels, post_labels = split_indices(labels, cfg.factorized_bits)
            loss = F.cross_entropy(logits_pre.flatten(0, 1), pre_labels.flatten()) + \
                F.cross_entropy(logits_post.flatten(0, 1), post_labels.flatten())
        # (capture_outputs adds hidden states / attentions and applies return_dict)
        return OpenMagvit2AROutput(loss=loss, logits_pre=logits_pre, logits_post=logits_post)

    def check_inputs(self, input_ids, pre_ids, post_ids, class_labels):
        cfg = self.config
        if class_labels is None:
            raise ValueError("pass class_labels: the sequence starts with its class token")
        check_class_labels(class_labels, cfg.num_classes)
        if (input_ids is None) == (pre_ids is None and post_ids is None):
            raise ValueError("pass either input_ids (full code ids [B, n]) or pre_ids and post_ids (sub-token ids [B, n])")
        if input_ids is not None:
            if not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point() or input_ids.ndim != 2:
                raise ValueError(f"input_ids must be an integer tensor [B, n] of code ids in [0, {cfg.codebook_size - 1}]")
            pre_ids, post_ids = split_indices(input_ids, cfg.factorized_bits)
        else:
            for name, ids, bits in (("pre_ids", pre_ids, cfg.factorized_bits[0]), ("post_ids", post_ids, cfg.factorized_bits[1])):
                if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.ndim != 2:
                    raise ValueError(f"{name} must be an integer tensor [B, n] in [0, {2**bits - 1}]")
                if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= 2**bits):
                    raise ValueError(f"{name} must lie in [0, {2**bits - 1}] ({bits} bits)")
            if pre_ids.shape != post_ids.shape:
                raise ValueError(f"pre_ids and post_ids must have the same shape, got {tuple(pre_ids.shape)} and {tuple(post_ids.shape)}")
        if pre_ids.shape[0] != class_labels.shape[0]:
            raise ValueError(f"{pre_ids.shape[0]} token rows but {class_labels.shape[0]} class labels")
        if not 1 <= pre_ids.shape[1] <= cfg.num_tokens:
            raise ValueError(f"between 1 and {cfg.num_tokens} tokens per image, got {pre_ids.shape[1]}")
        return pre_ids, post_ids


# -- IBQ generator ---------------------------------------------------------------------------------
@dataclass
class IBQAROutput(ModelOutput):
    """logits: fp32 ``[B, S, codebook_size]``; without a cache, position i predicts image token i. loss: cross-entropy.
    hidden_states / attentions: per decoder layer (the first hidden state is the embedded input), when asked for."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class ConditionedKVCache(StaticKVCache):
    """A static KV cache that also keeps the class embedding the adaptive norms of every later step read."""

    condition: torch.Tensor | None = None


class IBQARDecoderLayer(GradientCheckpointingLayer):
    """The shared Llama layer's attention and SwiGLU, modulated by ``adaln(silu(c)) -> (gamma1, gamma2, scale1,
    scale2, shift1, shift2)``: ``x + gamma1 * attn(norm1(x) * (1 + scale1) + shift1)``, then the MLP likewise."""

    def __init__(self, config: IBQARConfig, layer_idx: int, drop_path_rate: float):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = LlamaMLP(config)
        self.adaln = nn.Linear(config.hidden_size, 6 * config.hidden_size)
        self.adaln._adaln = "block"  # (initialised by IBQARPreTrainedModel._init_weights)
        self.drop_path_rate = drop_path_rate

    def forward(self, hidden_states, condition, cos, sin, attention_mask=None, cache=None, cache_position=None, key_length=None):
        c = hidden_states.shape[-1]
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.adaln(F.silu(condition)).view(-1, 1, 6, c).unbind(2)
        attn = self.self_attn(self.input_layernorm(hidden_states) * (scale1 + 1) + shift1, cos, sin, attention_mask, cache,
                              cache_position, key_length)[0]
        hidden_states = hidden_states + drop_path(attn * gamma1, self.drop_path_rate, self.training)
        mlp = self.mlp(self.post_attention_layernorm(hidden_states) * (scale2 + 1) + shift2)
        return hidden_states + drop_path(mlp * gamma2, self.drop_path_rate, self.training)


class IBQARPreTrainedModel(LlamaGeneratorPreTrainedModel):
    config_class = IBQARConfig
    base_model_prefix = "ibq_ar"
    _no_split_modules = ["IBQARDecoderLayer"]
    _can_record_outputs = {"hidden_states": IBQARDecoderLayer, "attentions": OutputRecorder(LlamaAttention, index=1)}

    def _init_family_weights(self, module):
        if getattr(module, "_adaln", None) == "block":  # the original's adaLN init: gammas tiny, the rest halved
            c = module.weight.shape[1]
            init.copy_(module.weight, torch.cat([module.weight[: 2 * c] * self.config.adaln_gamma_init, module.weight[2 * c:] * 0.5]))
            init.zeros_(module.bias)
        elif getattr(module, "_adaln", None) == "head":
            init.copy_(module.weight, module.weight * 0.5)
            init.zeros_(module.bias)


class IBQARTransformer(TokenEmbeddingsMixin, IBQARPreTrainedModel):
    """``forward(input_ids [B, n], class_labels [B])`` -> next-token logits ``[B, n + 1, codebook_size]`` (teacher-forced),
    or one cached sampling step with a :class:`ConditionedKVCache` (``new_cache``), as
    :class:`vistok.pipelines.AutoregressiveImagePipeline` calls it."""

    def __init__(self, config: IBQARConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.codebook_size, config.hidden_size)
        self.class_embed = nn.Embedding(config.num_classes + int(config.has_null_condition), config.hidden_size)
        self.token_dropout = nn.Dropout(config.token_dropout)
        rates = drop_path_rates(config.drop_path_rate, config.num_hidden_layers)
        self.layers = nn.ModuleList(IBQARDecoderLayer(config, i, rates[i]) for i in range(config.num_hidden_layers))
        self.head_norm = RMSNorm(config.hidden_size)  # AdaLNBeforeHead's RMSNorm: eps 1e-5 always
        self.head_adaln = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        self.head_adaln._adaln = "head"
        self.lm_head = zero_initialised(nn.Linear(config.hidden_size, config.codebook_size, bias=False))
        self.post_init()

    def new_cache(self, batch_size: int, max_length: int | None = None, dtype=None, device=None) -> ConditionedKVCache:
        cfg = self.config
        return ConditionedKVCache(cfg.num_hidden_layers, batch_size, cfg.num_key_value_heads, max_length or 1 + cfg.num_tokens,
                                  cfg.head_dim, dtype=dtype or self.dtype, device=device or self.device)

    def embed_class(self, class_labels, drop_condition=None):
        return embed_class_labels(self.class_embed, class_labels, drop_condition)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # transformers' older name for the cache
    @capture_outputs
    def forward(self, input_ids: torch.LongTensor | None = None, class_labels: torch.LongTensor | None = None,
                drop_condition: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                cache: ConditionedKVCache | None = None, cache_position: torch.LongTensor | None = None, logits_to_keep: int = 0,
                labels: torch.LongTensor | None = None, generator: torch.Generator | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None) -> IBQAROutput | tuple:
        """Without a cache: ``[class, input_ids]`` runs causally. With one: a sampling step (the class at position 0
        stores its embedding in the cache; image tokens at ``cache_position`` read it). ``drop_condition`` (bool [B])
        swaps in the null class; in training the class is also dropped with probability ``class_dropout_prob``.

        ``attention_mask`` ([B, K] bool/0-1 over key positions, K = all positions attended to) masks keys; every
        position still attends to itself. Without a cache, a mask over ``input_ids`` alone ([B, n]) is also accepted
        (transformers' convention); the class token is then always attended."""
        cfg = self.config
        self.check_inputs(input_ids, class_labels, cache)
        pieces = []
        condition = None
        if class_labels is not None:
            if self.training and cfg.class_dropout_prob > 0:
                drop_condition = training_condition_drop(class_labels.shape[0], cfg.class_dropout_prob, drop_condition, generator,
                                                         self.class_embed.weight.device)
            condition = self.embed_class(class_labels, drop_condition)
            pieces.append(condition)
            if cache is not None:
                cache.condition = condition
        else:
            condition = cache.condition
        if input_ids is not None:
            pieces.append(self.embed_tokens(input_ids))
        hidden = self.token_dropout(pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1))
        if attention_mask is not None and cache is None and class_labels is not None and input_ids is not None \
                and attention_mask.shape[-1] == input_ids.shape[1] != hidden.shape[1]:
            # a mask over input_ids only (transformers' convention): the class token is always attended
            attention_mask = with_condition_mask(attention_mask, 1)
        logits = self._transform(hidden, condition, attention_mask, cache, cache_position, logits_to_keep)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, : labels.shape[1]].reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return IBQAROutput(loss=loss, logits=logits)  # (capture_outputs adds hidden states and applies return_dict)

    def _decode_step(self, input_ids, attention_mask, cache, cache_position) -> torch.Tensor:
        """One cached step (the pipelines' per-token call): fp32 logits ``[B, 1, codebook_size]``."""
        return self._transform(self.embed_tokens(input_ids), cache.condition, attention_mask, cache, cache_position, 0)

    def _transform(self, hidden, condition, attention_mask, cache, cache_position, logits_to_keep) -> torch.Tensor:
        cfg = self.config
        length = hidden.shape[1]
        if cache_position is None:
            cache_position = torch.arange(length, device=hidden.device)
        cos, sin = rope_2d_cos_sin(cache_position, cfg.grid_size, cfg.head_dim, cfg.rope_theta, cfg.num_condition_tokens)
        mask, key_length = step_attention_mask(hidden, attention_mask, cache, cache_position)
        for layer in self.layers:
            hidden = layer(hidden, condition, cos, sin, mask, cache, cache_position, key_length)
        if logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        scale, shift = self.head_adaln(F.silu(condition)).view(-1, 1, 2, hidden.shape[-1]).unbind(2)
        return self.lm_head(self.head_norm(hidden) * (scale + 1) + shift).float()

    def check_inputs(self, input_ids, class_labels, cache) -> None:
        cfg = self.config
        if input_ids is not None:
            check_token_ids(input_ids, cfg.codebook_size)
        if class_labels is not None:
            check_class_labels(class_labels, cfg.num_classes)
        elif cache is None or getattr(cache, "condition", None) is None:
            raise ValueError("pass class_labels: every position is modulated by the class embedding (a sampling step after the "
                             "first reads it from the cache its class step filled)")
