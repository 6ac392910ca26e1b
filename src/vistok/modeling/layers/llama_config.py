"""What the configs of the 2D-RoPE Llama generators share (LlamaGen's GPT, Open-MAGVIT2's factorized AR, IBQ's AR:
the models built on ``layers/llama.py``): the checks of their common fields, the SwiGLU width, and the sizes
derived from the fields (``grid_size``, ``head_dim``, ``has_null_condition``) plus the ``from_preset`` constructor.

Only behaviour lives here: each config still stores its own fields (its ``config.json`` keys are its own).
"""

from __future__ import annotations

import math

from ..config_checks import check_positive_numbers, check_probabilities


def swiglu_hidden_size(hidden_size: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None) -> int:
    """LlamaGen's FeedForward width: int(2 * 4 * dim / 3) (times the multiplier), rounded up to ``multiple_of``."""
    hidden = int(2 * 4 * hidden_size / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return hidden if hidden % multiple_of == 0 else hidden + multiple_of - hidden % multiple_of


def check_llama_numbers(*, rope_theta, rms_norm_eps, initializer_range, class_dropout_prob, token_dropout, attention_dropout,
                        residual_dropout, ffn_dropout, drop_path_rate) -> None:
    """The generator's scales (positive) and rates (in [0, 1])."""
    check_positive_numbers(rope_theta=rope_theta, rms_norm_eps=rms_norm_eps, initializer_range=initializer_range)
    check_probabilities(class_dropout_prob=class_dropout_prob, token_dropout=token_dropout, attention_dropout=attention_dropout,
                        residual_dropout=residual_dropout, ffn_dropout=ffn_dropout, drop_path_rate=drop_path_rate)


def check_llama_shape(num_tokens: int, hidden_size: int, num_attention_heads: int, num_key_value_heads: int | None,
                      rope_2d: bool = True) -> int:
    """A square token grid and heads of a size 2D RoPE can split (with ``rope_2d``), whole heads and KV-head groups;
    returns ``num_key_value_heads`` (None: as many as the attention heads)."""
    grid = math.isqrt(num_tokens)
    if rope_2d and (num_tokens < 1 or grid * grid != num_tokens):
        raise ValueError(f"num_tokens must be a perfect square (a square token grid), got {num_tokens}")
    if hidden_size % num_attention_heads:
        raise ValueError(f"hidden_size {hidden_size} must be divisible by num_attention_heads {num_attention_heads}")
    if rope_2d and (hidden_size // num_attention_heads) % 4:
        raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {hidden_size // num_attention_heads}")
    num_key_value_heads = num_key_value_heads or num_attention_heads
    if num_attention_heads % num_key_value_heads:
        raise ValueError(f"num_attention_heads {num_attention_heads} must be a multiple of num_key_value_heads {num_key_value_heads}")
    return num_key_value_heads


# the fields every Llama generator config stores under these names
LLAMA_FIELDS = ("num_tokens", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
                "rope_theta", "rms_norm_eps", "num_classes", "class_dropout_prob", "token_dropout", "attention_dropout",
                "residual_dropout", "ffn_dropout", "drop_path_rate", "initializer_range")


class LlamaGeneratorConfigMixin:
    """Derived sizes and presets of a Llama generator config (put before ``PreTrainedConfig`` in the bases). The
    config sets ``_presets`` (the original's size table, ``{name: fields}``) and ``_preset_kind`` (named in errors)."""

    _presets = {}
    _preset_kind = "generator"

    def _set_llama_fields(self, values: dict) -> None:
        """Store the shared fields (``LLAMA_FIELDS``) from ``values`` (the config's ``locals()``, checked and defaulted)."""
        for name in LLAMA_FIELDS:
            setattr(self, name, values[name])

    @classmethod
    def from_preset(cls, name: str, **kwargs):
        """A config of one of the original sizes (``_presets``), with ``kwargs`` on top."""
        if name not in cls._presets:
            raise ValueError(f"unknown {cls._preset_kind} size {name!r}; choose from {sorted(cls._presets)}")
        return cls(**{**cls._presets[name], **kwargs})

    @property
    def grid_size(self) -> int:
        return math.isqrt(self.num_tokens)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def has_null_condition(self) -> bool:
        """Whether guidance is possible: the null-class row / learned unconditional caption exists."""
        return self.condition_type == "text" or self.class_dropout_prob > 0
