"""TiTok: a ViT that reads an image into a short 1D sequence of latent tokens and back.

Ported from bytedance/1d-tokenizer (modeling/titok.py, modeling/tatitok.py, modeling/modules/blocks.py).
The numerics follow the original, including the legacy token reshape without permute (see ``TiTokConfig``).
TA-TiTok is the ``text_conditioned`` option: its decoder appends projected CLIP text features to its sequence.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..base import VisualTokenizerEncoderOutput, VisualTokenizerMixin, VisualTokenizerOutput
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
            if module.text_position_embedding is not None:
                init.normal_(module.text_position_embedding, std=module.hidden_size**-0.5)
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
        # TA-TiTok: CLIP text features join the sequence after the latent tokens
        self.text_proj = nn.Linear(config.text_hidden_size, width) if config.text_conditioned else None
        self.text_position_embedding = (
            nn.Parameter(torch.zeros(config.text_max_length, width)) if config.text_conditioned else None
        )

    def forward(self, latents: torch.Tensor, text_features: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, n, C] (n <= N) and, text-conditioned, CLIP text features [B, L, D] -> legacy: code logits
        [B, g*g, K]; single-stage: pixels [B, 3, H, W]."""
        batch, length, _ = latents.shape
        hidden = self.embed_in(latents) + self.latent_position_embedding[:length]
        queries = self.mask_token.expand(batch, self.grid_size**2, -1)
        queries = torch.cat([self.class_embedding.expand(batch, -1, -1), queries], dim=1) + self.position_embedding
        parts = [queries, hidden]
        if self.text_proj is not None:
            parts.append(self.text_proj(text_features) + self.text_position_embedding)
        hidden = self.pre_layernorm(torch.cat(parts, dim=1))
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

    # -- TA-TiTok: text-conditioned decoding ----------------------------------------------------
    def check_text_features(self, text_features, batch: int) -> torch.Tensor | None:
        """``text_features`` [B, text_max_length, text_hidden_size] for a text-conditioned (TA-TiTok) model,
        ``None`` otherwise."""
        if not self.config.text_conditioned:
            if text_features is not None:
                raise ValueError(f"{type(self).__name__} is not text-conditioned (config.text_conditioned=False): "
                                 "text_features must be None")
            return None
        expected = (batch, self.config.text_max_length, self.config.text_hidden_size)
        if text_features is None:
            raise ValueError("this TA-TiTok tokenizer decodes with text: pass text_features, the CLIP text model's last "
                             f"hidden state of shape {expected} (see TiTokConfig.text_conditioned)")
        if not isinstance(text_features, torch.Tensor) or not text_features.is_floating_point():
            raise TypeError(f"text_features must be a float tensor, got {type(text_features).__name__}")
        if tuple(text_features.shape) != expected:
            raise ValueError(f"text_features must have shape {expected} (batch, text_max_length, text_hidden_size), "
                             f"got {tuple(text_features.shape)}")
        return text_features.to(self.dtype)

    def decode(self, token_ids: torch.LongTensor, text_features: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Pixels from token ids; TA-TiTok (``config.text_conditioned``) also reads ``text_features``."""
        if not self.config.text_conditioned:
            self.check_text_features(text_features, 0)
            return super().decode(token_ids, **kwargs)
        if self.is_continuous:
            raise ValueError(f"{type(self).__name__} is continuous (KL); decode its latents with decode_latents()")
        self.check_token_ids(token_ids)
        latents = self._token_ids_to_latents(token_ids, **kwargs)
        return self._decode_latents(latents, self.check_text_features(text_features, latents.shape[0]))

    def decode_latents(self, latents: torch.Tensor, text_features: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels from latents ``[B, N, C]``; TA-TiTok (``config.text_conditioned``) also reads ``text_features``."""
        self.check_latents(latents)
        return self._decode_latents(latents.to(self.dtype), self.check_text_features(text_features, latents.shape[0]))

    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: torch.Tensor, num_tokens: int | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None, text_features: torch.Tensor | None = None, **kwargs):
        """Reconstruct ``pixel_values`` (TA-TiTok: with ``text_features``) with the regulariser's training terms;
        otherwise as :meth:`VisualTokenizerMixin.forward`."""
        if num_tokens is None and self.training and self.config.variable_length:
            num_tokens = int(torch.randint(1, self.config.num_tokens + 1, (1,), generator=kwargs.get("generator")))
        enc = self.encode(pixel_values, num_tokens=num_tokens, **kwargs)
        text_features = self.check_text_features(text_features, pixel_values.shape[0])
        return VisualTokenizerOutput(reconstruction=self._decode_latents(enc.latents, text_features), **dict(enc.items()))

    def _decode_latents(self, latents, text_features=None):
        out = self.decoder(latents.to(self.dtype), text_features)
        if not self.config.is_legacy:
            return out
        # Soft lookup in the MaskGIT-VQGAN codebook, then the CNN renders pixels.
        grid = self.decoder.grid_size
        codes = out.softmax(dim=-1) @ self.pixel_quantizer.embedding.weight
        codes = codes.transpose(1, 2).reshape(out.shape[0], -1, grid, grid)
        return self.pixel_decoder(codes)
