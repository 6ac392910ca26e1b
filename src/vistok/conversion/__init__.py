"""Converters: original release checkpoint -> vistok ``save_pretrained`` folder with processor and card."""

from .common import ConversionError
from .titok import PRESETS as TITOK_PRESETS
from .titok import convert as convert_titok

# family name on the command line -> (convert function, presets)
CONVERTERS = {
    "titok": (lambda *a, **k: convert_titok("titok", *a, **k), TITOK_PRESETS["titok"]),
    "one-d-piece": (lambda *a, **k: convert_titok("one-d-piece", *a, **k), TITOK_PRESETS["one-d-piece"]),
}

__all__ = ["CONVERTERS", "ConversionError", "convert_titok"]
