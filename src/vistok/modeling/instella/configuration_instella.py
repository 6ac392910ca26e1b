"""Instella-T2I configurations ("Instella-T2I: Pushing the Limits of 1D Discrete Latent Space Image Generation")."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ..config_checks import check_positive_numbers, check_sizes


class InstellaBAEConfig(PreTrainedConfig):
    """Instella-T2I's binary autoencoder ("BAE" / 1D-BIT): a ViT encoder reads ``[num_tokens latent tokens;
    image patches]``, a linear head gives ``num_bits`` bit logits per latent token, and a ViT decoder renders
    ``[latent tokens; mask tokens]`` back into pixels.

    Args:
        image_size: the default (training) side; any square side that is a multiple of ``downsample_factor``
            (``patch_size * 2**len(downsample_layers)``) is accepted, tokens are always ``num_tokens x num_bits``.
        patch_size: ViT patch size of encoder and decoder.
        num_tokens: latent tokens (128 in the release). num_bits: bits per token (64 in the release).
        encoder_*/decoder_*: widths, depths and heads (the release: 768/12/12 and 1024/16/16; heads of 64).
        downsample_layers / upsample_layers: after these encoder / decoder blocks the image grid is halved /
            doubled (``DCDownBlock2d`` / ``DCUpBlock2d``; the release: block 7 each).
        axes_dims_rope: the three RoPE axes (latent index, row, column) per head; sums to the head size.
        rope_scale: image positions are spread over ``0 .. rope_scale-1`` whatever the grid (the original's
            ``set_scale(image_size)``: ``image_size / patch_size``, halved with the grid); ``None``: integer positions.
        train_temperature: temperature of the training-time Bernoulli bits.
        pixel_range: the model reads and writes pixels in [-1, 1].
    """

    model_type = "vistok_instella_bae"

    def __init__(
        self,
        image_size: int = 1024,
        patch_size: int = 16,
        num_tokens: int = 128,
        num_bits: int = 64,
        encoder_hidden_size: int = 768,
        encoder_num_layers: int = 12,
        encoder_num_heads: int = 12,
        decoder_hidden_size: int = 1024,
        decoder_num_layers: int = 16,
        decoder_num_heads: int = 16,
        downsample_layers: list[int] | tuple[int, ...] = (7,),
        upsample_layers: list[int] | tuple[int, ...] = (7,),
        axes_dims_rope: list[int] | tuple[int, ...] = (8, 28, 28),
        rope_theta: float = 10000.0,
        rope_scale: float | None = 64.0,
        mlp_ratio: float = 4.0,
        rms_norm_eps: float = 1e-6,
        train_temperature: float = 0.1,
        pixel_range: list[float] | tuple[float, float] = (-1.0, 1.0),
        initializer_range: float = 0.02,
        **kwargs,
    ):
        check_sizes(image_size=image_size, patch_size=patch_size, num_tokens=num_tokens, num_bits=num_bits,
                    encoder_hidden_size=encoder_hidden_size, encoder_num_layers=encoder_num_layers,
                    encoder_num_heads=encoder_num_heads, decoder_hidden_size=decoder_hidden_size,
                    decoder_num_layers=decoder_num_layers, decoder_num_heads=decoder_num_heads)
        check_positive_numbers(rope_theta=rope_theta, mlp_ratio=mlp_ratio, rms_norm_eps=rms_norm_eps,
                               train_temperature=train_temperature, initializer_range=initializer_range)
        if num_bits > 64:
            raise ValueError(f"num_bits must be at most 64 (a packed token is an int64), got {num_bits}")
        for name, width, heads in (("encoder", encoder_hidden_size, encoder_num_heads),
                                   ("decoder", decoder_hidden_size, decoder_num_heads)):
            if width % heads:
                raise ValueError(f"{name}_hidden_size {width} must be divisible by {name}_num_heads {heads}")
            if sum(axes_dims_rope) != width // heads:
                raise ValueError(f"axes_dims_rope {list(axes_dims_rope)} must sum to the {name} head size {width // heads}")
        if any(d % 2 or d < 2 for d in axes_dims_rope) or len(axes_dims_rope) != 3:
            raise ValueError(f"axes_dims_rope must be three even sizes, got {list(axes_dims_rope)}")
        for name, layers, depth in (("downsample_layers", downsample_layers, encoder_num_layers),
                                    ("upsample_layers", upsample_layers, decoder_num_layers)):
            if any(not isinstance(i, int) or not 0 <= i < depth for i in layers) or len(set(layers)) != len(layers):
                raise ValueError(f"{name} must be distinct block indices in 0..{depth - 1}, got {list(layers)}")
        if len(downsample_layers) != len(upsample_layers) or len(upsample_layers) > 1:
            # the original decoder divides the grid by 2 * len(upsample_idx), right only for 0 or 1 stage
            raise ValueError("downsample_layers and upsample_layers must hold the same number (0 or 1) of indices, "
                             f"got {list(downsample_layers)} and {list(upsample_layers)}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_tokens = num_tokens
        self.num_bits = num_bits
        self.codebook_size = 2**num_bits
        self.token_dim = encoder_hidden_size
        self.encoder_hidden_size = encoder_hidden_size
        self.encoder_num_layers = encoder_num_layers
        self.encoder_num_heads = encoder_num_heads
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_layers = decoder_num_layers
        self.decoder_num_heads = decoder_num_heads
        self.downsample_layers = list(downsample_layers)
        self.upsample_layers = list(upsample_layers)
        self.axes_dims_rope = list(axes_dims_rope)
        self.rope_theta = rope_theta
        self.rope_scale = rope_scale
        self.mlp_ratio = mlp_ratio
        self.rms_norm_eps = rms_norm_eps
        self.train_temperature = train_temperature
        self.pixel_range = list(pixel_range)
        self.initializer_range = initializer_range
        self.downsample_factor = patch_size * 2 ** len(self.downsample_layers)
        self.variable_length = False
        self.token_layout = "1d"
        for key in ("token_layout", "codebook_size", "token_dim", "downsample_factor", "variable_length"):
            kwargs.pop(key, None)
        if image_size % self.downsample_factor:
            raise ValueError(f"image_size {image_size} must be a multiple of {self.downsample_factor}")
        super().__init__(**kwargs)


def _set_text_training_fields(config, caption_dropout_prob, kwargs: dict) -> None:
    """What the generator trainer reads: text-conditional (``condition_type``), over the tokenizer's ``2**num_bits``
    possible tokens (``codebook_size``); captions dropped with ``caption_dropout_prob``."""
    if isinstance(caption_dropout_prob, bool) or not isinstance(caption_dropout_prob, (int, float)) \
            or not 0 <= caption_dropout_prob <= 1:
        raise ValueError(f"caption_dropout_prob must be a probability in [0, 1], got {caption_dropout_prob!r}")
    config.caption_dropout_prob = caption_dropout_prob
    for derived in ("condition_type", "codebook_size"):
        kwargs.pop(derived, None)
    config.condition_type = "text"
    config.codebook_size = 2**config.num_bits


def _set_generator_sizes(config, num_bits, num_tokens, hidden_size, num_hidden_layers, num_attention_heads,
                         text_hidden_size, mlp_ratio, rms_norm_eps, initializer_range, layer_norm_eps=None) -> None:
    """Checks and sets the sizes both generators share (``layer_norm_eps``: the diffusion generator's)."""
    check_sizes(num_bits=num_bits, num_tokens=num_tokens, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                num_attention_heads=num_attention_heads, text_hidden_size=text_hidden_size)
    epsilons = {"rms_norm_eps": rms_norm_eps} if layer_norm_eps is None else \
        {"rms_norm_eps": rms_norm_eps, "layer_norm_eps": layer_norm_eps}
    check_positive_numbers(mlp_ratio=mlp_ratio, **epsilons, initializer_range=initializer_range)
    if hidden_size % num_attention_heads:
        raise ValueError(f"hidden_size {hidden_size} must be divisible by num_attention_heads {num_attention_heads}")
    config.num_bits = num_bits
    config.num_tokens = num_tokens
    config.hidden_size = hidden_size
    config.num_hidden_layers = num_hidden_layers
    config.num_attention_heads = num_attention_heads
    config.text_hidden_size = text_hidden_size
    config.mlp_ratio = mlp_ratio
    for name, value in epsilons.items():
        setattr(config, name, value)
    config.initializer_range = initializer_range


class InstellaARConfig(PreTrainedConfig):
    """Instella-T2I's autoregressive generator: a causal transformer over ``num_tokens`` bit vectors
    (``num_bits`` each) after a learned split token; block ``i`` attends over the projected hidden state ``i+1``
    of the OLMo text encoder (``text_hidden_size`` wide) followed by the image tokens.

    Args:
        num_bits / num_tokens: the tokenizer's bits per token and token count (64 / 128).
        hidden_size / num_hidden_layers / num_attention_heads: the release: 2048 / 16 (the OLMo depth) / 16.
        text_hidden_size: the OLMo width (2048).
        sampling_defaults: the released sampling settings (``guidance_scale`` 7.5, ``temperature`` 1.0).
        caption_dropout_prob: in training, a caption is replaced by "" with this probability (classifier-free
            guidance; the original's ``uncond_prob`` 0.1).
    """

    model_type = "vistok_instella_ar"

    def __init__(self, num_bits: int = 64, num_tokens: int = 128, hidden_size: int = 2048, num_hidden_layers: int = 16,
                 num_attention_heads: int = 16, text_hidden_size: int = 2048, mlp_ratio: float = 4.0,
                 rms_norm_eps: float = 1e-6, initializer_range: float = 0.02, sampling_defaults: dict | None = None,
                 caption_dropout_prob: float = 0.1, **kwargs):
        _set_generator_sizes(self, num_bits, num_tokens, hidden_size, num_hidden_layers, num_attention_heads,
                             text_hidden_size, mlp_ratio, rms_norm_eps, initializer_range)
        self.sampling_defaults = dict(sampling_defaults or {"guidance_scale": 7.5, "temperature": 1.0})
        _set_text_training_fields(self, caption_dropout_prob, kwargs)
        super().__init__(**kwargs)


DIFFUSION_STEP_RULES = ("protocol_1", "protocol_2")


class InstellaDiffusionConfig(PreTrainedConfig):
    """Instella-T2I's diffusion generator over binary latents: a non-causal transformer over ``num_tokens`` bit
    vectors (``num_bits`` each) conditioned on a timestep t in [0, 1] (adaLN-zero) and, in block ``i``, on the
    projected hidden state ``i+1`` of the OLMo text encoder; it predicts a flip logit per bit.

    Args:
        num_bits / num_tokens: the tokenizer's bits per token and token count (64 / 128).
        hidden_size / num_hidden_layers / num_attention_heads: the release: 2048 / 16 (the OLMo depth) / 16.
        text_hidden_size: the OLMo width (2048).
        sampling_defaults: the released sampling settings (``test_diff.py``): ``guidance_scale`` 7.5,
            ``temperature`` 1.0, ``num_inference_steps`` 20, ``rho`` 1.0 (timesteps ``(1 - i/N)**rho``) and
            ``step_rule`` "protocol_1" (the original's ``protocal_1``; "protocol_2" is its other rule).
        caption_dropout_prob: in training, a caption is replaced by "" with this probability (classifier-free
            guidance; the original's ``uncond_prob`` 0.1).
    """

    model_type = "vistok_instella_diffusion"

    def __init__(self, num_bits: int = 64, num_tokens: int = 128, hidden_size: int = 2048, num_hidden_layers: int = 16,
                 num_attention_heads: int = 16, text_hidden_size: int = 2048, mlp_ratio: float = 4.0,
                 rms_norm_eps: float = 1e-6, layer_norm_eps: float = 1e-6, initializer_range: float = 0.02,
                 sampling_defaults: dict | None = None, caption_dropout_prob: float = 0.1, **kwargs):
        _set_generator_sizes(self, num_bits, num_tokens, hidden_size, num_hidden_layers, num_attention_heads,
                             text_hidden_size, mlp_ratio, rms_norm_eps, initializer_range, layer_norm_eps)
        defaults = {"guidance_scale": 7.5, "temperature": 1.0, "num_inference_steps": 20, "rho": 1.0, "step_rule": "protocol_1"}
        defaults.update(sampling_defaults or {})
        if defaults["step_rule"] not in DIFFUSION_STEP_RULES:
            raise ValueError(f"sampling_defaults['step_rule'] must be one of {DIFFUSION_STEP_RULES}, got {defaults['step_rule']!r}")
        self.sampling_defaults = defaults
        _set_text_training_fields(self, caption_dropout_prob, kwargs)
        super().__init__(**kwargs)
