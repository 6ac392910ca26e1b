from .base import QuantizerOutput
from .gaussian import DiagonalGaussianPosterior
from .vq import VectorQuantizer

__all__ = ["QuantizerOutput", "VectorQuantizer", "DiagonalGaussianPosterior"]
