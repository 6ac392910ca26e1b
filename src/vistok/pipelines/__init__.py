"""diffusers pipelines by sampling kind: masked parallel decoding (MaskGIT, text-to-image MaskGen), autoregressive
next-token (class- and text-conditional, and over factorized sub-tokens or bits), discrete diffusion over bits and next-scale prediction; their shared
base in ``base.py``."""

from .autoregressive import AutoregressiveImagePipeline, TextToImageAutoregressivePipeline
from .base import VistokPipeline
from .factorized_autoregressive import FactorizedAutoregressiveImagePipeline
from .binary_autoregressive import BinaryAutoregressiveTextToImagePipeline
from .binary_diffusion import BinaryDiffusionTextToImagePipeline
from .maskgit import MaskGITPipeline
from .maskgit_t2i import MaskGenKLPipeline, MaskGenPipeline
from .next_scale import NextScalePipeline
from .next_scale_t2i import NextScaleTextToImagePipeline
from .tokenflow_t2i import TokenFlowTextToImagePipeline

__all__ = ["VistokPipeline", "MaskGITPipeline", "MaskGenPipeline", "MaskGenKLPipeline", "AutoregressiveImagePipeline",
           "TextToImageAutoregressivePipeline", "FactorizedAutoregressiveImagePipeline", "NextScalePipeline",
           "NextScaleTextToImagePipeline", "TokenFlowTextToImagePipeline", "BinaryAutoregressiveTextToImagePipeline",
           "BinaryDiffusionTextToImagePipeline"]
