"""VAR (FoundationVision/VAR): the multi-scale residual VQVAE tokenizer and the next-scale-prediction
transformer, ported from ``models/vqvae.py``, ``models/basic_vae.py``, ``models/var.py`` and
``models/basic_var.py``. Converters map the original key names (see ``convert_var.py``)."""

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

from ..base import VisualTokenizerEncoderOutput, VisualTokenizerMixin
from ..layers.conv_autoencoder import ConvDecoder, ConvEncoder, ConvLevel
from ..layers.drop_path import drop_path
from ..layers.rope import apply_interleaved_rope_heads_first
from ..layers.transformer import eager_attention_forward
from ..quantizers.multiscale import MultiScaleResidualQuantizer
from .configuration_var import VARConfig, VARVQVAEConfig

# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


class VARVQVAEPreTrainedModel(PreTrainedModel):
    config_class = VARVQVAEConfig
    base_model_prefix = "var_vqvae"
    main_input_name = "pixel_values"
    _no_split_modules = ["ConvResnetBlock", "ConvAttentionBlock"]
    # the output of every resolution level, encoder then decoder: feature maps [B, C, h, w]
    _can_record_outputs = {"hidden_states": ConvLevel}

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.GroupNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            # VectorQuantizer2's codebook init: U(-1/V, 1/V)
            bound = 1.0 / module.weight.shape[0]
            init.uniform_(module.weight, -bound, bound)


class VARVQVAE(VisualTokenizerMixin, VARVQVAEPreTrainedModel):
    """``encode(pixel_values [B, 3, H, W] in [-1, 1])`` -> ``token_ids [B, L]`` (scales concatenated
    coarse to fine, ``config.scale_offsets``) and ``latents`` = the quantized feature map f_hat
    ``[B, z_channels, pn, pn]`` (pn = ``patch_nums[-1]``).

    ``decode(token_ids, up_to_scale=s)`` renders the running reconstruction after scales 0..s
    (coarse-to-fine previews; VAR ``idxBl_to_img(..., same_shape=True)``); ``token_ids`` may also be a
    whole-scale prefix ``[B, scale_offsets[k]]``. Pixels are returned unclamped (the original clamps
    to [-1, 1] in ``fhat_to_img``; the image processor's ``postprocess`` clamps).
    """

    def __init__(self, config: VARVQVAEConfig):
        super().__init__(config)
        c = config
        self.encoder = ConvEncoder(c.channels, c.channel_mult, c.num_res_blocks, c.z_channels, dropout=c.dropout)
        pad = c.quant_conv_kernel_size // 2
        self.quant_conv = nn.Conv2d(c.z_channels, c.z_channels, c.quant_conv_kernel_size, padding=pad)
        self.quantizer = MultiScaleResidualQuantizer(
            codebook_size=c.codebook_size, dim=c.z_channels, patch_nums=tuple(c.patch_nums),
            commitment_cost=c.commitment_cost, use_l2_norm=c.use_l2_norm, residual_ratio=c.residual_ratio,
            num_residual_convs=c.num_residual_convs)
        self.post_quant_conv = nn.Conv2d(c.z_channels, c.z_channels, c.quant_conv_kernel_size, padding=pad)
        # VAR's (and taming's) decoder has one ResNet block more per level than the encoder
        self.decoder = ConvDecoder(c.channels, c.channel_mult, c.num_res_blocks + 1, c.z_channels, dropout=c.dropout)
        self.post_init()

    # -- VisualTokenizerMixin hooks -----------------------------------------------------------
    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(pixel_values))

    def _encode(self, pixel_values: torch.Tensor) -> VisualTokenizerEncoderOutput:
        q = self.quantizer(self._features(pixel_values))
        return VisualTokenizerEncoderOutput(token_ids=q.indices, latents=q.quantized, quantizer_loss=q.loss,
                                            commitment_loss=q.commitment_loss, codebook_loss=q.codebook_loss)

    def _token_ids_to_latents(self, token_ids: torch.LongTensor, up_to_scale: int | None = None) -> torch.Tensor:
        return self.quantizer.indices_to_codes(token_ids, up_to_scale=up_to_scale)

    def _decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(latents.to(self.dtype)))

    # -- public API ---------------------------------------------------------------------------
    def split_scales(self, token_ids: torch.LongTensor) -> list[torch.LongTensor]:
        """``[B, L]`` -> one ``[B, pn, pn]`` token map per scale."""
        return self.quantizer.split_scales(token_ids)

    def merge_scales(self, token_maps) -> torch.LongTensor:
        """One ``[B, pn, pn]`` token map per scale (coarse first) -> ``[B, L]``."""
        return self.quantizer.merge_scales(token_maps)

    # -- next-scale operations (what the VAR pipeline and trainer call; the quantizer stays internal) --
    def embed_scale(self, scale_index: int, tokens: torch.Tensor) -> torch.Tensor:
        """Codes ``h [B, z_channels, pn, pn]`` of scale ``scale_index`` from its token ids ``[B, pn*pn]``
        or from soft token weights ``[B, pn*pn, codebook_size]`` (a weighted sum of codebook rows)."""
        side = self.config.patch_nums[scale_index]
        if tokens.is_floating_point():
            h = tokens @ self.quantizer.embedding.weight.unsqueeze(0)
        else:
            h = self.quantizer.embedding(tokens)
        return h.transpose(1, 2).reshape(h.shape[0], -1, side, side)

    def next_scale_input(self, scale_index: int, f_hat: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adds scale ``scale_index``'s codes ``h`` to the running reconstruction ``f_hat``; returns the new
        ``f_hat`` and the next scale's input map (VAR ``get_next_autoregressive_input``)."""
        return self.quantizer.next_autoregressive_input(scale_index, f_hat, h)

    def teacher_forcing_input(self, token_ids: torch.LongTensor) -> torch.Tensor | None:
        """The transformer's inputs for scales 1..S-1 given all scales' token ids ``[B, L]``:
        ``[B, L - pn_0^2, z_channels]`` (VAR ``idxBl_to_var_input``); None with a single scale."""
        return self.quantizer.teacher_forcing_input(token_ids)


# --------------------------------------------------------------------------------------------
# Transformer
# --------------------------------------------------------------------------------------------


def add_scaled_attention_parts(attention: nn.Module, config, width: int, heads: int) -> None:
    """What VAR's self-attention and STAR's cross-attention hold after their bias-free projections: learned q and v
    biases, the cosine-attention logit scale (``attn_l2_norm``) or the 0.25 / sqrt(head_dim) scaling, ``out_proj``."""
    attention.q_bias = nn.Parameter(torch.zeros(width))
    attention.v_bias = nn.Parameter(torch.zeros(width))
    if config.attn_l2_norm:
        attention.logit_scale = nn.Parameter(torch.full((1, heads, 1, 1), 4.0).log())
        # log(100) computed as VAR does (a float32 log), so the clamp bites at the same value
        attention.max_logit_scale = torch.log(torch.tensor(100, device="cpu")).item()
        attention.scaling = 1.0
    else:
        attention.logit_scale = None
        attention.scaling = 0.25 / math.sqrt(attention.head_dim)
    attention.out_proj = nn.Linear(width, width)
    attention.out_proj._var_init_role = "residual_out"


def cosine_query_key(attention: nn.Module, query: torch.Tensor, key: torch.Tensor):
    """With a logit scale (``attn_l2_norm``): q and k L2-normalised, q scaled by ``exp(min(logit_scale, log 100))``."""
    if attention.logit_scale is not None:
        query = F.normalize(query, dim=-1).mul(attention.logit_scale.clamp_max(attention.max_logit_scale).exp())
        key = F.normalize(key, dim=-1)
    return query, key


@torch.no_grad()
def init_scaled_attention(attention: nn.Module) -> None:
    """VAR's initialisation of those parts: logit scale log(4), zero q and v biases."""
    if attention.logit_scale is not None:
        init.constant_(attention.logit_scale, math.log(4.0))
    init.zeros_(attention.q_bias)
    init.zeros_(attention.v_bias)


class VARAttention(nn.Module):
    """Self-attention with a fused bias-free ``qkv`` projection plus learned q and v biases (k has
    none). With ``attn_l2_norm`` it is cosine attention: q and k are L2-normalised and q is scaled by
    ``exp(min(logit_scale, log 100))`` per head; otherwise scores are scaled by 0.25 / sqrt(head_dim)."""

    def __init__(self, config: VARConfig, layer_idx: int):
        super().__init__()
        width, heads = config.hidden_size, config.num_attention_heads
        self.config, self.layer_idx = config, layer_idx
        self.num_heads, self.head_dim = heads, width // heads
        self.is_causal = False  # block-causal through the mask (training) or the KV cache (sampling)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        add_scaled_attention_parts(self, config, width, heads)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: DynamicCache | None = None, rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``rotary``: optional (cos, sin) ``[L, head_dim // 2]`` rotating q and k on interleaved pairs
        before the L2 normalisation (STAR's 2D RoPE)."""
        batch, length, width = hidden_states.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        qkv = F.linear(hidden_states, self.qkv.weight, bias).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, L, d] each
        if rotary is not None:
            query, key = (apply_interleaved_rope_heads_first(x, *rotary) for x in (query, key))
        query, key = cosine_query_key(self, query, key)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        output, weights = attention(self, query, key, value, attention_mask, scaling=self.scaling,
                                    dropout=self.config.attention_dropout if self.training else 0.0, is_causal=False)
        return self.out_proj(output.reshape(batch, length, width)), weights


class VARMLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden_states)))


class VARBlock(GradientCheckpointingLayer):
    """``x += gamma1 * attn(LN(x) * (1 + scale1) + shift1)``; ``x += gamma2 * mlp(LN(x) * (1 + scale2) + shift2)``.

    The six modulations come from ``adaln(SiLU(condition))`` in the order gamma1, gamma2, scale1,
    scale2, shift1, shift2; with shared AdaLN, ``condition`` is already the shared projection
    ``[B, 1, 6, C]`` and the block adds its learned ``adaln_table``.
    """

    def __init__(self, config: VARConfig, layer_idx: int, drop_path: float):
        super().__init__()
        width = config.hidden_size
        self.width, self.drop_path = width, drop_path
        self.norm = nn.LayerNorm(width, eps=config.norm_eps, elementwise_affine=False)
        self.attention = VARAttention(config, layer_idx)
        self.mlp = VARMLP(width, round(width * config.mlp_ratio))
        self.mlp.fc2._var_init_role = "residual_out"
        self.dropout = nn.Dropout(config.drop_rate)
        if config.shared_adaln:
            self.adaln_table = nn.Parameter(torch.zeros(1, 1, 6, width))
            self.adaln = None
        else:
            self.adaln_table = None
            self.adaln = nn.Linear(width, 6 * width)
            self.adaln._var_init_role = "block_adaln"

    def forward(self, hidden_states: torch.Tensor, condition: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: DynamicCache | None = None) -> torch.Tensor:
        if self.adaln is None:
            modulation = self.adaln_table + condition
        else:
            modulation = self.adaln(F.silu(condition)).view(-1, 1, 6, self.width)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = modulation.unbind(2)
        h = self.norm(hidden_states).mul(scale1.add(1)).add_(shift1)
        h = self.dropout(self.attention(h, attention_mask, cache)[0]).mul_(gamma1)
        hidden_states = hidden_states + drop_path(h, self.drop_path, self.training)
        h = self.norm(hidden_states).mul(scale2.add(1)).add_(shift2)
        h = self.dropout(self.mlp(h)).mul(gamma2)
        return hidden_states + drop_path(h, self.drop_path, self.training)


def _scale_layout(patch_nums) -> tuple[torch.LongTensor, torch.Tensor]:
    """The scale index of every token ``[L]`` and the block-causal additive mask ``[1, 1, L, L]``
    (0 where the key's scale <= the query's scale, -inf elsewhere)."""
    levels = torch.cat([torch.full((p * p,), k, dtype=torch.long) for k, p in enumerate(patch_nums)])
    mask = torch.where(levels[:, None] >= levels[None, :], 0.0, -torch.inf)
    return levels, mask[None, None]


class VARPreTrainedModel(PreTrainedModel):
    config_class = VARConfig
    base_model_prefix = "var"
    main_input_name = "class_labels"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VARBlock"]
    _supports_sdpa = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": VARBlock, "attentions": OutputRecorder(VARAttention, index=1)}

    @torch.no_grad()
    def _init_weights(self, module):
        """VAR's ``init_weights``: truncated normals of ``initializer_range`` (VAR init_std), zero biases,
        the head scaled by ``init_head``, AdaLN scales/shifts by ``init_adaln`` and gates by
        ``init_adaln_gamma``, residual output projections by 1/sqrt(2 * depth). Linear layers with a
        special scale carry a ``_var_init_role`` tag set at construction."""
        cfg = self.config
        std = cfg.initializer_range
        if isinstance(module, VARTransformer):
            # non-persistent buffers are not in checkpoints: rebuild them wherever the model was created
            levels, mask = _scale_layout(cfg.patch_nums)
            init.copy_(module.token_levels, levels)
            init.copy_(module.block_causal_mask, mask)
            init.trunc_normal_(module.start_position_embedding, std=std)
            init.trunc_normal_(module.position_embedding, std=std)
        elif isinstance(module, VARBlock) and module.adaln_table is not None:
            if not getattr(module.adaln_table, "_is_hf_initialized", False):
                table = nn.init.normal_(torch.empty_like(module.adaln_table), std=module.width ** -0.5)
                init.copy_(module.adaln_table, _scale_adaln_rows(table, 2, cfg))
        elif isinstance(module, VARAttention):
            init_scaled_attention(module)
        elif isinstance(module, nn.Linear):
            role = getattr(module, "_var_init_role", None)
            if role == "block_adaln":  # rows: gamma1, gamma2 | scale1, scale2, shift1, shift2
                if not getattr(module.weight, "_is_hf_initialized", False):  # (loaded weights are left alone)
                    weight = nn.init.trunc_normal_(torch.empty_like(module.weight), std=std)
                    init.copy_(module.weight, _scale_adaln_rows(weight.view(6, -1, weight.shape[-1]), 0, cfg).view_as(weight))
            else:
                scale = {"head": cfg.init_head, "head_adaln": cfg.init_adaln, "residual_out": 1 / math.sqrt(2 * cfg.depth)}.get(role, 1.0)
                init.trunc_normal_(module.weight, std=std * scale)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.trunc_normal_(module.weight, std=std)


def _scale_adaln_rows(modulation: torch.Tensor, dim: int, cfg: VARConfig) -> torch.Tensor:
    """Scale the six AdaLN modulations along ``dim``: the two gates by ``init_adaln_gamma``, the rest by ``init_adaln``."""
    gates, rest = modulation.narrow(dim, 0, 2), modulation.narrow(dim, 2, 4)
    return torch.cat([gates * cfg.init_adaln_gamma, rest * cfg.init_adaln], dim=dim)


def check_scale_inputs(cfg, first_length: int, batch: int, inputs, scale_index, labels, cache, start_token: str) -> None:
    """The checks a next-scale transformer's forward shares (VAR and its text-conditional variant STAR): teacher
    forcing over the whole sequence, or one scale at a time with that scale's inputs."""
    if scale_index is None:
        if cache is not None and cache.get_seq_length() > 0:
            raise ValueError("teacher forcing runs over the whole sequence: pass an empty cache (or none), "
                             "or scale_index=k to continue scale by scale")
        expected = cfg.num_tokens - first_length
        if expected == 0 and inputs is not None:
            raise ValueError("with a single scale there are no teacher-forcing inputs: pass inputs=None")
        if expected and (not isinstance(inputs, torch.Tensor) or inputs.ndim != 3 or inputs.shape[0] != batch
                         or inputs.shape[2] != cfg.z_channels or not 1 <= inputs.shape[1] <= expected):
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else None
            raise ValueError(f"inputs must be the teacher-forcing input [{batch}, {expected}, {cfg.z_channels}] "
                             f"(VARVQVAE.teacher_forcing_input), got {shape}")
        if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != (batch, (inputs.shape[1] if inputs is not None else 0) + first_length)):
            raise ValueError(f"labels must be token ids [{batch}, L] matching the logits")
    else:
        if isinstance(scale_index, bool) or not isinstance(scale_index, int) or not 0 <= scale_index < cfg.num_scales:
            raise ValueError(f"scale_index must be an int in [0, {cfg.num_scales - 1}], got {scale_index!r}")
        if labels is not None:
            raise ValueError("labels (a training loss) are only supported with teacher forcing (scale_index=None)")
        pn = cfg.patch_nums[scale_index]
        if scale_index == 0:
            if inputs is not None:
                raise ValueError(f"scale 0 starts from {start_token}: pass inputs=None")
        elif (not isinstance(inputs, torch.Tensor) or tuple(inputs.shape) != (batch, pn * pn, cfg.z_channels)):
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else None
            raise ValueError(f"inputs of scale {scale_index} must have shape [{batch}, {pn * pn}, {cfg.z_channels}], got {shape}")


class VARTransformer(VARPreTrainedModel):
    """Next-scale prediction: logits over the VQVAE's codes for every token of every scale.

    Teacher forcing (training, parity): ``forward(class_labels [B], inputs [B, L - pn_0^2, z_channels])``
    with ``inputs`` the VQVAE's ``teacher_forcing_input(token_ids)``; attention is
    block-causal across scales; returns logits ``[B, L, codebook_size]``.

    Sampling, one scale at a time: ``forward(class_labels, inputs, scale_index=k, cache=cache)``
    with ``inputs [B, pn_k^2, z_channels]`` (None at k = 0) attends to the cached keys of scales < k
    and returns the logits of scale k ``[B, pn_k^2, V]`` and the cache (a transformers ``DynamicCache``).

    ``drop_labels`` (bool ``[B]``) swaps in the null class (guidance); in training, labels are also
    dropped with probability ``class_label_dropout``.
    """

    def __init__(self, config: VARConfig):
        super().__init__(config)
        width, nums = config.hidden_size, config.patch_nums
        self.first_length = nums[0] ** 2
        self.scale_offsets = [sum(p * p for p in nums[:k]) for k in range(len(nums) + 1)]
        self.word_embed = nn.Linear(config.z_channels, width)
        self.class_embedding = nn.Embedding(config.num_classes + 1, width)
        self.start_position_embedding = nn.Parameter(torch.zeros(1, self.first_length, width))
        self.position_embedding = nn.Parameter(torch.zeros(1, config.num_tokens, width))
        self.level_embedding = nn.Embedding(len(nums), width)
        levels, mask = _scale_layout(nums)
        self.register_buffer("token_levels", levels, persistent=False)
        self.register_buffer("block_causal_mask", mask, persistent=False)
        self.shared_adaln = nn.Linear(width, 6 * width) if config.shared_adaln else None
        rates = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]  # linear, as VAR
        self.blocks = nn.ModuleList(VARBlock(config, i, rates[i]) for i in range(config.depth))
        self.head_norm = nn.LayerNorm(width, eps=config.norm_eps, elementwise_affine=False)
        self.head_adaln = nn.Linear(width, 2 * width)
        self.head_adaln._var_init_role = "head_adaln"
        self.lm_head = nn.Linear(width, config.codebook_size)
        self.lm_head._var_init_role = "head"
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        """The embedding of the main input, ``class_labels`` (the last row is the null class)."""
        return self.class_embedding

    def set_input_embeddings(self, value):
        self.class_embedding = value

    def get_output_embeddings(self):
        return None  # the head predicts the tokenizer's codes, not class labels

    def resize_token_embeddings(self, *args, **kwargs):
        raise ValueError(
            "VAR's input embedding holds num_classes + 1 class labels (the null class last) and its head the "
            "tokenizer's codes: build a new config instead of resizing")

    # -- pieces -------------------------------------------------------------------------------
    def class_condition(self, class_labels: torch.LongTensor, drop_labels: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Class embeddings ``[B, C]`` (the AdaLN condition and the start token), with the null class
        where ``drop_labels`` is set (and, in training, with probability ``class_label_dropout``)."""
        labels = class_labels
        if self.training and self.config.class_label_dropout > 0:
            random_drop = torch.rand(labels.shape, generator=generator, device=labels.device) < self.config.class_label_dropout
            drop_labels = random_drop if drop_labels is None else (drop_labels | random_drop)
        if drop_labels is not None:
            labels = torch.where(drop_labels, torch.full_like(labels, self.config.null_class_id), labels)
        return self.class_embedding(labels)

    def level_position_embedding(self) -> torch.Tensor:
        """``level_embedding + position_embedding`` for every token ``[1, L, C]``."""
        return self.level_embedding(self.token_levels)[None] + self.position_embedding

    def logits(self, hidden_states: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        scale, shift = self.head_adaln(F.silu(condition)).view(-1, 1, 2, hidden_states.shape[-1]).unbind(2)
        return self.lm_head(self.head_norm(hidden_states).mul(scale.add(1)).add_(shift)).float()

    # -- forward ------------------------------------------------------------------------------
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # transformers' older name for the cache
    @capture_outputs
    def forward(self, class_labels: torch.LongTensor, inputs: torch.Tensor | None = None,
                drop_labels: torch.Tensor | None = None, scale_index: int | None = None,
                cache: DynamicCache | None = None, use_cache: bool | None = None,
                labels: torch.LongTensor | None = None, generator: torch.Generator | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None) -> CausalLMOutputWithPast | tuple:
        """See the class docstring. ``labels`` (token ids ``[B, L]``, teacher forcing only) gives the
        mean cross-entropy ``loss``."""
        batch = self._check_inputs(class_labels, inputs, drop_labels, scale_index, labels, cache)
        condition = self.class_condition(class_labels, drop_labels, generator)
        if scale_index is None:
            start = condition[:, None].expand(batch, self.first_length, -1) + self.start_position_embedding.expand(batch, -1, -1)
            hidden = start if inputs is None else torch.cat((start, self.word_embed(inputs.to(self.dtype))), dim=1)
            length = hidden.shape[1]
            hidden = hidden + (self.level_embedding(self.token_levels[:length].expand(batch, -1)) + self.position_embedding[:, :length])
            mask = self.block_causal_mask[:, :, :length, :length].to(hidden.dtype)
            if use_cache and cache is None:
                cache = DynamicCache()
        else:
            begin, end = self.scale_offsets[scale_index], self.scale_offsets[scale_index + 1]
            level_position = self.level_position_embedding()[:, begin:end]
            if scale_index == 0:
                hidden = condition[:, None].expand(batch, self.first_length, -1) + self.start_position_embedding.expand(batch, -1, -1) + level_position
            else:
                hidden = self.word_embed(inputs.to(self.dtype)) + level_position
            mask = None  # the cache holds exactly the earlier scales: full attention is block-causal
            if cache is None:
                cache = DynamicCache()
        block_condition = condition if self.shared_adaln is None else self.shared_adaln(F.silu(condition)).view(-1, 1, 6, self.config.hidden_size)
        hidden = hidden.to(self.dtype)
        block_condition = block_condition.to(self.dtype)
        for block in self.blocks:
            hidden = block(hidden, block_condition, mask, cache)
        logits = self.logits(hidden, condition)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache)  # (capture_outputs applies return_dict)

    def _check_inputs(self, class_labels, inputs, drop_labels, scale_index, labels, cache) -> int:
        cfg = self.config
        if not isinstance(class_labels, torch.Tensor) or class_labels.is_floating_point() or class_labels.ndim != 1:
            raise ValueError(f"class_labels must be an integer tensor [B] with values in [0, {cfg.num_classes - 1}]")
        batch = class_labels.shape[0]
        if batch == 0:
            raise ValueError("class_labels is an empty batch: expected at least one label")
        # (the value check reads the tensor: skipped under torch.compile, where it would break the graph)
        if not torch.compiler.is_compiling() and (int(class_labels.min()) < 0 or int(class_labels.max()) > cfg.null_class_id):
            raise ValueError(f"class_labels must lie in [0, {cfg.num_classes - 1}] (or {cfg.null_class_id}, the null class), "
                             f"got values in [{int(class_labels.min())}, {int(class_labels.max())}]")
        if drop_labels is not None and (not isinstance(drop_labels, torch.Tensor) or drop_labels.shape != (batch,)):
            raise ValueError(f"drop_labels must be a bool tensor of shape [{batch}]")
        check_scale_inputs(cfg, self.first_length, batch, inputs, scale_index, labels, cache, "the class token")
        return batch
