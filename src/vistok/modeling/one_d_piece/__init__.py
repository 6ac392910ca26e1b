"""One-D-Piece (turingmotors/One-D-Piece): legacy TiTok trained with tail token drop, so any prefix
of its tokens decodes to an image — a variable-length ("quality-controllable") tokenizer."""

from ...families import TOKENIZER, ConverterSpec, Family, TokenizerSpec
from ..titok.convert_titok import CLI_OPTIONS
from . import convert_one_d_piece
from .configuration_one_d_piece import OneDPieceConfig
from .modeling_one_d_piece import OneDPieceModel

FAMILY = Family(
    name="one-d-piece",
    description="One-D-Piece variable-length 1D tokenizers (turingmotors/One-D-Piece)",
    tokenizers=(TokenizerSpec("one-d-piece", OneDPieceConfig, OneDPieceModel),),
    converters=(ConverterSpec("one-d-piece", TOKENIZER, convert_one_d_piece.convert, convert_one_d_piece.RELEASES, CLI_OPTIONS,
                              "a One-D-Piece tokenizer: architecture from the checkpoint's shapes, the rest from the original config"),),
)

__all__ = ["FAMILY", "OneDPieceConfig", "OneDPieceModel"]
