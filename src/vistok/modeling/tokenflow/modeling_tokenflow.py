"""TokenFlow (ByteFlow-AI/TokenFlow, "TokenFlow: Unified Image Tokenizer for Multimodal Understanding and
Generation"): a tokenizer whose tokens carry both semantic and pixel features.

Ported from ``tokenflow/tokenizer/vq_model.py`` (``TokenFlow.encode / decode / decode_code``): a semantic
branch (a transformers CLIP or SigLIP vision tower + a task layer) and a pixel branch (the LlamaGen/taming
conv encoder of ``layers/conv_autoencoder.py``) quantized together by the shared-mapping multi-scale
quantizer (``quantizers/shared_mapping.py``); the pixel part decodes to an image through the conv decoder,
the semantic part to teacher features through a small ViT (VQKD's decoder; a training target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..base import VisualTokenizerEncoderOutput, VisualTokenizerMixin
from ..layers.conv_autoencoder import ConvDecoder, ConvEncoder
from ..layers.transformer import Attention, TransformerBlock
from ..quantizers import SharedMappingMultiScaleQuantizer
from transformers.models.llama.modeling_llama import (LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaModel,
                                                      LlamaPreTrainedModel, LlamaRMSNorm, LlamaRotaryEmbedding,
                                                      apply_rotary_pos_emb)
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple
from transformers.models.llama.modeling_llama import eager_attention_forward as llama_eager_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_tokenflow import TokenFlowConfig, TokenFlowT2IConfig


def interpolate_position_embedding(position_embedding: torch.Tensor, grid: int) -> torch.Tensor:
    """``[1 + n*n, C]`` (a class position then an ``n x n`` grid) -> ``[1 + grid*grid, C]``, as OpenAI CLIP's
    and VQKD's ``interpolate_pos_encoding`` in TokenFlow do it (DINO's recipe): bicubic with the scale factor
    ``(grid + 0.1) / n`` (the factor itself, not the size ratio, sets the sampling positions)."""
    side = math.isqrt(position_embedding.shape[0] - 1)
    if side == grid:
        return position_embedding
    dim = position_embedding.shape[-1]
    patch = position_embedding[1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    factor = (grid + 0.1) / side
    patch = F.interpolate(patch, scale_factor=(factor, factor), mode="bicubic")
    if patch.shape[-1] != grid:
        raise ValueError(f"cannot interpolate a {side}x{side} position grid to {grid}x{grid}")
    return torch.cat([position_embedding[:1], patch.permute(0, 2, 3, 1).reshape(grid * grid, dim)], dim=0)


def tower_tokens(tower: nn.Module, kind: str, pixel_values: torch.Tensor) -> torch.Tensor:
    """A transformers CLIP / SigLIP vision tower's patch tokens ``[B, N, width]`` as TokenFlow reads its towers.
    ``clip``: OpenAI CLIP's ``VisionTransformer`` with ``return_patch_tokens`` (position embeddings interpolated to
    the input's grid, every layer, ``ln_post``, class token dropped), on ``pixel_values`` as given; ``siglip``:
    TokenFlow's ``ScalingLayerForSigLip`` on ``pixel_values`` in [-1, 1], then ``hidden_states[-2]`` (every layer
    but the last). ``tower``: a CLIPVisionModel / SiglipVisionModel or a full model's ``vision_model``."""
    if kind == "clip":
        emb = tower.embeddings
        patches = emb.patch_embedding(pixel_values.to(emb.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        hidden = torch.cat([emb.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1), patches], dim=1)
        grid = math.isqrt(patches.shape[1])
        hidden = hidden + interpolate_position_embedding(emb.position_embedding.weight, grid).to(hidden.dtype)
        hidden = tower.pre_layrnorm(hidden)
        for layer in tower.encoder.layers:
            hidden = layer(hidden, None)
        return tower.post_layernorm(hidden)[:, 1:]
    if kind != "siglip":
        raise ValueError(f"unknown semantic tower kind {kind!r} (clip or siglip)")
    scaled = (((pixel_values + 1.0) * 127.5).clamp(0, 255.0) / 255.0 - 0.5) / 0.5
    hidden = tower.embeddings(scaled.to(tower.embeddings.patch_embedding.weight.dtype))
    for layer in tower.encoder.layers[:-1]:
        hidden = layer(hidden, None)
    return hidden


class TokenFlowSemanticDecoder(nn.Module):
    """VQKD's decoder ViT (TokenFlow ``decoder_vqkd``): the semantic code map ``[B, C, h, w]`` -> a 1x1 conv
    patch embedding, a class token and a learned position embedding (interpolated when the grid differs),
    pre-LayerNorm blocks (eps 1e-6, exact GELU), a final LayerNorm over the patch tokens (``fc_norm``)."""

    def __init__(self, config: TokenFlowConfig):
        super().__init__()
        width = config.semantic_decoder_hidden_size
        self.patch_embed = nn.Conv2d(config.semantic_code_dim, width, 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.semantic_decoder_grid ** 2 + 1, width))
        self.layers = nn.ModuleList(TransformerBlock(config, width, config.semantic_decoder_num_heads, eps=1e-6)
                                    for _ in range(config.semantic_decoder_num_layers))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        hidden = self.patch_embed(codes).flatten(2).transpose(1, 2)
        hidden = torch.cat([self.cls_token.expand(hidden.shape[0], -1, -1), hidden], dim=1)
        hidden = hidden + interpolate_position_embedding(self.pos_embed[0], codes.shape[-1]).unsqueeze(0)
        for layer in self.layers:
            hidden = layer(hidden)
        return self.norm(hidden[:, 1:])


def _task_layer(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, out))


class TokenFlowPreTrainedModel(PreTrainedModel):
    config_class = TokenFlowConfig
    base_model_prefix = "tokenflow"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["ConvLevel", "ConvMidBlock", "TransformerBlock", "CLIPEncoderLayer", "SiglipEncoderLayer"]
    _supports_sdpa = True
    # hidden states / attentions: those of the semantic tower (a transformers CLIP/SigLIP model records its own
    # layers when capture is on: its input, then each layer's output, [B, N + 1, width] for CLIP) and of the
    # semantic decoder's blocks when they run (decode_semantic); the conv branch's feature maps are not recorded,
    # so that every hidden state is a token sequence
    _can_record_outputs = {"hidden_states": TransformerBlock, "attentions": OutputRecorder(Attention, index=1)}

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, TokenFlowSemanticDecoder):
            init.trunc_normal_(module.cls_token, std=std)
            init.trunc_normal_(module.pos_embed, std=std)
        elif isinstance(module, SharedMappingMultiScaleQuantizer):
            # the original's uniform(-1/K, 1/K) (lookups normalise the rows)
            for codebook in module.codebooks:
                init.uniform_(codebook.weight, -1.0 / module.codebook_size, 1.0 / module.codebook_size)


class TokenFlowModel(VisualTokenizerMixin, TokenFlowPreTrainedModel):
    """``encode(pixels [B, 3, S, S] in [-1, 1])`` -> ``token_ids [B, L]`` (scales concatenated coarse to fine,
    ``config.scale_offsets``) and ``latents`` = the quantized feature map ``[B, code_dim, pn, pn]`` (semantic
    channels first). ``decode(token_ids, up_to_scale=s)`` renders pixels from the codes of scales 0..s.

    ``get_image_features(pixels)`` returns the features an understanding model consumes (TokenFlow's LLaVA
    vision tower: the quantized map flattened, ``[B, pn*pn, code_dim]``); ``encode_semantic(pixels)`` the
    semantic branch's features before quantization and ``decode_semantic(latents)`` (= ``semantic_features``,
    the trainer's semantic head) the reconstructed teacher features.
    """

    def __init__(self, config: TokenFlowConfig):
        super().__init__(config)
        tower = config.semantic_encoder_config
        self.semantic_encoder = AutoModel.from_config(tower)
        self.semantic_in = _task_layer(tower.hidden_size, config.semantic_code_dim)
        mult, z = config.pixel_channel_mult, config.pixel_z_channels
        self.encoder = ConvEncoder(config.pixel_channels, mult, config.pixel_num_res_blocks, z, dropout=config.dropout)
        self.quant_conv = nn.Conv2d(z, config.pixel_code_dim, 1)
        self.quantizer = SharedMappingMultiScaleQuantizer(
            config.codebook_size, (config.semantic_code_dim, config.pixel_code_dim), config.patch_nums,
            commitment_cost=config.commitment_cost, entropy_loss_ratio=config.entropy_loss_ratio)
        self.post_quant_conv = nn.Conv2d(config.pixel_code_dim, z, 1)
        # like LlamaGen's, the original decoder has one ResNet block more per level than its num_res_blocks
        self.decoder = ConvDecoder(config.decoder_channels, mult, config.decoder_num_res_blocks + 1, z,
                                   dropout=config.dropout)
        self.semantic_decoder = TokenFlowSemanticDecoder(config)
        self.semantic_out = _task_layer(config.semantic_decoder_hidden_size, config.semantic_feature_dim)
        self.post_init()

    # -- branches -----------------------------------------------------------------------------
    def _tower_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The semantic tower's patch tokens ``[B, N, width]`` (see :class:`TokenFlowConfig`; the CLIP tower reads
        the pixels in [-1, 1] as they are, as the original's)."""
        return tower_tokens(self.semantic_encoder, self.config.semantic_encoder_type, pixel_values)

    def encode_semantic(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The semantic branch before quantization: tower tokens through ``semantic_in``,
        ``[B, N, semantic_code_dim]`` (TokenFlow's ``vqkd_feature``)."""
        self.check_pixel_values(pixel_values)
        return self._semantic_codes_in(pixel_values.to(self.dtype))

    def _semantic_codes_in(self, pixel_values):
        tokens = self._tower_tokens(pixel_values)
        return self.semantic_in(tokens.to(self.semantic_in[-1].weight.dtype))

    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The map the quantizer reads: ``[B, semantic_code_dim + pixel_code_dim, pn, pn]``."""
        semantic = self._semantic_codes_in(pixel_values)
        side = math.isqrt(semantic.shape[1])
        semantic = semantic.transpose(1, 2).reshape(semantic.shape[0], -1, side, side)
        pixels = pixel_values
        size = self.config.pixel_input_size
        if pixels.shape[-1] != size:
            pixels = F.interpolate(pixels, size=(size, size), mode="bicubic")
        return torch.cat([semantic, self.quant_conv(self.encoder(pixels))], dim=1)

    # -- VisualTokenizerMixin hooks ------------------------------------------------------------
    def _encode(self, pixel_values: torch.Tensor) -> VisualTokenizerEncoderOutput:
        q = self.quantizer(self._features(pixel_values))
        return VisualTokenizerEncoderOutput(token_ids=q.indices, latents=q.quantized.to(pixel_values.dtype),
                                            quantizer_loss=q.loss, commitment_loss=q.commitment_loss,
                                            codebook_loss=q.codebook_loss)

    def _token_ids_to_latents(self, token_ids: torch.LongTensor, up_to_scale: int | None = None) -> torch.Tensor:
        return self.quantizer.indices_to_codes(token_ids.long(), up_to_scale=up_to_scale)

    def _decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        pixel_part = latents[:, self.config.semantic_code_dim:].to(self.dtype)
        image = self.decoder(self.post_quant_conv(pixel_part))
        size = self.config.image_size
        if image.shape[-1] != size:  # the SigLIP release decodes 432 px and resizes to 384
            image = F.interpolate(image, size=(size, size), mode="bicubic")
        return image

    def check_latents(self, latents) -> None:
        side, dim = self.config.patch_nums[-1], self.config.code_dim
        if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
            raise TypeError(f"latents must be a floating-point tensor [B, {dim}, {side}, {side}]")
        if latents.ndim != 4 or tuple(latents.shape[1:]) != (dim, side, side) or latents.shape[0] == 0:
            raise ValueError(f"latents must have shape [B, {dim}, {side}, {side}], got {tuple(latents.shape)}")
        if not torch.isfinite(latents).all():
            raise ValueError("latents contains NaN or inf values")

    # -- public API ---------------------------------------------------------------------------
    @capture_outputs(tie_last_hidden_states=False)
    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """What TokenFlow's understanding model (its LLaVA vision tower) consumes, as transformers' multimodal
        models return image features: ``last_hidden_state`` = the quantized semantic + pixel codes summed over
        the scales, ``[B, pn*pn, code_dim]`` row-major (a projector maps them to the LLM width); no pooled
        output. ``output_hidden_states`` / ``output_attentions`` / ``return_dict`` as in transformers (the
        semantic tower's)."""
        latents = self.encode(pixel_values).latents
        return BaseModelOutputWithPooling(last_hidden_state=latents.flatten(2).transpose(1, 2), pooler_output=None)

    def decode_semantic(self, latents: torch.Tensor) -> torch.Tensor:
        """The teacher features reconstructed from the semantic part of ``latents``: ``[B, pn*pn,
        semantic_feature_dim]`` (TokenFlow ``decode``'s first output; the semantic distillation target)."""
        self.check_latents(latents)
        semantic = latents[:, : self.config.semantic_code_dim].to(self.dtype)
        return self.semantic_out(self.semantic_decoder(semantic))

    def teacher_forcing_input(self, token_ids: torch.LongTensor) -> torch.Tensor:
        """TokenFlow-t2i's image inputs for scales 1..S-1 ``[B, L - pn_0^2, code_dim]`` (the chained code sums)."""
        return self.quantizer.teacher_forcing_input(token_ids).to(self.dtype)

    def semantic_features(self, latents: torch.Tensor) -> torch.Tensor:
        """The semantic head ``vistok train tokenizer``'s semantic regularisation distils (``loss.semantic_weight``
        against a frozen teacher's patch features): :meth:`decode_semantic` of the quantized latents, as TokenFlow
        trains its semantic decoder against its teacher (``1 - cos``)."""
        return self.decode_semantic(latents)

    def semantic_distillation_loss(self, teacher: nn.Module, pixel_values: torch.Tensor,
                                   latents: torch.Tensor) -> torch.Tensor | None:
        """TokenFlow's semantic training term against a frozen CLIP (``CLIPModel``, with its projection) or SigLIP
        teacher, as ``tokenizer/vq_loss.py`` computes it; None for another teacher (``vistok train tokenizer``
        then uses its generic target). See :func:`.training_tokenflow.semantic_distillation_loss`."""
        from .training_tokenflow import semantic_distillation_loss

        return semantic_distillation_loss(self, teacher, pixel_values, latents)

    def split_scales(self, token_ids: torch.LongTensor) -> list[torch.LongTensor]:
        """``[B, L]`` -> one ``[B, pn, pn]`` token map per scale."""
        return self.quantizer.split_scales(token_ids)

    def merge_scales(self, scales) -> torch.LongTensor:
        return self.quantizer.merge_scales(scales)

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return tuple(self.config.patch_nums)


# -- TokenFlow-t2i ---------------------------------------------------------------------------------------------
class TokenFlowQKNorm(nn.Module):
    """TokenFlow-t2i's ``QKNorm``: an RMSNorm over the head dimension of the queries and of the keys."""

    def __init__(self, head_dim: int, eps: float):
        super().__init__()
        self.query_norm = LlamaRMSNorm(head_dim, eps=eps)
        self.key_norm = LlamaRMSNorm(head_dim, eps=eps)


class TokenFlowT2IAttention(LlamaAttention):
    """transformers' Llama attention with TokenFlow's QK-norm applied to the per-head queries and keys before
    RoPE (``LlamaAttention`` in t2i/.../modeling_llama.py calls ``self.qknorm``)."""

    def __init__(self, config: TokenFlowT2IConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.qknorm = TokenFlowQKNorm(self.head_dim, config.qk_norm_eps)

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None, **kwargs):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        query = self.qknorm.query_norm(query).to(value.dtype)
        key = self.qknorm.key_norm(key).to(value.dtype)
        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx, kwargs=kwargs)
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation,
                                                                    llama_eager_attention_forward)
        output, weights = attention_interface(self, query, key, value, attention_mask,
                                              dropout=0.0 if not self.training else self.attention_dropout,
                                              scaling=self.scaling, **kwargs)
        return self.o_proj(output.reshape(*input_shape, -1).contiguous()), weights


class TokenFlowT2IDecoderLayer(LlamaDecoderLayer):
    """Llama's decoder layer as TokenFlow-t2i modified it: the RMSNorms moved *after* the attention and the MLP
    (``x + norm(attn(x))``, then ``x + norm(mlp(x))``; no pre-norm), with the QK-norm attention."""

    def __init__(self, config: TokenFlowT2IConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.self_attn = TokenFlowT2IAttention(config, layer_idx)

    def forward(self, hidden_states, attention_mask=None, position_ids=None, cache=None, use_cache=False,
                position_embeddings=None, **kwargs):
        attended, _ = self.self_attn(hidden_states=hidden_states, attention_mask=attention_mask, position_ids=position_ids,
                                     cache=cache, use_cache=use_cache, position_embeddings=position_embeddings, **kwargs)
        hidden_states = hidden_states + self.input_layernorm(attended)
        return hidden_states + self.post_attention_layernorm(self.mlp(hidden_states))


def _projector(config: TokenFlowT2IConfig) -> nn.Module:
    """LLaVA's ``build_vision_projector``: linear, ``mlpNx_gelu`` or identity, from ``code_dim`` to the width."""
    if config.projector_type == "identity":
        return nn.Identity()
    if config.projector_type == "linear":
        return nn.Linear(config.code_dim, config.hidden_size)
    depth = int(config.projector_type[3])
    modules = [nn.Linear(config.code_dim, config.hidden_size)]
    for _ in range(1, depth):
        modules += [nn.GELU(), nn.Linear(config.hidden_size, config.hidden_size)]
    return nn.Sequential(*modules)


class TokenFlowT2IPreTrainedModel(LlamaPreTrainedModel):
    config_class = TokenFlowT2IConfig
    _no_split_modules = ["TokenFlowT2IDecoderLayer"]
    _can_record_outputs = {"hidden_states": TokenFlowT2IDecoderLayer, "attentions": TokenFlowT2IAttention}

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, TokenFlowT2IModel):  # LlavaMetaModel's trunc_normal(std = sqrt(1 / (3 * width)))
            std = math.sqrt(1 / self.config.hidden_size / 3)
            init.trunc_normal_(module.position_embedding, std=std)
            init.trunc_normal_(module.level_embedding.weight, std=std)


class TokenFlowT2IModel(TokenFlowT2IPreTrainedModel, LlamaModel):
    """The Llama decoder of TokenFlow-t2i with its image-input embeddings (LLaVA ``LlavaLlamaModel``):
    ``mm_projector``, ``level_embedding`` (``lvl_embed``: 0 text, s+1 scale s) and ``position_embedding``
    (``pos_1LC``, one row per image token)."""

    def __init__(self, config: TokenFlowT2IConfig):
        PreTrainedModel.__init__(self, config)  # LlamaModel's modules, with TokenFlow's decoder layers
        self.padding_idx, self.vocab_size = config.pad_token_id, config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(TokenFlowT2IDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.mm_projector = _projector(config)
        self.level_embedding = nn.Embedding(config.num_scales + 1, config.hidden_size)
        self.position_embedding = nn.Parameter(torch.zeros(config.num_tokens, config.hidden_size))
        self.post_init()


@dataclass
class TokenFlowT2IOutput(ModelOutput):
    """logits: fp32 ``[B, P + n, vocab]`` over the text and image vocabulary (image token i is id
    ``image_token_start + i``); position ``P - 1`` (``<img>``) predicts scale 0 and image input j predicts the
    token ``pn_0^2 + j``. attention_mask: the 4D additive mask used."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    attention_mask: torch.FloatTensor | None = None
    cache: object | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class TokenFlowT2IForCausalLM(TokenFlowT2IPreTrainedModel, LlamaForCausalLM):
    """TokenFlow-t2i (ByteFlow-AI/TokenFlow ``LlavaLlamaForCausalLM``) on transformers' Llama.

    ``forward(input_ids [B, P], image_inputs [B, n, code_dim] | None, attention_mask [B, P] | None)``: the prompt
    (ending with ``<img>``) and the image inputs of the first scales after scale 0 (``n`` a whole-scale count:
    0, pn_1^2, pn_1^2 + pn_2^2, ... up to ``num_tokens - pn_0^2``; the tokenizer's
    ``quantizer.teacher_forcing_input`` gives all of them); pad positions of the prompt (``pad_token_id``, or
    ``attention_mask == 0``) are masked as keys. ``labels`` (image codes ``[B, n + pn_0^2]``, -100 ignored) give
    the next-scale cross-entropy over the image tokens. ``inputs_embeds`` may replace the prompt's token
    embeddings. With a 4D ``attention_mask`` the inputs are taken as already built (``build_inputs``; the
    pipeline's cached steps).
    """

    _tied_weights_keys = {}

    def __init__(self, config: TokenFlowT2IConfig):
        PreTrainedModel.__init__(self, config)  # LlamaForCausalLM's modules around TokenFlow's decoder
        self.model = TokenFlowT2IModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    # -- inputs -------------------------------------------------------------------------------
    def _image_levels(self, n: int, device) -> torch.LongTensor:
        cfg = self.config
        levels = torch.cat([torch.full((p * p,), k + 1, device=device) for k, p in enumerate(cfg.patch_nums)])
        return levels[cfg.patch_nums[0] ** 2:][:n]

    def build_inputs(self, input_ids: torch.LongTensor | None = None, image_inputs: torch.Tensor | None = None,
                     attention_mask: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs_embeds ``[B, P + n, width]``, additive 4D mask ``[B, 1, P + n, P + n]``), as the original's
        ``prepare_inputs_labels_for_multimodal_generation`` builds them. ``inputs_embeds`` may replace the prompt's
        token embeddings (then only ``attention_mask`` marks padding)."""
        cfg, model = self.config, self.model
        self._check_inputs(input_ids, image_inputs, attention_mask, inputs_embeds)
        text = model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        b, p = text.shape[:2]
        n = 0 if image_inputs is None else image_inputs.shape[1]
        text = text + model.level_embedding.weight[0]
        position = torch.zeros(p, cfg.hidden_size, device=text.device, dtype=text.dtype)
        position[p - 1] = model.position_embedding[0]
        parts = [text + position]
        if n:
            image = model.mm_projector(image_inputs.to(text.dtype))
            image = image + model.level_embedding(self._image_levels(n, text.device)) + model.position_embedding[1:n + 1]
            parts.append(image)
        embeds = torch.cat(parts, dim=1)
        keep = torch.ones(b, p, dtype=torch.bool, device=text.device) if attention_mask is None else attention_mask.bool()
        if cfg.pad_token_id is not None and input_ids is not None:
            keep = keep & (input_ids != cfg.pad_token_id)
        keep = torch.cat([keep, torch.ones(b, n, dtype=torch.bool, device=keep.device)], dim=1)
        return embeds, self.attention_bias(keep, p, embeds.dtype)

    def attention_bias(self, keep: torch.Tensor, prompt_length: int, dtype: torch.dtype) -> torch.Tensor:
        """The additive mask: causal, padded keys masked, block-causal across scales from ``<img>`` on
        (``torch.finfo(dtype).min`` where masked, as the original)."""
        s = keep.shape[1]
        minimum = torch.finfo(dtype).min
        causal = torch.ones(s, s, dtype=torch.bool, device=keep.device).tril()
        allowed = causal[None] & keep[:, None, :]
        start = prompt_length - 1
        n = s - start
        scale_of = torch.cat([torch.full((q * q,), k, device=keep.device) for k, q in enumerate(self.config.patch_nums)])[:n]
        allowed[:, start:, start:] = (scale_of[:, None] >= scale_of[None, :])[None]
        return torch.zeros(allowed.shape, dtype=dtype, device=keep.device).masked_fill(~allowed, minimum)[:, None]

    def _check_inputs(self, input_ids, image_inputs, attention_mask, inputs_embeds=None):
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids (the prompt ending with <img>) or inputs_embeds")
        if inputs_embeds is not None:
            if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != cfg.hidden_size:
                raise ValueError(f"inputs_embeds must be [B, P, {cfg.hidden_size}], got {tuple(inputs_embeds.shape)}")
            input_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long)
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.is_floating_point():
            raise ValueError(f"input_ids must be an integer tensor [B, P] (the prompt ending with <img>), got "
                             f"{tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__}")
        if image_inputs is not None:
            allowed = [o - cfg.patch_nums[0] ** 2 for o in cfg.scale_offsets[1:]]
            if image_inputs.ndim != 3 or image_inputs.shape[0] != input_ids.shape[0] or image_inputs.shape[2] != cfg.code_dim:
                raise ValueError(f"image_inputs must be [B, n, {cfg.code_dim}] with B = {input_ids.shape[0]}, "
                                 f"got {tuple(image_inputs.shape)}")
            if image_inputs.shape[1] not in allowed:
                raise ValueError(f"image_inputs must hold whole scales after the first: n in {allowed}, got {image_inputs.shape[1]}")
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"attention_mask must match input_ids {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")

    # -- forward ------------------------------------------------------------------------------
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(self, input_ids: torch.LongTensor | None = None, image_inputs: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.LongTensor | None = None,
                cache=None, inputs_embeds: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                use_cache: bool | None = None, logits_to_keep: int = 0, **kwargs):
        if attention_mask is None or attention_mask.ndim == 2:
            inputs_embeds, attention_mask = self.build_inputs(input_ids, image_inputs, attention_mask, inputs_embeds)
            input_ids = None
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                             inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs)
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden).float()
        loss = None
        if labels is not None:
            cfg = self.config
            n = labels.shape[1]
            image_logits = logits[:, -n:, cfg.image_token_start:cfg.image_token_start + cfg.codebook_size]
            loss = F.cross_entropy(image_logits.reshape(-1, cfg.codebook_size), labels.reshape(-1), ignore_index=-100)
        return TokenFlowT2IOutput(loss=loss, logits=logits, attention_mask=attention_mask, cache=outputs.cache,
                                  hidden_states=outputs.hidden_states, attentions=outputs.attentions)
