"""TiTok configuration ("An Image is Worth 32 Tokens for Reconstruction and Generation")."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig

from ..config_checks import check_positive_numbers, check_size_list, check_sizes

QUANTIZE_MODES = ("vq", "fsq", "vae")


class TiTokConfig(PreTrainedConfig):
    """A 1D tokenizer: ViT encoder -> ``num_tokens`` latent tokens -> quantizer -> ViT decoder.

    Args:
        image_size: side of the square input image.
        patch_size / decoder_patch_size: ViT patch sizes of the encoder and the decoder.
        num_tokens: number of latent tokens (the maximum, for variable-length models).
        codebook_size: VQ codebook entries; for FSQ ``prod(fsq_levels)`` (set from the levels); ``None``
            for the continuous VAE variant.
        token_dim: channels per latent token (``token_size`` upstream).
        quantize_mode: "vq" (learned codebook), "fsq" (finite scalar quantization, as FlexTok's 1D
            tokens: no codebook to collapse, so it trains from scratch on little data), or "vae"
            (continuous, diagonal Gaussian).
        fsq_levels: levels per FSQ channel (``token_dim`` channels are projected onto ``len(fsq_levels)``).
        use_l2_norm: cosine VQ lookup with normalised codes (the 4096x12 legacy codebooks).
        is_legacy: the released L-32/B-64/S-128 models: the encoder reshapes its latent tokens
            ``[B, N, W] -> [B, W, N]`` *without* a permute before the output projection, and the
            decoder predicts logits over the MaskGIT-VQGAN codebook that a CNN pixel decoder renders.
            Otherwise the decoder predicts pixels directly ("single-stage").
        pixel_*: the MaskGIT-VQGAN codebook and pixel decoder of legacy models.
        variable_length: decode any prefix of the tokens (One-D-Piece); TiTok is fixed-length.
        pixel_range: the range the model reads and writes pixels in.
        text_conditioned: TA-TiTok ("Democratizing Text-to-Image Masked Generative Models with Compact
            Text-Aware One-Dimensional Tokens"): the single-stage decoder also reads ``text_max_length`` CLIP
            text features (``text_hidden_size`` wide: the last hidden state of the release's CLIP ViT-L/14-336
            text model, after its final layer norm), so ``decode``/``decode_latents``/``forward`` take
            ``text_features``.
    """

    model_type = "vistok_titok"

    def __init__(
        self,
        image_size: int = 256,
        patch_size: int = 16,
        decoder_patch_size: int = 16,
        num_tokens: int = 32,
        codebook_size: int | None = 4096,
        token_dim: int = 12,
        quantize_mode: str = "vq",
        use_l2_norm: bool = True,
        commitment_cost: float = 0.25,
        encoder_hidden_size: int = 1024,
        encoder_num_layers: int = 24,
        encoder_num_heads: int = 16,
        decoder_hidden_size: int = 1024,
        decoder_num_layers: int = 24,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        layer_norm_eps: float = 1e-5,
        is_legacy: bool = True,
        pixel_codebook_size: int = 1024,
        pixel_embed_dim: int = 256,
        pixel_hidden_channels: int = 128,
        pixel_channel_mult: list[int] | tuple[int, ...] = (1, 1, 2, 2, 4),
        pixel_num_res_blocks: int = 2,
        variable_length: bool = False,
        pixel_range: list[float] | tuple[float, float] = (0.0, 1.0),
        initializer_range: float = 0.02,
        fsq_levels: list[int] | tuple[int, ...] | None = None,
        text_conditioned: bool = False,
        text_hidden_size: int = 768,
        text_max_length: int = 77,
        **kwargs,
    ):
        check_sizes(image_size=image_size, patch_size=patch_size, decoder_patch_size=decoder_patch_size, num_tokens=num_tokens,
                    token_dim=token_dim, encoder_hidden_size=encoder_hidden_size, encoder_num_layers=encoder_num_layers,
                    encoder_num_heads=encoder_num_heads, decoder_hidden_size=decoder_hidden_size,
                    decoder_num_layers=decoder_num_layers, decoder_num_heads=decoder_num_heads,
                    pixel_codebook_size=pixel_codebook_size, pixel_embed_dim=pixel_embed_dim,
                    pixel_hidden_channels=pixel_hidden_channels, pixel_num_res_blocks=pixel_num_res_blocks,
                    text_hidden_size=text_hidden_size, text_max_length=text_max_length)
        check_positive_numbers(mlp_ratio=mlp_ratio, layer_norm_eps=layer_norm_eps, initializer_range=initializer_range)
        check_size_list("pixel_channel_mult", pixel_channel_mult)
        if quantize_mode not in QUANTIZE_MODES:
            raise ValueError(f"quantize_mode must be one of {QUANTIZE_MODES}, got {quantize_mode!r}")
        if quantize_mode == "vq" and not codebook_size:
            raise ValueError("a 'vq' TiTok needs codebook_size > 0")
        if quantize_mode == "fsq":
            if not fsq_levels or any(not isinstance(v, int) or isinstance(v, bool) or v < 2 for v in fsq_levels):
                raise ValueError(f"an 'fsq' TiTok needs fsq_levels, a list of ints >= 2, got {fsq_levels!r}")
            codebook_size = math.prod(fsq_levels)
        elif fsq_levels is not None:
            raise ValueError(f"fsq_levels applies to quantize_mode='fsq', not {quantize_mode!r}")
        if quantize_mode in ("vae", "fsq") and is_legacy:
            raise ValueError(f"the {quantize_mode!r} TiTok variants are single-stage: is_legacy must be False")
        if text_conditioned and is_legacy:
            raise ValueError("text_conditioned (TA-TiTok) needs the single-stage decoder: is_legacy must be False")
        if image_size % patch_size or image_size % decoder_patch_size:
            raise ValueError(
                f"image_size {image_size} must be a multiple of patch_size {patch_size} and decoder_patch_size {decoder_patch_size}"
            )
        self.image_size = image_size
        self.patch_size = patch_size
        self.decoder_patch_size = decoder_patch_size
        self.num_tokens = num_tokens
        self.codebook_size = codebook_size if quantize_mode != "vae" else None
        self.fsq_levels = list(fsq_levels) if fsq_levels is not None else None
        self.token_dim = token_dim
        self.quantize_mode = quantize_mode
        self.use_l2_norm = use_l2_norm
        self.commitment_cost = commitment_cost
        self.encoder_hidden_size = encoder_hidden_size
        self.encoder_num_layers = encoder_num_layers
        self.encoder_num_heads = encoder_num_heads
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_layers = decoder_num_layers
        self.decoder_num_heads = decoder_num_heads
        self.mlp_ratio = mlp_ratio
        self.layer_norm_eps = layer_norm_eps
        self.is_legacy = is_legacy
        self.pixel_codebook_size = pixel_codebook_size
        self.pixel_embed_dim = pixel_embed_dim
        self.pixel_hidden_channels = pixel_hidden_channels
        self.pixel_channel_mult = list(pixel_channel_mult)
        self.pixel_num_res_blocks = pixel_num_res_blocks
        self.variable_length = variable_length
        self.pixel_range = list(pixel_range)
        self.initializer_range = initializer_range
        self.text_conditioned = bool(text_conditioned)
        self.text_hidden_size = text_hidden_size
        self.text_max_length = text_max_length
        self.token_layout = "continuous" if quantize_mode == "vae" else "1d"
        kwargs.pop("token_layout", None)
        super().__init__(**kwargs)
