"""Configurations of Open-MAGVIT2 (TencentARC/SEED-Voken, ``src/Open_MAGVIT2``): the lookup-free (LFQ)
image tokenizers and the factorized autoregressive generator."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig

from ..config_checks import check_positive_numbers, check_size_list, check_sizes
from ..layers.conv_config import SquareGridTokenizerConfigMixin, check_downsampling, check_group_norm_widths
from ..layers.llama_config import LlamaGeneratorConfigMixin, check_llama_numbers, check_llama_shape, swiglu_hidden_size
from ..quantizers.bits import check_bit_groups


class OpenMagvit2Config(SquareGridTokenizerConfigMixin, PreTrainedConfig):
    """An Open-MAGVIT2 LFQ tokenizer (models/lfqgan.py ``VQModel``): a conv encoder without attention or
    biases down to ``num_bits`` channels, lookup-free quantization to ``±1`` per channel (token id
    ``Σ_i [z_i > 0]·2^i``, channel 0 least significant, over ``codebook_size = 2**num_bits``), and a conv
    decoder with adaptive GroupNorm (scale/shift from the quantized map's per-channel std/mean) and
    depth-to-space upsampling. IN-256: channel_mult (1, 1, 2, 2, 4); IN-128: (1, 2, 2, 4).

    ``factorized_bits`` is the generator's sub-token view of an id (``[6, 12]``: the low 6 bits and the high
    12, see ``split_token_ids``); ``entropy_*``/``commitment_cost`` are the training losses (the original's
    ``codebook_weight`` 0.1, ``commit_weight`` 0.25, temperature 0.01). Pixels are in [-1, 1].
    """

    model_type = "vistok_open_magvit2"

    def __init__(self, image_size: int = 256, num_bits: int = 18, hidden_channels: int = 128,
                 channel_mult: list[int] | tuple[int, ...] = (1, 1, 2, 2, 4), num_res_blocks: int = 4,
                 factorized_bits: list[int] | tuple[int, ...] | None = (6, 12), entropy_weight: float = 0.1,
                 commitment_cost: float = 0.25, diversity_gamma: float = 1.0, entropy_temperature: float = 0.01,
                 pixel_range: list[float] | tuple[float, float] = (-1.0, 1.0), initializer_range: float = 0.02, **kwargs):
        check_sizes(image_size=image_size, num_bits=num_bits, hidden_channels=hidden_channels, num_res_blocks=num_res_blocks)
        check_positive_numbers(entropy_temperature=entropy_temperature, initializer_range=initializer_range)
        check_size_list("channel_mult", channel_mult)
        if num_bits > 30:
            raise ValueError(f"num_bits must be at most 30 (codebook 2^30), got {num_bits}")
        if factorized_bits is not None:
            check_bit_groups(list(factorized_bits), num_bits)
        check_group_norm_widths(hidden_channels, channel_mult)
        factor = check_downsampling(image_size, channel_mult)
        self.image_size = image_size
        self.num_bits = num_bits
        self.codebook_size = 2**num_bits
        self.token_dim = num_bits
        self.hidden_channels = hidden_channels
        self.channel_mult = list(channel_mult)
        self.num_res_blocks = num_res_blocks
        self.factorized_bits = list(factorized_bits) if factorized_bits is not None else None
        self.entropy_weight = entropy_weight
        self.commitment_cost = commitment_cost
        self.diversity_gamma = diversity_gamma
        self.entropy_temperature = entropy_temperature
        self.pixel_range = list(pixel_range)
        self.initializer_range = initializer_range
        self._set_square_grid(image_size, factor, kwargs, derived=("codebook_size", "token_dim"))
        super().__init__(**kwargs)


# The original's sizes (configs/Open-MAGVIT2/gpu/imagenet_conditional_llama_{B,L,XL}.yaml).
AR_PRESETS = {
    "AR-B": dict(num_hidden_layers=24, num_factorized_layers=2, num_attention_heads=16, hidden_size=1024),
    "AR-L": dict(num_hidden_layers=36, num_factorized_layers=3, num_attention_heads=20, hidden_size=1280),
    "AR-XL": dict(num_hidden_layers=48, num_factorized_layers=4, num_attention_heads=24, hidden_size=1536),
}

# One value per sub-token (pre, post). What the pipeline falls back to: the AR-B evaluation settings of
# scripts/evaluation/sample_gpu.sh; converters store each release's own.
DEFAULT_SAMPLING = {"guidance_scale": [1.9, 2.0], "temperature": [1.0, 1.0], "top_k": [0, 0], "top_p": [1.0, 1.0]}


class OpenMagvit2ARConfig(LlamaGeneratorConfigMixin, PreTrainedConfig):
    """The Open-MAGVIT2 factorized generator (modules/transformer/gpt.py ``GPT``): each image token is split
    into sub-tokens over ``factorized_bits`` (``[6, 12]``: ``pre`` = the id's low 6 bits, ``post`` the high 12);
    the spatial LlamaGen blocks run over ``[class, pre_emb + post_emb of tokens 0..n-2]`` and, at each
    position, ``num_factorized_layers`` blocks over ``[h, pre_emb(pre)]`` give the two heads' logits.

    ``codebook_size`` is ``2 ** sum(factorized_bits)`` (the tokenizer's). ``sampling_defaults`` hold
    per-sub-token lists (``guidance_scale``, ``temperature``, ``top_k``, ``top_p``).
    """

    model_type = "vistok_open_magvit2_ar"
    _presets, _preset_kind = AR_PRESETS, "Open-MAGVIT2 AR"

    def __init__(self, factorized_bits: list[int] | tuple[int, ...] = (6, 12), num_tokens: int = 256,
                 hidden_size: int = 1024, num_hidden_layers: int = 24, num_factorized_layers: int = 2,
                 num_attention_heads: int = 16, num_key_value_heads: int | None = None, intermediate_size: int | None = None,
                 rope_theta: float = 10000.0, rms_norm_eps: float = 1e-5, num_classes: int = 1000,
                 class_dropout_prob: float = 0.1, token_dropout: float = 0.1, attention_dropout: float = 0.0,
                 residual_dropout: float = 0.1, ffn_dropout: float = 0.1, drop_path_rate: float = 0.0,
                 initializer_range: float = 0.02, sampling_defaults: dict | None = None, **kwargs):
        check_sizes(num_tokens=num_tokens, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                    num_factorized_layers=num_factorized_layers, num_attention_heads=num_attention_heads,
                    num_key_value_heads=num_key_value_heads, intermediate_size=intermediate_size, num_classes=num_classes)
        check_llama_numbers(rope_theta=rope_theta, rms_norm_eps=rms_norm_eps, initializer_range=initializer_range,
                            class_dropout_prob=class_dropout_prob, token_dropout=token_dropout, attention_dropout=attention_dropout,
                            residual_dropout=residual_dropout, ffn_dropout=ffn_dropout, drop_path_rate=drop_path_rate)
        bits = check_bit_groups(list(factorized_bits))
        if len(bits) != 2:
            raise ValueError(f"factorized_bits must be two groups (pre, post), got {bits}")
        if sum(bits) > 30:
            raise ValueError(f"factorized_bits must sum to at most 30 bits, got {bits}")
        num_key_value_heads = check_llama_shape(num_tokens, hidden_size, num_attention_heads, num_key_value_heads)
        intermediate_size = intermediate_size or swiglu_hidden_size(hidden_size)
        self._set_llama_fields(locals())
        self.factorized_bits = bits
        self.codebook_size = 2 ** sum(bits)
        self.num_factorized_layers = num_factorized_layers
        self.condition_type = "class"
        self.num_condition_tokens = 1
        self.sampling_defaults = {**DEFAULT_SAMPLING, **(sampling_defaults or {})}
        for key in ("codebook_size", "condition_type", "num_condition_tokens"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)


class IBQConfig(SquareGridTokenizerConfigMixin, PreTrainedConfig):
    """An IBQ tokenizer (src/IBQ/models/ibqgan.py ``IBQ``, same repository): the taming-transformers conv
    encoder/decoder (attention at the lowest resolution, the decoder with one ResNet block more per level)
    -> 1x1 ``quant_conv`` to ``token_dim`` -> index backpropagation quantization (dot-product argmax over
    ``codebook_size`` codes; see ``quantizers.IndexPropagationQuantizer``) -> 1x1 ``post_quant_conv``.
    Releases: z 256, token_dim 256, ch 128, channel_mult (1, 1, 2, 2, 4), 4 res blocks, codebooks 1024 ...
    262144. ``attention_levels``: the encoder/decoder levels with attention (the original's
    ``attn_resolutions`` [16] at 256 px is the lowest level). Pixels are in [-1, 1].
    """

    model_type = "vistok_ibq"

    def __init__(self, image_size: int = 256, codebook_size: int = 16384, token_dim: int = 256, z_channels: int = 256,
                 hidden_channels: int = 128, channel_mult: list[int] | tuple[int, ...] = (1, 1, 2, 2, 4), num_res_blocks: int = 4,
                 attention_levels: list[int] | tuple[int, ...] | None = None, commitment_cost: float = 0.25,
                 entropy_weight: float = 0.05, entropy_temperature: float = 0.01,
                 pixel_range: list[float] | tuple[float, float] = (-1.0, 1.0), initializer_range: float = 0.02, **kwargs):
        check_sizes(image_size=image_size, codebook_size=codebook_size, token_dim=token_dim, z_channels=z_channels,
                    hidden_channels=hidden_channels, num_res_blocks=num_res_blocks)
        check_positive_numbers(entropy_temperature=entropy_temperature, initializer_range=initializer_range)
        check_size_list("channel_mult", channel_mult)
        check_group_norm_widths(hidden_channels, channel_mult)
        if attention_levels is not None and any(not 0 <= level < len(channel_mult) for level in attention_levels):
            raise ValueError(f"attention_levels must be level indices in [0, {len(channel_mult) - 1}], got {list(attention_levels)}")
        factor = check_downsampling(image_size, channel_mult)
        self.image_size = image_size
        self.codebook_size = codebook_size
        self.token_dim = token_dim
        self.z_channels = z_channels
        self.hidden_channels = hidden_channels
        self.channel_mult = list(channel_mult)
        self.num_res_blocks = num_res_blocks
        self.attention_levels = list(attention_levels) if attention_levels is not None else [len(channel_mult) - 1]
        self.commitment_cost = commitment_cost
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        self.pixel_range = list(pixel_range)
        self.initializer_range = initializer_range
        self._set_square_grid(image_size, factor, kwargs)
        super().__init__(**kwargs)


# configs/IBQ/gpu/imagenet_conditional_llama_{B,L,XL,XXL}.yaml
IBQ_AR_PRESETS = {
    "IBQ-AR-B": dict(num_hidden_layers=16, num_attention_heads=16, hidden_size=1024),
    "IBQ-AR-L": dict(num_hidden_layers=20, num_attention_heads=20, hidden_size=1280),
    "IBQ-AR-XL": dict(num_hidden_layers=24, num_attention_heads=24, hidden_size=1536),
    "IBQ-AR-XXL": dict(num_hidden_layers=30, num_attention_heads=30, hidden_size=1920),
}
# scripts/evaluation/sample_gpu.sh, IBQ-AR-B; converters store each release's own.
IBQ_DEFAULT_SAMPLING = {"guidance_scale": 2.25, "cfg_interval": -1, "temperature": 1.1, "top_k": 0, "top_p": 1.0}


class IBQARConfig(LlamaGeneratorConfigMixin, PreTrainedConfig):
    """The IBQ autoregressive generator (src/IBQ/modules/transformer/llama.py ``GPT``): LlamaGen's class-conditional
    next-token Llama (2D RoPE with the class position zeroed, RMSNorm, SwiGLU) whose blocks are modulated by the
    class embedding through adaptive LayerNorm: per block ``(gamma1, gamma2, scale1, scale2, shift1, shift2) =
    adaln(silu(c))`` and ``x + gamma1 * attn(norm(x) * (1 + scale1) + shift1)`` (likewise the MLP), and an adaptive
    RMSNorm before the head. ``sampling_defaults`` as :class:`vistok.pipelines.AutoregressiveImagePipeline` takes them.
    """

    model_type = "vistok_ibq_ar"
    # the generator's vocabulary is the tokenizer's codebook (input embeddings and output head)
    attribute_map = {"vocab_size": "codebook_size"}
    _presets, _preset_kind = IBQ_AR_PRESETS, "IBQ AR"

    def __init__(self, codebook_size: int = 16384, num_tokens: int = 256, hidden_size: int = 1024, num_hidden_layers: int = 16,
                 num_attention_heads: int = 16, num_key_value_heads: int | None = None, intermediate_size: int | None = None,
                 rope_theta: float = 10000.0, rms_norm_eps: float = 1e-5, num_classes: int = 1000, class_dropout_prob: float = 0.1,
                 token_dropout: float = 0.1, attention_dropout: float = 0.0, residual_dropout: float = 0.1, ffn_dropout: float = 0.1,
                 drop_path_rate: float = 0.0, initializer_range: float = 0.02, adaln_gamma_init: float = 1e-3,
                 sampling_defaults: dict | None = None, **kwargs):
        check_sizes(codebook_size=codebook_size, num_tokens=num_tokens, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                    num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads,
                    intermediate_size=intermediate_size, num_classes=num_classes)
        check_llama_numbers(rope_theta=rope_theta, rms_norm_eps=rms_norm_eps, initializer_range=initializer_range,
                            class_dropout_prob=class_dropout_prob, token_dropout=token_dropout, attention_dropout=attention_dropout,
                            residual_dropout=residual_dropout, ffn_dropout=ffn_dropout, drop_path_rate=drop_path_rate)
        # (IBQ's own message for the head split; the shared check names the grid first, as before)
        if math.isqrt(num_tokens) ** 2 == num_tokens and (hidden_size % num_attention_heads or (hidden_size // num_attention_heads) % 4):
            raise ValueError(f"hidden_size {hidden_size} must split into num_attention_heads {num_attention_heads} heads of a size "
                             "divisible by 4 (2D RoPE)")
        num_key_value_heads = check_llama_shape(num_tokens, hidden_size, num_attention_heads, num_key_value_heads)
        intermediate_size = intermediate_size or swiglu_hidden_size(hidden_size)
        self._set_llama_fields(locals())
        self.codebook_size = codebook_size
        self.adaln_gamma_init = adaln_gamma_init
        self.condition_type = "class"
        self.num_condition_tokens = 1
        self.sampling_defaults = {**IBQ_DEFAULT_SAMPLING, **(sampling_defaults or {})}
        for key in ("condition_type", "num_condition_tokens"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
