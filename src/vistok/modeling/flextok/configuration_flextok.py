"""FlexTok configuration ("FlexTok: Resampling Images into 1D Token Sequences of Flexible Length")."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig

from ..config_checks import check_positive_numbers, check_sizes

# diffusers AutoencoderKL settings of FlexTok's SDXL-like VAE (flextok/vae_wrapper.py VAE_BASE_CFG), 16 channels
DEFAULT_VAE_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 16,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 1024,
}


class FlexTokConfig(PreTrainedConfig):
    """FlexTok: a frozen VAE, a register encoder reading the VAE latent into ``num_tokens`` ordered FSQ tokens,
    and a rectified-flow decoder turning any prefix of them back into a VAE latent.

    Args:
        image_size: side of the square input image (pixels in ``pixel_range`` = [-1, 1]).
        num_tokens: registers, i.e. the maximum token count (256 in the releases); any prefix 1..num_tokens decodes.
        fsq_levels: FSQ levels per token channel ([8, 8, 8, 5, 5, 5]: 64000 codes, 6 channels per token).
        vae_config: the diffusers ``AutoencoderKL`` config of the VAE component; ``vae_scaling_factor`` the
            factor its latents are multiplied by (``StableDiffusionVAE.scaling_factor``).
        patch_size: side of the latent patches both transformers read (2 in the releases).
        encoder_* / decoder_*: widths, depths and head widths of the two transformers (64-wide heads in the releases).
        mlp_ratio: SwiGLU width is ``int(2 * int(D * mlp_ratio) / 3)``.
        qk_norm: per-head LayerNorm of queries and keys; ``mup_attention_scale``: scale ``8 / head_dim``.
        attention_bias / mlp_bias: biases of the attention and MLP projections (none in the releases).
        encoder_head_norm / decoder_input_norm: a (non-affine) LayerNorm before ``enc_to_latents`` /
            ``dec_from_latents`` (the original's ``LinearHead`` has one, ``LinearLayer`` none).
        mask_token_posemb: the decoder's nested-dropout mask token also gets the register positional embedding
            (the original's module order puts ``dec_nested_dropout`` before ``dec_registers_posemb_module``).
        null_condition_single_token: the unconditional pass replaces the registers by one null token instead of
            overwriting each of them.
        timestep_max / timestep_frequency_size / timestep_max_period: the sinusoidal timestep embedding of the
            decoder (flow time t in [0, 1]).
        num_inference_steps / guidance_scale / use_apg / apg_momentum / apg_eta / apg_norm_threshold: the released
            flow-decoding defaults (Euler steps; classifier-free guidance; adaptive projected guidance,
            arXiv 2410.02416).
    """

    model_type = "vistok_flextok"

    def __init__(
        self,
        image_size: int = 256,
        num_tokens: int = 256,
        fsq_levels: list[int] | tuple[int, ...] = (8, 8, 8, 5, 5, 5),
        vae_config: dict | None = None,
        vae_scaling_factor: float = 1.0,
        patch_size: int = 2,
        encoder_hidden_size: int = 768,
        encoder_num_layers: int = 12,
        encoder_head_dim: int = 64,
        decoder_hidden_size: int = 768,
        decoder_num_layers: int = 12,
        decoder_head_dim: int = 64,
        mlp_ratio: float = 4.0,
        qk_norm: bool = True,
        mup_attention_scale: bool = True,
        attention_bias: bool = False,
        mlp_bias: bool = False,
        layer_norm_eps: float = 1e-5,
        encoder_head_norm: bool = True,
        decoder_input_norm: bool = False,
        mask_token_posemb: bool = False,
        null_condition_single_token: bool = False,
        timestep_max: float = 1.0,
        timestep_frequency_size: int = 256,
        timestep_max_period: float = 256.0,
        num_inference_steps: int = 20,
        guidance_scale: float = 7.5,
        use_apg: bool = True,
        apg_momentum: float = -0.5,
        apg_eta: float = 0.0,
        apg_norm_threshold: float = 2.5,
        pixel_range: list[float] | tuple[float, float] = (-1.0, 1.0),
        initializer_range: float = 0.02,
        **kwargs,
    ):
        check_sizes(image_size=image_size, num_tokens=num_tokens, patch_size=patch_size,
                    encoder_hidden_size=encoder_hidden_size, encoder_num_layers=encoder_num_layers,
                    encoder_head_dim=encoder_head_dim, decoder_hidden_size=decoder_hidden_size,
                    decoder_num_layers=decoder_num_layers, decoder_head_dim=decoder_head_dim,
                    timestep_frequency_size=timestep_frequency_size, num_inference_steps=num_inference_steps)
        check_positive_numbers(vae_scaling_factor=vae_scaling_factor, mlp_ratio=mlp_ratio, layer_norm_eps=layer_norm_eps,
                               timestep_max=timestep_max, timestep_max_period=timestep_max_period,
                               guidance_scale=guidance_scale, initializer_range=initializer_range)
        fsq_levels = list(fsq_levels)
        if not fsq_levels or any(not isinstance(v, int) or isinstance(v, bool) or v < 2 for v in fsq_levels):
            raise ValueError(f"fsq_levels must be a non-empty list of ints >= 2, got {fsq_levels!r}")
        for name, width, head in (("encoder", encoder_hidden_size, encoder_head_dim),
                                  ("decoder", decoder_hidden_size, decoder_head_dim)):
            if width % head:
                raise ValueError(f"{name}_hidden_size {width} must be a multiple of {name}_head_dim {head}")
        if not (isinstance(apg_norm_threshold, (int, float)) and math.isfinite(apg_norm_threshold) and apg_norm_threshold >= 0):
            raise ValueError(f"apg_norm_threshold must be a finite number >= 0 (0: no rescaling), got {apg_norm_threshold!r}")
        vae_config = dict(DEFAULT_VAE_CONFIG if vae_config is None else vae_config)
        for key in ("latent_channels", "down_block_types"):
            if key not in vae_config:
                raise ValueError(f"vae_config must name {key!r} (a diffusers AutoencoderKL config)")
        vae_factor = 2 ** (len(vae_config["down_block_types"]) - 1)
        if image_size % (vae_factor * patch_size):
            raise ValueError(f"image_size {image_size} must be a multiple of the VAE's downsampling ({vae_factor}) "
                             f"times patch_size ({patch_size})")
        self.image_size = image_size
        self.num_tokens = num_tokens
        self.fsq_levels = fsq_levels
        self.codebook_size = math.prod(fsq_levels)
        self.token_dim = len(fsq_levels)
        self.vae_config = vae_config
        self.vae_scaling_factor = float(vae_scaling_factor)
        self.patch_size = patch_size
        self.encoder_hidden_size = encoder_hidden_size
        self.encoder_num_layers = encoder_num_layers
        self.encoder_head_dim = encoder_head_dim
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_layers = decoder_num_layers
        self.decoder_head_dim = decoder_head_dim
        self.mlp_ratio = mlp_ratio
        self.qk_norm = qk_norm
        self.mup_attention_scale = mup_attention_scale
        self.attention_bias = attention_bias
        self.mlp_bias = mlp_bias
        self.layer_norm_eps = layer_norm_eps
        self.encoder_head_norm = encoder_head_norm
        self.decoder_input_norm = decoder_input_norm
        self.mask_token_posemb = mask_token_posemb
        self.null_condition_single_token = null_condition_single_token
        self.timestep_max = float(timestep_max)
        self.timestep_frequency_size = timestep_frequency_size
        self.timestep_max_period = float(timestep_max_period)
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = float(guidance_scale)
        self.use_apg = use_apg
        self.apg_momentum = float(apg_momentum)
        self.apg_eta = float(apg_eta)
        self.apg_norm_threshold = float(apg_norm_threshold)
        self.pixel_range = list(pixel_range)
        self.initializer_range = initializer_range
        self.variable_length = True
        self.token_layout = "1d"
        kwargs.pop("token_layout", None)
        kwargs.pop("variable_length", None)
        kwargs.pop("codebook_size", None)
        kwargs.pop("token_dim", None)
        super().__init__(**kwargs)

    @property
    def latent_channels(self) -> int:
        return int(self.vae_config["latent_channels"])

    @property
    def vae_downsampling(self) -> int:
        return 2 ** (len(self.vae_config["down_block_types"]) - 1)

    @property
    def latent_size(self) -> int:
        """Side of the VAE latent of an ``image_size`` image."""
        return self.image_size // self.vae_downsampling

    @property
    def grid_size(self) -> int:
        """Side of the patch grid both transformers read."""
        return self.latent_size // self.patch_size
