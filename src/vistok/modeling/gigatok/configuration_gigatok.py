"""GigaTok configuration (SilentView/GigaTok, "Scaling Visual Tokenizers to 3 Billion Parameters for
Autoregressive Image Generation")."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig

from ..config_checks import check_positive_numbers, check_probabilities, check_size_list, check_sizes

TOKEN_LAYOUTS = ("1d", "2d")

# The original's transformer size table (tokenizer/tokenizer_image/vq/blocks.py, ViTEncoder/ViTDecoder):
# width, layers, heads.
VIT_SIZES = {
    "tiny": (256, 4, 4),
    "small": (512, 6, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "xl": (1280, 36, 20),
    "xxl": (1536, 48, 24),
    "xxxl": (2560, 48, 40),
}


class GigaTokConfig(PreTrainedConfig):
    """A hybrid CNN-transformer VQ tokenizer: CNN encoder (f = 2^(levels-1)) -> transformer -> tokens ->
    cosine VQ over ``codebook_size`` x ``token_dim`` -> transformer -> CNN decoder (adaptive GroupNorm,
    depth-to-space upsampling).

    Args:
        token_layout: "1d" (``VQVitModelPlus``: a Q-Former encoder reads the CNN feature map into
            ``num_latent_tokens`` tokens, queries initialised by a multi-level average-pooling pyramid; a
            Q-Former decoder reads them back onto the feature grid) or "2d" (``VQVitModel2DPlus`` with
            ``transformer_layer_type: TransformerLayer``: plain pre-norm ViT blocks over the grid, one
            token per feature-map position).
        image_size: the (square) image side; the feature grid is ``image_size / f`` on a side.
        num_latent_tokens: 1D token count (a power of two; the pyramid has log2 of it levels); ignored in 2D.
        hidden_channels, channel_mult, num_res_blocks, z_channels: the CNN (decoder: one ResNet block more
            per level, as the original).
        encoder_/decoder_hidden_size, _num_layers, _num_heads: the transformers (see ``VIT_SIZES``).
        distill_depth, distill_dim: the semantic-regularisation head (REPA-style MLP after decoder
            layer ``distill_depth`` projecting to the teacher's width, 768 for DINOv2-B); ``None``: no head.
        gradient_estimator: "rotation" (the releases' ``rot: True``) or "straight_through".
    """

    model_type = "vistok_gigatok"

    def __init__(self, token_layout: str = "1d", image_size: int = 256, num_latent_tokens: int = 256,
                 codebook_size: int = 16384, token_dim: int = 8, commitment_cost: float = 0.25,
                 gradient_estimator: str = "rotation", hidden_channels: int = 128,
                 encoder_channel_mult: list[int] | tuple[int, ...] = (1, 1, 2, 2, 4),
                 decoder_channel_mult: list[int] | tuple[int, ...] | None = None, num_res_blocks: int = 2,
                 z_channels: int = 256, encoder_hidden_size: int = 512, encoder_num_layers: int = 6,
                 encoder_num_heads: int = 8, decoder_hidden_size: int = 768, decoder_num_layers: int = 12,
                 decoder_num_heads: int = 12, mlp_ratio: float = 4.0, distill_depth: int | None = 3,
                 distill_dim: int = 768, dropout: float = 0.0,
                 pixel_range: list[float] | tuple[float, float] = (-1.0, 1.0), initializer_range: float = 0.02,
                 **kwargs):
        if token_layout not in TOKEN_LAYOUTS:
            raise ValueError(f"token_layout must be one of {TOKEN_LAYOUTS}, got {token_layout!r}")
        check_sizes(image_size=image_size, num_latent_tokens=num_latent_tokens, codebook_size=codebook_size,
                    token_dim=token_dim, hidden_channels=hidden_channels, num_res_blocks=num_res_blocks,
                    z_channels=z_channels, encoder_hidden_size=encoder_hidden_size, encoder_num_layers=encoder_num_layers,
                    encoder_num_heads=encoder_num_heads, decoder_hidden_size=decoder_hidden_size,
                    decoder_num_layers=decoder_num_layers, decoder_num_heads=decoder_num_heads, distill_dim=distill_dim)
        check_positive_numbers(mlp_ratio=mlp_ratio, initializer_range=initializer_range)
        check_probabilities(dropout=dropout)
        check_size_list("encoder_channel_mult", encoder_channel_mult)
        decoder_channel_mult = encoder_channel_mult if decoder_channel_mult is None else decoder_channel_mult
        check_size_list("decoder_channel_mult", decoder_channel_mult)
        if len(encoder_channel_mult) != len(decoder_channel_mult):
            raise ValueError(f"encoder and decoder must have as many levels: {list(encoder_channel_mult)} vs "
                             f"{list(decoder_channel_mult)}")
        if gradient_estimator not in ("rotation", "straight_through"):
            raise ValueError(f"gradient_estimator must be 'rotation' or 'straight_through', got {gradient_estimator!r}")
        for name, width, heads in (("encoder", encoder_hidden_size, encoder_num_heads),
                                   ("decoder", decoder_hidden_size, decoder_num_heads)):
            if width % heads:
                raise ValueError(f"{name}_hidden_size {width} must be divisible by {name}_num_heads {heads}")
        if z_channels % 32:
            raise ValueError(f"z_channels must be a multiple of 32 (GroupNorm with 32 groups), got {z_channels}")
        factor = 2 ** (len(encoder_channel_mult) - 1)
        if image_size % factor:
            raise ValueError(f"image_size must be a multiple of the downsampling factor {factor}, got {image_size}")
        grid = image_size // factor
        if token_layout == "1d":
            levels = round(math.log2(num_latent_tokens))
            if 2**levels != num_latent_tokens:
                raise ValueError(f"num_latent_tokens must be a power of two (the multi-level query pyramid), got {num_latent_tokens}")
            # the pyramid's finest level splits the grid into 2^ceil((L-1)/2) x 2^floor((L-1)/2) blocks
            if levels and (grid % 2 ** (levels // 2) or grid % 2 ** ((levels - 1) // 2)):
                raise ValueError(f"a {grid}x{grid} feature grid cannot be split into the {num_latent_tokens}-token "
                                 "query pyramid: use a larger image_size or fewer tokens")
        if distill_depth is not None and not 1 <= distill_depth <= decoder_num_layers:
            raise ValueError(f"distill_depth must be in [1, decoder_num_layers={decoder_num_layers}] or None, got {distill_depth}")
        self.token_layout = token_layout
        self.image_size = image_size
        self.num_latent_tokens = num_latent_tokens
        self.codebook_size = codebook_size
        self.token_dim = token_dim
        self.commitment_cost = commitment_cost
        self.gradient_estimator = gradient_estimator
        self.hidden_channels = hidden_channels
        self.encoder_channel_mult = list(encoder_channel_mult)
        self.decoder_channel_mult = list(decoder_channel_mult)
        self.num_res_blocks = num_res_blocks
        self.z_channels = z_channels
        self.encoder_hidden_size = encoder_hidden_size
        self.encoder_num_layers = encoder_num_layers
        self.encoder_num_heads = encoder_num_heads
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_layers = decoder_num_layers
        self.decoder_num_heads = decoder_num_heads
        self.mlp_ratio = mlp_ratio
        self.distill_depth = distill_depth
        self.distill_dim = distill_dim
        self.dropout = dropout
        self.pixel_range = list(pixel_range)
        self.initializer_range = initializer_range
        self.num_tokens = num_latent_tokens if token_layout == "1d" else grid * grid
        self.variable_length = False
        for key in ("num_tokens", "variable_length"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)

    @classmethod
    def from_sizes(cls, encoder_size: str, decoder_size: str, **kwargs) -> "GigaTokConfig":
        """A config with the original's named transformer sizes ("small", "base", "large", "xl", "xxl", ...)."""
        for size in (encoder_size, decoder_size):
            if size not in VIT_SIZES:
                raise ValueError(f"unknown GigaTok transformer size {size!r}; choose from {sorted(VIT_SIZES)}")
        ew, el, eh = VIT_SIZES[encoder_size]
        dw, dl, dh = VIT_SIZES[decoder_size]
        return cls(encoder_hidden_size=ew, encoder_num_layers=el, encoder_num_heads=eh, decoder_hidden_size=dw,
                   decoder_num_layers=dl, decoder_num_heads=dh, **kwargs)

    @property
    def cnn_downsample_factor(self) -> int:
        return 2 ** (len(self.encoder_channel_mult) - 1)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.cnn_downsample_factor
