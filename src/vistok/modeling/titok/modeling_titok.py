"""TiTok: a ViT that reads an image into a short 1D sequence of latent tokens and back.

Ported from bytedance/1d-tokenizer (modeling/titok.py, modeling/modules/blocks.py). The numerics
follow the original, including the legacy token reshape without permute (see ``TiTokConfig``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils.output_capturing import OutputRecorder

from ..base import VisualTokenizerEncoderOutput, VisualTokenizerMixin
from ..layers import MaskGITVQGANDecoder, TransformerBlock
from ..layers.transformer import Attention
from ..quantizers import FSQ, DiagonalGaussianPosterior, VectorQuantizer
from .configuration_titok import TiTokConfig


class TiTokPreTrainedModel(PreTrainedModel):
    config_class = TiTokConfig
    base_model_prefix = "titok"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerBlock", "VQGANResnetBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # encoder then decoder transformer blocks (the pixel decoder's conv blocks are not recorded)
    _can_record_outputs = {"hidden_states": TransformerBlock, "attentions": OutputRecorder(Attention, index=1)}

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, TiTokEncoder):
            for param in (module.class_embedding, module.position_embedding, module.latent_position_embedding, module.latent_tokens):
                init.normal_(param, std=module.hidden_size**-0.5)
        elif isinstance(module, TiTokDecoder):
            for param in (module.class_embedding, module.position_embedding, module.latent_position_embedding, module.mask_token):
                init.normal_(param, std=module.hidden_size**-0.5)
        elif isinstance(module, VectorQuantizer):
            init.uniform_(module.embedding.weight, -1.0 / module.codebook_size, 1.0 / module.codebook_size)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)


class TiTokEncoder(nn.Module):
    def __init__(self, config: TiTokConfig):
        super().__init__()
        self.hidden_size = width = config.encoder_hidden_size
        self.is_legacy = config.is_legacy
        self.grid_size = config.image_size // config.patch_size
        self.patch_embed = nn.Conv2d(3, width, config.patch_size, stride=config.patch_size)
        self.class_embedding = nn.Parameter(torch.zeros(1, width))
        self.position_embedding = nn.Parameter(torch.zeros(self.grid_size**2 + 1, width))
        self.latent_tokens = nn.Parameter(torch.zeros(config.num_tokens, width))
        self.latent_position_embedding = nn.Parameter(torch.zeros(config.num_tokens, width))
        self.pre_layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(
            TransformerBlock(config, width, config.encoder_num_heads, config.mlp_ratio, config.layer_norm_eps)
            for _ in range(config.encoder_num_layers)
        )
        self.post_layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        out_dim = config.token_dim * (2 if config.quantize_mode == "vae" else 1)  # VAE: mean and logvar
        self.proj_out = nn.Linear(width, out_dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, H, W] -> pre-quantization tokens [B, N, C]."""
        batch = pixel_values.shape[0]
        patches = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(batch, -1, -1)
        hidden = torch.cat([cls, patches], dim=1) + self.position_embedding
        latents = (self.latent_tokens + self.latent_position_embedding).expand(batch, -1, -1)
        hidden = self.pre_layernorm(torch.cat([hidden, latents], dim=1))
        for layer in self.layers:
            hidden = layer(hidden)
        latents = self.post_layernorm(hidden[:, 1 + self.grid_size**2 :])
        if self.is_legacy:
            # The released models reshape [B, N, W] to [B, W, N] without a permute (bytedance/1d-tokenizer#16).
            latents = latents.reshape(batch, self.hidden_size, -1).transpose(1, 2)
        return self.proj_out(latents)


class TiTokDecoder(nn.Module):
    def __init__(self, config: TiTokConfig):
        super().__init__()
        self.hidden_size = width = config.decoder_hidden_size
        self.is_legacy = config.is_legacy
        self.patch_size = config.decoder_patch_size
        self.grid_size = config.image_size // config.decoder_patch_size
        self.embed_in = nn.Linear(config.token_dim, width)
        self.class_embedding = nn.Parameter(torch.zeros(1, width))
        self.position_embedding = nn.Parameter(torch.zeros(self.grid_size**2 + 1, width))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.latent_position_embedding = nn.Parameter(torch.zeros(config.num_tokens, width))
        self.pre_layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(
            TransformerBlock(config, width, config.decoder_num_heads, config.mlp_ratio, config.layer_norm_eps)
            for _ in range(config.decoder_num_layers)
        )
        self.post_layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        if self.is_legacy:
            # logits over the MaskGIT-VQGAN codebook at every grid position
            self.head = nn.Sequential(nn.Linear(width, 2 * width), nn.Tanh(), nn.Linear(2 * width, config.pixel_codebook_size))
        else:
            self.head = nn.Linear(width, self.patch_size**2 * 3)
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """tokens [B, n, C] (n <= N) -> legacy: code logits [B, g*g, K]; single-stage: pixels [B, 3, H, W]."""
        batch, length, _ = latents.shape
        hidden = self.embed_in(latents) + self.latent_position_embedding[:length]
        queries = self.mask_token.expand(batch, self.grid_size**2, -1)
        queries = torch.cat([self.class_embedding.expand(batch, -1, -1), queries], dim=1) + self.position_embedding
        hidden = self.pre_layernorm(torch.cat([queries, hidden], dim=1))
        for layer in self.layers:
            hidden = layer(hidden)
        hidden = self.post_layernorm(hidden[:, 1 : 1 + self.grid_size**2])
        out = self.head(hidden)
        if self.is_legacy:
            return out
        grid, patch = self.grid_size, self.patch_size
        pixels = out.reshape(batch, grid, grid, patch, patch, 3).permute(0, 5, 1, 3, 2, 4)
        return self.conv_out(pixels.reshape(batch, 3, grid * patch, grid * patch))


class TiTokModel(VisualTokenizerMixin, TiTokPreTrainedModel):
    """TiTok tokenizer (legacy two-stage, single-stage VQ, or continuous VAE, by config)."""

    def __init__(self, config: TiTokConfig):
        super().__init__(config)
        self.encoder = TiTokEncoder(config)
        if config.quantize_mode == "vq":
            self.quantizer = VectorQuantizer(config.codebook_size, config.token_dim, config.commitment_cost, config.use_l2_norm)
        elif config.quantize_mode == "fsq":
            self.quantizer = FSQ(config.fsq_levels, dim=config.token_dim)
        else:
            self.quantizer = None
        self.decoder = TiTokDecoder(config)
        if config.is_legacy:
            self.pixel_quantizer = VectorQuantizer(config.pixel_codebook_size, config.pixel_embed_dim)
            self.pixel_decoder = MaskGITVQGANDecoder(
                config.pixel_embed_dim, config.pixel_hidden_channels, config.pixel_channel_mult, config.pixel_num_res_blocks
            )
        self.post_init()

    def _encode(self, pixel_values, sample_posterior: bool = True, generator: torch.Generator | None = None):
        z = self.encoder(pixel_values)
        if self.quantizer is not None:
            q = self.quantizer(z)
            return VisualTokenizerEncoderOutput(
                token_ids=q.indices,
                latents=q.quantized,
                quantizer_loss=q.loss,
                commitment_loss=q.commitment_loss,
                codebook_loss=q.codebook_loss,
            )
        posterior = DiagonalGaussianPosterior(z)
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        return VisualTokenizerEncoderOutput(
            latents=latents, latent_mean=posterior.mean, latent_logvar=posterior.logvar, kl_loss=posterior.kl().mean()
        )

    def _token_ids_to_latents(self, token_ids):
        return self.quantizer.indices_to_codes(token_ids)

    def _decode_latents(self, latents):
        out = self.decoder(latents.to(self.dtype))
        if not self.config.is_legacy:
            return out
        # Soft lookup in the MaskGIT-VQGAN codebook, then the CNN renders pixels.
        grid = self.decoder.grid_size
        codes = out.softmax(dim=-1) @ self.pixel_quantizer.embedding.weight
        codes = codes.transpose(1, 2).reshape(out.shape[0], -1, grid, grid)
        return self.pixel_decoder(codes)
