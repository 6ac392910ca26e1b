"""Configurations of LlamaGen (FoundationVision/LlamaGen): the VQ image tokenizers and the Llama-style
autoregressive generator (class- or text-conditional)."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ..config_checks import check_positive_numbers, check_probabilities, check_size_list, check_sizes
from ..layers.conv_config import SquareGridTokenizerConfigMixin, check_downsampling
from ..layers.llama_config import LlamaGeneratorConfigMixin, check_llama_numbers, check_llama_shape, swiglu_hidden_size

CONDITION_TYPES = ("class", "text")
# "rope_2d": LlamaGen's 2D RoPE over the square token grid; "learned": a learned absolute position embedding
# added to the condition and token embeddings, no RoPE (GPTs over 1D token sequences)
POSITION_EMBEDDINGS = ("rope_2d", "learned")

# The original's size table (autoregressive/models/gpt.py GPT_models): layers, heads, width.
GPT_PRESETS = {
    "GPT-B": dict(num_hidden_layers=12, num_attention_heads=12, hidden_size=768),
    "GPT-L": dict(num_hidden_layers=24, num_attention_heads=16, hidden_size=1024),
    "GPT-XL": dict(num_hidden_layers=36, num_attention_heads=20, hidden_size=1280),
    "GPT-XXL": dict(num_hidden_layers=48, num_attention_heads=24, hidden_size=1536),
    "GPT-XXXL": dict(num_hidden_layers=48, num_attention_heads=40, hidden_size=2560),  # upstream GPT_XXXL (3.9B)
    "GPT-1B": dict(num_hidden_layers=22, num_attention_heads=32, hidden_size=2048),
    "GPT-3B": dict(num_hidden_layers=24, num_attention_heads=32, hidden_size=3200),
    "GPT-7B": dict(num_hidden_layers=32, num_attention_heads=32, hidden_size=4096),
}

# What the pipelines fall back to (the original sample_c2i.py); converters store each release's own.
DEFAULT_SAMPLING = {"guidance_scale": 4.0, "cfg_interval": -1, "temperature": 1.0, "top_k": 2000, "top_p": 1.0}


class LlamaGenConfig(LlamaGeneratorConfigMixin, PreTrainedConfig):
    """The LlamaGen GPT: ``num_condition_tokens`` condition embeddings (a class label, or T5 caption
    features through an MLP) followed by ``num_tokens`` image tokens on a square grid, predicting the
    next image token over ``codebook_size`` codes.

    ``class_dropout_prob > 0`` adds the null-class row ``num_classes`` (class) or uses the learned
    ``uncond_embedding`` (text) for classifier-free guidance. ``sampling_defaults`` holds the released
    sampling settings (see ``DEFAULT_SAMPLING``).
    """

    model_type = "vistok_llamagen_gpt"
    # the generator's vocabulary is the tokenizer's codebook (input embeddings and output head)
    attribute_map = {"vocab_size": "codebook_size"}
    _presets, _preset_kind = GPT_PRESETS, "LlamaGen GPT"

    def __init__(self, condition_type: str = "class", codebook_size: int = 16384, num_tokens: int = 256,
                 hidden_size: int = 768, num_hidden_layers: int = 12, num_attention_heads: int = 12,
                 num_key_value_heads: int | None = None, intermediate_size: int | None = None,
                 rope_theta: float = 10000.0, rms_norm_eps: float = 1e-5, num_classes: int = 1000,
                 caption_dim: int = 2048, num_condition_tokens: int | None = None, class_dropout_prob: float = 0.1,
                 token_dropout: float = 0.1, attention_dropout: float = 0.0, residual_dropout: float = 0.1,
                 ffn_dropout: float = 0.1, drop_path_rate: float = 0.0, initializer_range: float = 0.02,
                 sampling_defaults: dict | None = None, position_embedding: str = "rope_2d", **kwargs):
        check_sizes(codebook_size=codebook_size, num_tokens=num_tokens, hidden_size=hidden_size,
                    num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                    num_key_value_heads=num_key_value_heads, intermediate_size=intermediate_size, num_classes=num_classes,
                    caption_dim=caption_dim, num_condition_tokens=num_condition_tokens)
        check_llama_numbers(rope_theta=rope_theta, rms_norm_eps=rms_norm_eps, initializer_range=initializer_range,
                            class_dropout_prob=class_dropout_prob, token_dropout=token_dropout, attention_dropout=attention_dropout,
                            residual_dropout=residual_dropout, ffn_dropout=ffn_dropout, drop_path_rate=drop_path_rate)
        if condition_type not in CONDITION_TYPES:
            raise ValueError(f"condition_type must be one of {CONDITION_TYPES}, got {condition_type!r}")
        if position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(f"position_embedding must be one of {POSITION_EMBEDDINGS}, got {position_embedding!r}")
        num_key_value_heads = check_llama_shape(num_tokens, hidden_size, num_attention_heads, num_key_value_heads,
                                                rope_2d=position_embedding == "rope_2d")
        intermediate_size = intermediate_size or swiglu_hidden_size(hidden_size)
        self._set_llama_fields(locals())
        self.condition_type = condition_type
        self.codebook_size = codebook_size
        self.caption_dim = caption_dim
        self.num_condition_tokens = num_condition_tokens or (1 if condition_type == "class" else 120)
        self.sampling_defaults = {**DEFAULT_SAMPLING, **(sampling_defaults or {})}
        self.position_embedding = position_embedding
        super().__init__(**kwargs)


class LlamaGenVQConfig(SquareGridTokenizerConfigMixin, PreTrainedConfig):
    """A LlamaGen VQ tokenizer (tokenizer/tokenizer_image/vq_model.py): taming-style conv encoder ->
    1x1 ``quant_conv`` to ``token_dim`` -> L2-normalised (cosine) VQ over ``codebook_size`` codes ->
    1x1 ``post_quant_conv`` -> conv decoder. VQ-16: channel_mult (1, 1, 2, 2, 4); VQ-8: (1, 2, 2, 4).

    The network is fully convolutional: square images whose side is a multiple of the downsampling
    factor all work (256, 384 and 512 in the releases); ``image_size`` is the default one (what the
    image processor resizes to) and sets ``num_tokens``. Pixels are in [-1, 1].
    """

    model_type = "vistok_llamagen_vq"
    _channel_mult_field = "encoder_channel_mult"

    def __init__(self, image_size: int = 256, codebook_size: int = 16384, token_dim: int = 8, use_l2_norm: bool = True,
                 commitment_cost: float = 0.25, hidden_channels: int = 128,
                 encoder_channel_mult: list[int] | tuple[int, ...] = (1, 1, 2, 2, 4),
                 decoder_channel_mult: list[int] | tuple[int, ...] | None = None, num_res_blocks: int = 2,
                 z_channels: int = 256, dropout: float = 0.0, pixel_range: list[float] | tuple[float, float] = (-1.0, 1.0),
                 initializer_range: float = 0.02, **kwargs):
        check_sizes(image_size=image_size, codebook_size=codebook_size, token_dim=token_dim, hidden_channels=hidden_channels,
                    num_res_blocks=num_res_blocks, z_channels=z_channels)
        check_positive_numbers(initializer_range=initializer_range)
        check_probabilities(dropout=dropout)
        check_size_list("encoder_channel_mult", encoder_channel_mult)
        if decoder_channel_mult is not None:
            check_size_list("decoder_channel_mult", decoder_channel_mult)
        decoder_channel_mult = encoder_channel_mult if decoder_channel_mult is None else decoder_channel_mult
        if len(encoder_channel_mult) != len(decoder_channel_mult):
            raise ValueError(f"encoder and decoder must have as many levels: {list(encoder_channel_mult)} vs {list(decoder_channel_mult)}")
        factor = check_downsampling(image_size, encoder_channel_mult)
        if z_channels % 32:
            raise ValueError(f"z_channels must be a multiple of 32 (GroupNorm with 32 groups), got {z_channels}")
        self.image_size = image_size
        self.codebook_size = codebook_size
        self.token_dim = token_dim
        self.use_l2_norm = use_l2_norm
        self.commitment_cost = commitment_cost
        self.hidden_channels = hidden_channels
        self.encoder_channel_mult = list(encoder_channel_mult)
        self.decoder_channel_mult = list(decoder_channel_mult)
        self.num_res_blocks = num_res_blocks
        self.z_channels = z_channels
        self.dropout = dropout
        self.pixel_range = list(pixel_range)
        self.initializer_range = initializer_range
        self._set_square_grid(image_size, factor, kwargs)
        super().__init__(**kwargs)
