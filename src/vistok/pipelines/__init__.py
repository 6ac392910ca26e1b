"""diffusers pipelines by sampling kind: masked parallel decoding (MaskGIT), autoregressive next-token
(class- and text-conditional, and over factorized sub-tokens) and next-scale prediction; their shared base in ``base.py``."""

from .autoregressive import AutoregressiveImagePipeline, TextToImageAutoregressivePipeline
from .base import VistokPipeline
from .factorized_autoregressive import FactorizedAutoregressiveImagePipeline
from .maskgit import MaskGITPipeline
from .next_scale import NextScalePipeline

__all__ = ["VistokPipeline", "MaskGITPipeline", "AutoregressiveImagePipeline", "TextToImageAutoregressivePipeline",
           "FactorizedAutoregressiveImagePipeline",
           "NextScalePipeline"]
