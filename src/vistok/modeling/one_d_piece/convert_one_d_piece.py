"""Convert One-D-Piece tokenizer checkpoints (turingmotors/One-D-Piece): TiTok's release layout and
key names, always the legacy two-stage decoder, read by TiTok's converter into a One-D-Piece model."""

from __future__ import annotations

from pathlib import Path

from ...conversion import Release
from ..titok.convert_titok import legacy_vq_model, rfid, convert_release
from .configuration_one_d_piece import OneDPieceConfig
from .modeling_one_d_piece import OneDPieceModel

_README = "turingmotors/One-D-Piece README.md (256 tokens)"

RELEASES = {
    "one-d-piece-s256": Release("turing-motors/One-D-Piece-S-256", "One-D-Piece-S-256: small encoder/decoder, up to 256 tokens.",
                                settings=legacy_vq_model("small", "small", 256), metrics=rfid(1.48, _README)),
    "one-d-piece-b256": Release("turing-motors/One-D-Piece-B-256", "One-D-Piece-B-256: base encoder/decoder, up to 256 tokens.",
                                settings=legacy_vq_model("base", "base", 256), metrics=rfid(1.11, _README)),
    "one-d-piece-l256": Release("turing-motors/One-D-Piece-L-256", "One-D-Piece-L-256: large encoder/decoder, up to 256 tokens.",
                                settings=legacy_vq_model("large", "large", 256), metrics=rfid(1.08, _README)),
}


def convert(source: str, output: str, **options) -> Path:
    """``vistok convert one-d-piece``: an original One-D-Piece tokenizer -> a vistok tokenizer folder."""
    return convert_release("one-d-piece", OneDPieceConfig, OneDPieceModel, RELEASES, source, output, legacy_only=True, **options)
