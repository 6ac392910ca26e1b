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
from .configuration_tokenflow import TokenFlowConfig


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
    vision tower: the quantized map flattened, ``[B, pn*pn, code_dim]``); ``semantic_features(pixels)`` the
    semantic tower's patch features and ``decode_semantic(latents)`` the reconstructed teacher features.
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
        """The semantic tower's patch tokens ``[B, N, width]`` (see :class:`TokenFlowConfig`)."""
        tower = self.semantic_encoder
        if self.config.semantic_encoder_type == "clip":
            emb = tower.embeddings
            patches = emb.patch_embedding(pixel_values.to(emb.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
            hidden = torch.cat([emb.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1), patches], dim=1)
            grid = math.isqrt(patches.shape[1])
            hidden = hidden + interpolate_position_embedding(emb.position_embedding.weight, grid).to(hidden.dtype)
            hidden = tower.pre_layrnorm(hidden)
            for layer in tower.encoder.layers:
                hidden = layer(hidden, None)
            return tower.post_layernorm(hidden)[:, 1:]
        # siglip: TokenFlow's ScalingLayerForSigLip, then hidden_states[-2] (every layer but the last)
        scaled = (((pixel_values + 1.0) * 127.5).clamp(0, 255.0) / 255.0 - 0.5) / 0.5
        hidden = tower.embeddings(scaled.to(tower.embeddings.patch_embedding.weight.dtype))
        for layer in tower.encoder.layers[:-1]:
            hidden = layer(hidden, None)
        return hidden

    def semantic_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
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

    def split_scales(self, token_ids: torch.LongTensor) -> list[torch.LongTensor]:
        """``[B, L]`` -> one ``[B, pn, pn]`` token map per scale."""
        return self.quantizer.split_scales(token_ids)

    def merge_scales(self, scales) -> torch.LongTensor:
        return self.quantizer.merge_scales(scales)

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return tuple(self.config.patch_nums)
