"""One-D-Piece (turingmotors/One-D-Piece): legacy TiTok trained with tail token drop, so any prefix
of its tokens decodes to an image — a variable-length ("quality-controllable") tokenizer."""

from .configuration_one_d_piece import OneDPieceConfig
from .modeling_one_d_piece import OneDPieceModel

__all__ = ["OneDPieceConfig", "OneDPieceModel"]
