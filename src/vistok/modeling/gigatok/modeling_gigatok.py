"""GigaTok (SilentView/GigaTok): hybrid CNN-transformer VQ tokenizers, 1D (``VQVitModelPlus``) and 2D
(``VQVitModel2DPlus``), ported from tokenizer/tokenizer_image/vq/{vq_vit_model,blocks}.py.

- CNN encoder: the shared taming-style :class:`ConvEncoder` without attention (``use_attn: False``).
- 1D: a Q-Former encoder (DETR-style pre-norm decoder layers: self-attention over the queries with the
  query positions added to q and k, cross-attention to the CNN features with their positions added to the
  keys, GELU MLP) whose queries start as a projected multi-level average-pooling pyramid of the embedded
  features; a Q-Former decoder whose grid queries are copies of the first token, reading the tokens.
- 2D: plain pre-norm ViT blocks (the shared :class:`TransformerBlock`) over the feature grid with learned
  absolute positions added once.
- cosine VQ with the rotation trick (the shared :class:`VectorQuantizer`); 1x1 ``quant_conv`` /
  ``post_quant_conv`` are per-token linear maps.
- CNN decoder: the shared ResNet blocks, with an adaptive GroupNorm (MAGVIT-v2 style, scale and shift
  from the decoder input's per-channel std and mean) before each level and depth-to-space upsampling.
- ``distill_mlp``: the semantic-regularisation head after decoder layer ``distill_depth`` (REPA-style,
  aligned with DINOv2 features in training); :meth:`GigaTokModel.semantic_features` runs it.

Everything runs batch-first ``[B, L, C]``; the original is sequence-first with ``nn.MultiheadAttention``,
whose fused ``in_proj`` the converter splits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.output_capturing import OutputRecorder

from ..base import VisualTokenizerEncoderOutput, VisualTokenizerMixin
from ..layers.conv_autoencoder import ConvEncoder, ConvLevel, ConvMidBlock, _group_norm
from ..layers.transformer import MLP, Attention, TransformerBlock, eager_attention_forward
from ..quantizers import VectorQuantizer
from .configuration_gigatok import GigaTokConfig


# -- transformer parts -----------------------------------------------------------------------------
class GigaTokAttention(nn.Module):
    """Multi-head attention with distinct query / key / value inputs (``nn.MultiheadAttention`` semantics,
    its fused ``in_proj`` split into q/k/v); returns (output, weights)."""

    def __init__(self, config, hidden_size: int, num_heads: int):
        super().__init__()
        self.config = config
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, query, key, value):
        batch, q_len, _ = query.shape
        k_len = key.shape[1]
        q = self.q_proj(query).view(batch, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(key).view(batch, k_len, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(value).view(batch, k_len, self.num_heads, self.head_dim).transpose(1, 2)
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        output, weights = interface(self, q, k, v, None, scaling=self.scaling, dropout=0.0, is_causal=False)
        return self.out_proj(output.reshape(batch, q_len, -1)), weights


class GigaTokQFormerLayer(GradientCheckpointingLayer):
    """DETR's pre-norm decoder layer (the original ``TransformerDecoderLayer``):
    x += self_attn(q=k=ln1(x)+query_pos, v=ln1(x)); x += cross_attn(q=ln2(x)+query_pos, k=memory+memory_pos,
    v=memory); x += mlp(ln3(x))."""

    def __init__(self, config, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size)
        self.self_attn = GigaTokAttention(config, hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.cross_attn = GigaTokAttention(config, hidden_size, num_heads)
        self.norm3 = nn.LayerNorm(hidden_size)
        self.mlp = MLP(hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, hidden_states, memory, query_pos, memory_pos):
        h = self.norm1(hidden_states)
        qk = h + query_pos
        hidden_states = hidden_states + self.self_attn(qk, qk, h)[0]
        h = self.norm2(hidden_states)
        hidden_states = hidden_states + self.cross_attn(h + query_pos, memory + memory_pos, memory)[0]
        return hidden_states + self.mlp(self.norm3(hidden_states))


def multi_level_queries(features: torch.Tensor, num_levels: int) -> torch.Tensor:
    """The original ``sample_multi_level_1d_tokens`` (first_grow="row"): ``[B, C, H, W]`` -> ``[B, 2^L, C]``:
    the global mean, then for level ``l`` = 0..L-1 the averages over a grid of 2^floor(l/2) rows x 2^ceil(l/2)
    columns of blocks (the width splits first), each level row-major."""
    height, width = features.shape[-2:]
    groups = []
    for i in range(num_levels + 1):
        level = max(i - 1, 0)
        kernel = (height // 2 ** (level // 2), width // 2 ** ((level + 1) // 2))
        groups.append(F.avg_pool2d(features, kernel_size=kernel).flatten(2).transpose(1, 2))
    return torch.cat(groups, dim=1)


def _distill_mlp(width: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, 4 * width), nn.SiLU(), nn.Linear(4 * width, 4 * width), nn.SiLU(),
                         nn.Linear(4 * width, out_dim))


class GigaTokQFormerEncoder(nn.Module):
    """CNN features ``[B, z, h, w]`` -> ``[B, N, z]`` tokens (the original ``ViTEncoder``)."""

    def __init__(self, config: GigaTokConfig):
        super().__init__()
        width, grid, n = config.encoder_hidden_size, config.grid_size, config.num_latent_tokens
        self.num_levels = round(math.log2(n))
        self.ln_pre = nn.LayerNorm(config.z_channels)
        self.embed = nn.Linear(config.z_channels, width)
        self.position_embedding = nn.Parameter(torch.zeros(grid * grid, width))
        self.latent_position_embedding = nn.Parameter(torch.zeros(n, width))
        self.query_proj = nn.Linear(width, width)
        self.layers = nn.ModuleList(GigaTokQFormerLayer(config, width, config.encoder_num_heads, config.mlp_ratio)
                                    for _ in range(config.encoder_num_layers))
        self.ln_post = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, config.z_channels)

    def forward(self, features):
        batch, _, h, w = features.shape
        memory = self.embed(self.ln_pre(features.flatten(2).transpose(1, 2)))  # [B, hw, W]
        grid = memory.transpose(1, 2).reshape(batch, -1, h, w)
        queries = self.query_proj(multi_level_queries(grid, self.num_levels))
        for layer in self.layers:
            queries = layer(queries, memory, self.latent_position_embedding, self.position_embedding)
        return self.proj_out(self.ln_post(queries))


class GigaTokQFormerDecoder(nn.Module):
    """``[B, N, z]`` tokens -> ``[B, z, h, w]`` features (the original ``ViTDecoder``): grid queries are copies of
    the first embedded token."""

    def __init__(self, config: GigaTokConfig):
        super().__init__()
        width, grid, n = config.decoder_hidden_size, config.grid_size, config.num_latent_tokens
        self.grid_size, self.distill_depth = grid, config.distill_depth
        self.ln_pre = nn.LayerNorm(config.z_channels)
        self.embed = nn.Linear(config.z_channels, width)
        self.position_embedding = nn.Parameter(torch.zeros(grid * grid, width))
        self.latent_position_embedding = nn.Parameter(torch.zeros(n, width))
        self.layers = nn.ModuleList(GigaTokQFormerLayer(config, width, config.decoder_num_heads, config.mlp_ratio)
                                    for _ in range(config.decoder_num_layers))
        self.ln_post = nn.LayerNorm(width)
        self.conv_out = nn.Conv2d(width, config.z_channels, 3, padding=1)
        self.distill_mlp = _distill_mlp(width, config.distill_dim) if config.distill_depth is not None else None

    def forward(self, tokens, stop_at: int | None = None):
        memory = self.embed(self.ln_pre(tokens))
        queries = memory[:, :1].expand(-1, self.grid_size**2, -1)
        memory_pos = self.latent_position_embedding[: memory.shape[1]]
        for i, layer in enumerate(self.layers):
            queries = layer(queries, memory, self.position_embedding, memory_pos)
            if stop_at is not None and i + 1 == stop_at:
                return queries
        return _grid_out(self.conv_out, self.ln_post(queries), self.grid_size)


def _grid_out(conv, tokens, grid):
    return conv(tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid, grid))


class GigaTokViTEncoder2D(nn.Module):
    """CNN features ``[B, z, h, w]`` -> ``[B, hw, z]`` (the original ``ViTEncoder2D``, ``TransformerLayer``)."""

    def __init__(self, config: GigaTokConfig):
        super().__init__()
        width, grid = config.encoder_hidden_size, config.grid_size
        self.ln_pre = nn.LayerNorm(config.z_channels)
        self.embed = nn.Linear(config.z_channels, width)
        self.position_embedding = nn.Parameter(torch.zeros(grid * grid, width))
        self.layers = nn.ModuleList(TransformerBlock(config, width, config.encoder_num_heads, config.mlp_ratio)
                                    for _ in range(config.encoder_num_layers))
        self.ln_post = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, config.z_channels)

    def forward(self, features):
        hidden = self.embed(self.ln_pre(features.flatten(2).transpose(1, 2))) + self.position_embedding
        for layer in self.layers:
            hidden = layer(hidden)
        return self.proj_out(self.ln_post(hidden))


class GigaTokViTDecoder2D(nn.Module):
    """``[B, hw, z]`` -> ``[B, z, h, w]`` (the original ``ViTDecoder2D``, ``TransformerLayer``)."""

    def __init__(self, config: GigaTokConfig):
        super().__init__()
        width, grid = config.decoder_hidden_size, config.grid_size
        self.grid_size = grid
        self.ln_pre = nn.LayerNorm(config.z_channels)
        self.embed = nn.Linear(config.z_channels, width)
        self.position_embedding = nn.Parameter(torch.zeros(grid * grid, width))
        self.layers = nn.ModuleList(TransformerBlock(config, width, config.decoder_num_heads, config.mlp_ratio)
                                    for _ in range(config.decoder_num_layers))
        self.ln_post = nn.LayerNorm(width)
        self.conv_out = nn.Conv2d(width, config.z_channels, 3, padding=1)
        self.distill_mlp = _distill_mlp(width, config.distill_dim) if config.distill_depth is not None else None

    def forward(self, tokens, stop_at: int | None = None):
        hidden = self.embed(self.ln_pre(tokens)) + self.position_embedding
        for i, layer in enumerate(self.layers):
            hidden = layer(hidden)
            if stop_at is not None and i + 1 == stop_at:
                return hidden
        return _grid_out(self.conv_out, self.ln_post(hidden), self.grid_size)


# -- CNN decoder -----------------------------------------------------------------------------------
class AdaptiveGroupNorm(nn.Module):
    """GroupNorm(32, no affine) with scale = gamma(std) and shift = beta(mean) of a conditioning map's
    channels (std from the unbiased variance + eps, as ``torch.var``'s default in the original)."""

    def __init__(self, cond_channels: int, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.GroupNorm(32, channels, eps=eps, affine=False)
        self.gamma = nn.Linear(cond_channels, channels)
        self.beta = nn.Linear(cond_channels, channels)
        self.eps = eps

    def forward(self, hidden_states, cond):
        flat = cond.flatten(2)
        scale = self.gamma((flat.var(dim=-1) + self.eps).sqrt())[:, :, None, None]
        shift = self.beta(flat.mean(dim=-1))[:, :, None, None]
        return scale * self.norm(hidden_states) + shift


class DepthToSpaceUpsample(nn.Module):
    """3x3 conv to 4C, then depth-to-space by 2 (DCR order: the channel index splits as (dy, dx, c))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4 * channels, 3, padding=1)

    def forward(self, hidden_states):
        x = self.conv(hidden_states)
        b, c4, h, w = x.shape
        x = x.view(b, 2, 2, c4 // 4, h, w).permute(0, 3, 4, 1, 5, 2)
        return x.reshape(b, c4 // 4, 2 * h, 2 * w)


class GigaTokConvDecoder(nn.Module):
    """Features ``[B, z, h, w]`` -> pixels; ``num_res_blocks + 1`` ResNet blocks per level, an adaptive
    GroupNorm conditioned on the decoder input before each level, depth-to-space upsampling."""

    def __init__(self, config: GigaTokConfig):
        super().__init__()
        ch, mult, z = config.hidden_channels, config.decoder_channel_mult, config.z_channels
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(z, block_in, 3, padding=1)
        self.mid = ConvMidBlock(block_in, False, config.dropout)
        norms, levels = [], []
        for i in reversed(range(len(mult))):
            block_out = ch * mult[i]
            norms.append(AdaptiveGroupNorm(z, block_in))
            levels.append(ConvLevel(block_in, block_out, config.num_res_blocks + 1, False, config.dropout,
                                    DepthToSpaceUpsample(block_out) if i != 0 else None))
            block_in = block_out
        self.adaptive_norms = nn.ModuleList(norms)
        self.up_levels = nn.ModuleList(levels)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 3, 3, padding=1)

    def forward(self, latents):
        hidden = self.mid(self.conv_in(latents))
        for norm, level in zip(self.adaptive_norms, self.up_levels):
            hidden = norm(hidden, latents)  # its own statement: the un-normed map is freed before the level runs
            hidden = level(hidden)
        return self.conv_out(F.silu(self.norm_out(hidden)))


# -- the model -------------------------------------------------------------------------------------
class GigaTokPreTrainedModel(PreTrainedModel):
    config_class = GigaTokConfig
    base_model_prefix = "gigatok"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["GigaTokQFormerLayer", "TransformerBlock", "ConvLevel", "ConvMidBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # encoder transformer layers then decoder transformer layers
    _can_record_outputs = {
        "hidden_states": [GigaTokQFormerLayer, TransformerBlock],
        "attentions": [OutputRecorder(Attention, index=1), OutputRecorder(GigaTokAttention, index=1, layer_name="self_attn")],
    }

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, (GigaTokQFormerEncoder, GigaTokQFormerDecoder, GigaTokViTEncoder2D, GigaTokViTDecoder2D)):
            for name in ("position_embedding", "latent_position_embedding"):
                param = getattr(module, name, None)
                if param is not None:
                    init.normal_(param, std=module.embed.out_features**-0.5)
        elif isinstance(module, VectorQuantizer):  # the original's uniform(-1/K, 1/K) (lookups normalise it)
            init.uniform_(module.embedding.weight, -1.0 / module.codebook_size, 1.0 / module.codebook_size)


class GigaTokModel(VisualTokenizerMixin, GigaTokPreTrainedModel):
    """``encode(pixels [B, 3, H, H] in [-1, 1])`` -> ``token_ids`` ``[B, N]`` (1D) or ``[B, h, w]`` (2D) and
    ``latents [B, N, token_dim]`` (normalised codes); ``decode(token_ids)`` -> pixels (unclamped)."""

    def __init__(self, config: GigaTokConfig):
        super().__init__(config)
        z = config.z_channels
        self.encoder = ConvEncoder(config.hidden_channels, config.encoder_channel_mult, config.num_res_blocks, z,
                                   attention_levels=(), mid_attention=False, dropout=config.dropout)
        one_d = config.token_layout == "1d"
        self.token_encoder = GigaTokQFormerEncoder(config) if one_d else GigaTokViTEncoder2D(config)
        self.quant_proj = nn.Linear(z, config.token_dim)
        self.quantizer = VectorQuantizer(config.codebook_size, config.token_dim, commitment_cost=config.commitment_cost,
                                         use_l2_norm=True, gradient_estimator=config.gradient_estimator)
        self.post_quant_proj = nn.Linear(config.token_dim, z)
        self.token_decoder = GigaTokQFormerDecoder(config) if one_d else GigaTokViTDecoder2D(config)
        self.decoder = GigaTokConvDecoder(config)
        self.post_init()

    def _encode(self, pixel_values):
        z = self.quant_proj(self.token_encoder(self.encoder(pixel_values)))  # [B, N, token_dim]
        q = self.quantizer(z)
        token_ids = q.indices
        if self.config.token_layout == "2d":
            token_ids = token_ids.view(token_ids.shape[0], self.config.grid_size, self.config.grid_size)
        return VisualTokenizerEncoderOutput(token_ids=token_ids, latents=q.quantized, quantizer_loss=q.loss,
                                            commitment_loss=q.commitment_loss, codebook_loss=q.codebook_loss)

    def _token_ids_to_latents(self, token_ids):
        return self.quantizer.indices_to_codes(token_ids.long().flatten(1))

    def _decode_latents(self, latents):
        return self.decoder(self.decoded_features(latents))

    def decoded_features(self, latents: torch.Tensor) -> torch.Tensor:
        """The token decoder's feature map ``[B, z_channels, h, w]`` (what the CNN decoder renders)."""
        return self.token_decoder(self.post_quant_proj(latents.to(self.dtype)))

    def semantic_features(self, latents: torch.Tensor) -> torch.Tensor:
        """The semantic-regularisation head's output ``[B, h*w, distill_dim]``: ``distill_mlp`` after decoder
        layer ``distill_depth`` (aligned with a frozen teacher's patch features in training)."""
        if self.config.distill_depth is None:
            raise ValueError("this GigaTok model has no semantic-regularisation head (distill_depth is None)")
        hidden = self.token_decoder(self.post_quant_proj(latents.to(self.dtype)), stop_at=self.config.distill_depth)
        return self.token_decoder.distill_mlp(hidden)
