"""What the configs of the taming-style conv tokenizers share (LlamaGen VQ, Open-MAGVIT2 LFQ, IBQ: the models on
``layers/conv_autoencoder.py`` with a square token grid): the checks of the levels' widths and of the image size,
the token-grid fields every tokenizer config records, and ``downsample_factor``.

Only behaviour lives here: each config still stores its own fields (its ``config.json`` keys are its own).
"""

from __future__ import annotations


def check_group_norm_widths(hidden_channels: int, channel_mult) -> None:
    """Every level's width ``hidden_channels x mult`` splits into GroupNorm's 32 groups."""
    for mult in channel_mult:
        if (hidden_channels * mult) % 32:
            raise ValueError(f"hidden_channels x channel_mult must be multiples of 32 (GroupNorm with 32 groups), "
                             f"got {hidden_channels} x {list(channel_mult)}")


def check_downsampling(image_size: int, channel_mult) -> int:
    """The downsampling factor of ``len(channel_mult)`` levels (one halving between levels), which ``image_size``
    must be a multiple of."""
    factor = 2 ** (len(channel_mult) - 1)
    if image_size < factor or image_size % factor:
        raise ValueError(f"image_size must be a multiple of the downsampling factor {factor}, got {image_size}")
    return factor


class SquareGridTokenizerConfigMixin:
    """A conv tokenizer config's token grid (put before ``PreTrainedConfig`` in the bases). ``_channel_mult_field``
    names the encoder's channel multipliers (one per level)."""

    _channel_mult_field = "channel_mult"

    def _set_square_grid(self, image_size: int, factor: int, kwargs: dict, derived: tuple = ()) -> None:
        """Record the ``(image_size / factor)^2`` tokens of the fixed 2D layout; drop these derived fields (and
        ``derived``) from ``kwargs`` (a saved config.json holds them)."""
        self.num_tokens = (image_size // factor) ** 2
        self.token_layout = "2d"
        self.variable_length = False
        for key in ("num_tokens", "token_layout", "variable_length", *derived):
            kwargs.pop(key, None)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(getattr(self, self._channel_mult_field)) - 1)
