"""Configuration of STAR ("STAR: Scale-wise Text-conditioned AutoRegressive image generation",
Davinci-XLab/STAR-T2I): VAR's next-scale transformer made text-conditional."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedConfig

from ..config_checks import check_positive_numbers, check_probabilities, check_sizes
from ..var.configuration_var import _check_patch_nums

# The releases' scale schedules (sample.py / demo_gradio.py ``patch_nums``)
PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
PATCH_NUMS_1024 = (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64)
SCALE_SCHEDULES = {256: PATCH_NUMS_256, 512: PATCH_NUMS_512, 1024: PATCH_NUMS_1024}

# The README's evaluation settings (cfg 4.0, top-p 0.8, top-k 4096 = off)
DEFAULT_SAMPLING = {"guidance_scale": 4.0, "top_k": 0, "top_p": 0.8, "masking_sampler": False}


class STARConfig(PreTrainedConfig):
    """STAR next-scale transformer (star-256 d16/d30, star-512, star-1024, star-1024-sampler).

    VAR's stack (width ``hidden_size`` = 64 * depth, ``depth`` heads, cosine attention with a learned
    per-head scale, GELU-tanh MLP) without AdaLN: every block is pre-norm (one LayerNorm without
    affine parameters) self-attention, cross-attention to the text features (``text_hidden_size``
    wide: SD 2.1's CLIP text tower, 1024) and MLP. The start token is ``text_projection`` of the
    pooled text feature; positions are a per-scale level embedding plus a normalized 2D RoPE on the
    self-attention queries and keys: on each ``pn x pn`` scale the token coordinates are rescaled to
    ``[0, rope_norm]`` (``rope_theta`` the base), so every scale spans the same angles.

    ``cross_attention_first_sample_only`` (True for the releases): the original picks element 0 of the
    cross-attention output and broadcasts it, so every sample of a batch receives sample 0's text
    attention; the released weights were trained and evaluated that way. False gives each sample
    its own. ``num_sampler_blocks`` (3 for star-1024-sampler, else 0): the refinement head of the
    causal-driven stable sampler, used from scale ``sampler_from_scale`` on.
    """

    model_type = "vistok_star"
    attribute_map = {"num_hidden_layers": "depth"}

    def __init__(
        self,
        codebook_size: int = 4096,
        z_channels: int = 32,
        patch_nums: Sequence[int] = PATCH_NUMS_256,
        depth: int = 16,
        hidden_size: int = 1024,
        num_attention_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
        attn_l2_norm: bool = True,
        text_hidden_size: int = 1024,
        num_text_tokens: int = 77,
        rope_theta: float = 10000.0,
        rope_norm: float = 64.0,
        logit_norm: bool = True,
        cross_attention_first_sample_only: bool = True,
        num_sampler_blocks: int = 0,
        sampler_from_scale: int = 9,
        drop_rate: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        text_dropout: float = 0.1,
        init_head: float = 0.02,
        initializer_range: float | None = None,
        sampling_defaults: dict | None = None,
        **kwargs,
    ):
        check_sizes(codebook_size=codebook_size, z_channels=z_channels, depth=depth, hidden_size=hidden_size,
                    num_attention_heads=num_attention_heads, text_hidden_size=text_hidden_size, num_text_tokens=num_text_tokens)
        check_positive_numbers(mlp_ratio=mlp_ratio, norm_eps=norm_eps, rope_theta=rope_theta, rope_norm=rope_norm,
                               initializer_range=initializer_range)
        check_probabilities(drop_rate=drop_rate, attention_dropout=attention_dropout, drop_path_rate=drop_path_rate,
                            text_dropout=text_dropout)
        patch_nums = _check_patch_nums(patch_nums)
        if hidden_size % num_attention_heads or (hidden_size // num_attention_heads) % 4:
            raise ValueError(f"hidden_size {hidden_size} must split into {num_attention_heads} heads of a size divisible by 4 (2D RoPE)")
        if isinstance(num_sampler_blocks, bool) or not isinstance(num_sampler_blocks, int) or num_sampler_blocks < 0:
            raise ValueError(f"num_sampler_blocks must be an int >= 0, got {num_sampler_blocks!r}")
        if num_sampler_blocks and not 0 < sampler_from_scale < len(patch_nums):
            raise ValueError(f"sampler_from_scale must lie in [1, {len(patch_nums) - 1}], got {sampler_from_scale}")
        self.codebook_size = codebook_size
        self.z_channels = z_channels
        self.patch_nums = list(patch_nums)
        self.depth = depth
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.mlp_ratio = mlp_ratio
        self.norm_eps = norm_eps
        self.attn_l2_norm = attn_l2_norm
        self.text_hidden_size = text_hidden_size
        self.num_text_tokens = num_text_tokens
        self.rope_theta = float(rope_theta)
        self.rope_norm = float(rope_norm)
        self.logit_norm = logit_norm
        self.cross_attention_first_sample_only = cross_attention_first_sample_only
        self.num_sampler_blocks = num_sampler_blocks
        self.sampler_from_scale = sampler_from_scale
        self.drop_rate = drop_rate
        self.attention_dropout = attention_dropout
        self.drop_path_rate = drop_path_rate
        self.text_dropout = text_dropout
        self.init_head = init_head
        self.initializer_range = initializer_range if initializer_range is not None else (1 / hidden_size / 3) ** 0.5
        self.sampling_defaults = {**DEFAULT_SAMPLING, **(sampling_defaults or {})}
        for derived in ("num_tokens", "condition_type"):
            kwargs.pop(derived, None)
        self.num_tokens = sum(p * p for p in patch_nums)
        self.condition_type = "text"  # what the generator trainer reads: STAR always trains on captions
        super().__init__(**kwargs)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)
