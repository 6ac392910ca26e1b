"""Configurations of VAR ("Visual Autoregressive Modeling", Tian et al. 2024, FoundationVision/VAR):
the multi-scale residual VQVAE tokenizer and the next-scale-prediction transformer."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedConfig

from ..config_checks import check_positive_numbers, check_probabilities, check_size_list, check_sizes

from ..quantizers.multiscale import DEFAULT_PATCH_NUMS, check_num_residual_convs, convert_var_quantizer_kwargs

# The settings NextScalePipeline falls back to: the README's FID settings (cfg 1.5, top-k 900, top-p 0.96).
DEFAULT_SAMPLING = {"guidance_scale": 1.5, "top_k": 900, "top_p": 0.96, "smooth_sampling": False}


def _check_patch_nums(patch_nums) -> tuple[int, ...]:
    nums = tuple(patch_nums) if isinstance(patch_nums, Sequence) and not isinstance(patch_nums, str) else ()
    if not nums or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in nums):
        raise ValueError(f"patch_nums must be a non-empty sequence of positive integers (coarse to fine), got {patch_nums!r}")
    return nums


LEGACY_QUANTIZER_NAMES = ("beta", "using_znorm", "quant_resi", "share_quant_resi", "default_qresi_counts")


class VARVQVAEConfig(PreTrainedConfig):
    """VAR's multi-scale residual VQVAE (``vae_ch160v4096z32``).

    Conv encoder ``channels * channel_mult`` (``num_res_blocks`` per level, attention at the lowest
    level and in the middle) -> 3x3 ``quant_conv`` -> multi-scale residual quantizer over
    ``patch_nums`` (one ``codebook_size x z_channels`` codebook, Euclidean lookup unless
    ``use_l2_norm``) -> 3x3 ``post_quant_conv`` -> conv decoder (``num_res_blocks + 1`` blocks per level).
    The quantizer settings (``commitment_cost``, ``use_l2_norm``, ``residual_ratio``,
    ``num_residual_convs``) are :class:`MultiScaleResidualQuantizer`'s arguments; configs saved with
    VAR's names (``beta``, ``using_znorm``, ``quant_resi``, ``share_quant_resi``,
    ``default_qresi_counts``) still load.

    Token layout ("multiscale"): ``token_ids [B, num_tokens]`` concatenates the scales coarse to fine,
    each ``pn x pn`` map row-major; ``num_tokens = sum(pn**2)`` (680 for the released 10 scales at
    256 px). ``scale_lengths`` / ``scale_offsets`` give the layout. ``image_size`` is
    ``patch_nums[-1] * 2 ** (len(channel_mult) - 1)``. Pixels are in [-1, 1].
    """

    model_type = "vistok_var_vqvae"

    def __init__(
        self,
        codebook_size: int = 4096,
        z_channels: int = 32,
        channels: int = 160,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        dropout: float = 0.0,
        commitment_cost: float = 0.25,
        use_l2_norm: bool = False,
        quant_conv_kernel_size: int = 3,
        residual_ratio: float = 0.5,
        num_residual_convs: int | None = 4,
        patch_nums: Sequence[int] = DEFAULT_PATCH_NUMS,
        pixel_range: Sequence[float] = (-1.0, 1.0),
        initializer_range: float = 0.02,
        **kwargs,
    ):
        check_sizes(codebook_size=codebook_size, z_channels=z_channels, channels=channels, num_res_blocks=num_res_blocks)
        check_positive_numbers(initializer_range=initializer_range)
        check_probabilities(dropout=dropout)
        check_size_list("channel_mult", channel_mult)
        # configs written before the quantizer took the library's argument names
        legacy = {key: kwargs.pop(key) for key in LEGACY_QUANTIZER_NAMES if key in kwargs}
        if legacy:
            renamed = convert_var_quantizer_kwargs(legacy)
            commitment_cost = renamed.get("commitment_cost", commitment_cost)
            use_l2_norm = renamed.get("use_l2_norm", use_l2_norm)
            residual_ratio = renamed.get("residual_ratio", residual_ratio)
            num_residual_convs = renamed.get("num_residual_convs", num_residual_convs)
        patch_nums = _check_patch_nums(patch_nums)
        check_num_residual_convs(num_residual_convs)
        if quant_conv_kernel_size < 1 or quant_conv_kernel_size % 2 == 0:
            raise ValueError(f"quant_conv_kernel_size must be a positive odd integer, got {quant_conv_kernel_size}")
        self.codebook_size = codebook_size
        self.z_channels = z_channels
        self.channels = channels
        self.channel_mult = list(channel_mult)
        self.num_res_blocks = num_res_blocks
        self.dropout = dropout
        self.commitment_cost = commitment_cost
        self.use_l2_norm = use_l2_norm
        self.quant_conv_kernel_size = quant_conv_kernel_size
        self.residual_ratio = residual_ratio
        self.num_residual_convs = num_residual_convs
        self.patch_nums = list(patch_nums)
        self.pixel_range = list(pixel_range)
        self.initializer_range = initializer_range
        for derived in ("image_size", "num_tokens", "token_layout", "variable_length", "scale_lengths", "scale_offsets"):
            kwargs.pop(derived, None)
        self.image_size = patch_nums[-1] * 2 ** (len(self.channel_mult) - 1)
        self.scale_lengths = [p * p for p in patch_nums]
        self.scale_offsets = [sum(self.scale_lengths[:k]) for k in range(len(patch_nums) + 1)]
        self.num_tokens = self.scale_offsets[-1]
        self.token_layout = "multiscale"
        self.variable_length = False
        super().__init__(**kwargs)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def token_dim(self) -> int:
        return self.z_channels


class VARConfig(PreTrainedConfig):
    """VAR next-scale-prediction transformer (VAR-d16 ... d30, d36 with shared AdaLN).

    A GPT-2/DiT-like stack of ``depth`` blocks of width ``hidden_size`` (VAR: 64 * depth) with
    ``num_attention_heads`` heads (VAR: depth): LayerNorm without affine parameters modulated by
    AdaLN from the class embedding, cosine attention with a learned per-head scale clamped at 100
    (``attn_l2_norm``; else dot-product attention scaled by 0.25 / sqrt(head_dim)), GELU-tanh MLP.
    Positions are a learned absolute embedding over all ``num_tokens`` plus a per-scale level
    embedding. Attention is block-causal across scales. ``shared_adaln`` (d36): one AdaLN linear for
    all blocks plus a learned per-block table.

    ``patch_nums``, ``codebook_size`` and ``z_channels`` must match the VQVAE it generates for.
    ``class_label_dropout`` is the training-time label dropout (VAR ``cond_drop_rate``);
    ``sampling_defaults`` the released sampling settings (see ``DEFAULT_SAMPLING``).
    """

    model_type = "vistok_var"
    attribute_map = {"num_hidden_layers": "depth"}  # transformers' name for the block count

    def __init__(
        self,
        codebook_size: int = 4096,
        z_channels: int = 32,
        patch_nums: Sequence[int] = DEFAULT_PATCH_NUMS,
        num_classes: int = 1000,
        depth: int = 16,
        hidden_size: int = 1024,
        num_attention_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
        shared_adaln: bool = False,
        attn_l2_norm: bool = True,
        drop_rate: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        class_label_dropout: float = 0.1,
        init_adaln: float = 0.5,
        init_adaln_gamma: float = 1e-5,
        init_head: float = 0.02,
        initializer_range: float | None = None,
        sampling_defaults: dict | None = None,
        **kwargs,
    ):
        check_sizes(codebook_size=codebook_size, z_channels=z_channels, num_classes=num_classes, depth=depth,
                    hidden_size=hidden_size, num_attention_heads=num_attention_heads)
        check_positive_numbers(mlp_ratio=mlp_ratio, norm_eps=norm_eps, initializer_range=initializer_range)
        check_probabilities(drop_rate=drop_rate, attention_dropout=attention_dropout, drop_path_rate=drop_path_rate,
                            class_label_dropout=class_label_dropout)
        patch_nums = _check_patch_nums(patch_nums)
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by num_attention_heads {num_attention_heads}")
        sampling = {**DEFAULT_SAMPLING, **(sampling_defaults or {})}
        self.codebook_size = codebook_size
        self.z_channels = z_channels
        self.patch_nums = list(patch_nums)
        self.num_classes = num_classes
        self.depth = depth
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.mlp_ratio = mlp_ratio
        self.norm_eps = norm_eps
        self.shared_adaln = shared_adaln
        self.attn_l2_norm = attn_l2_norm
        self.drop_rate = drop_rate
        self.attention_dropout = attention_dropout
        self.drop_path_rate = drop_path_rate
        self.class_label_dropout = class_label_dropout
        self.init_adaln = init_adaln
        self.init_adaln_gamma = init_adaln_gamma
        self.init_head = init_head
        # VAR's automatic init_std: sqrt(1 / (3 * width))
        self.initializer_range = initializer_range if initializer_range is not None else (1 / hidden_size / 3) ** 0.5
        self.sampling_defaults = sampling
        kwargs.pop("num_tokens", None)
        self.num_tokens = sum(p * p for p in patch_nums)
        super().__init__(**kwargs)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def null_class_id(self) -> int:
        """The unconditional label used for guidance (row ``num_classes`` of the class embedding)."""
        return self.num_classes
