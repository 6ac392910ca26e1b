"""Models: the VisualTokenizer contract (base.py), shared layers and quantizers, and one folder per family
(each exporting its ``FAMILY`` descriptor; see :mod:`vistok.families`)."""

from .base import VisualTokenizerEncoderOutput, VisualTokenizerMixin, VisualTokenizerOutput

__all__ = ["VisualTokenizerMixin", "VisualTokenizerEncoderOutput", "VisualTokenizerOutput"]
