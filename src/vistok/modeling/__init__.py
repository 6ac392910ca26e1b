from .base import VisualTokenizerEncoderOutput, VisualTokenizerMixin, VisualTokenizerOutput
from .one_d_piece import OneDPieceConfig, OneDPieceModel
from .titok import TiTokConfig, TiTokModel

__all__ = [
    "VisualTokenizerMixin",
    "VisualTokenizerEncoderOutput",
    "VisualTokenizerOutput",
    "TiTokConfig",
    "TiTokModel",
    "OneDPieceConfig",
    "OneDPieceModel",
]
