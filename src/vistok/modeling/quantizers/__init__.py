"""Quantizers, one contract (see base.py): forward(z) -> QuantizerOutput, indices_to_codes, codes_to_indices."""

from .base import ProjectedQuantizer, Quantizer, QuantizerOutput, usage_statistics
from .bits import bits_to_indices, indices_to_bits, merge_indices, split_indices
from .bsq import BSQ, BinaryQuantizer
from .fsq import FSQ
from .gaussian import DiagonalGaussianPosterior
from .index_propagation import IndexPropagationQuantizer
from .lfq import LFQ
from .multiscale import MultiScaleResidualQuantizer
from .residual import ResidualVQ
from .shared_mapping import SharedMappingMultiScaleQuantizer
from .vq import VectorQuantizer

__all__ = [
    "Quantizer", "ProjectedQuantizer", "QuantizerOutput", "usage_statistics",
    "VectorQuantizer", "IndexPropagationQuantizer", "ResidualVQ", "MultiScaleResidualQuantizer", "SharedMappingMultiScaleQuantizer",
    "FSQ", "LFQ", "BSQ", "BinaryQuantizer", "split_indices", "merge_indices", "bits_to_indices", "indices_to_bits",
    "DiagonalGaussianPosterior",
]
