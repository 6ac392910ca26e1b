"""diffusers pipelines by sampling kind: masked parallel decoding (MaskGIT, text-to-image MaskGen), autoregressive
next-token (class- and text-conditional, and over factorized sub-tokens or bits), discrete diffusion over bits and next-scale prediction; their shared
base in ``base.py``."""

from .autoregressive import AutoregressiveImagePipeline, TextToImageAutoregressivePipeline
from .base import VistokPipeline
from .factorized_autoregressive import FactorizedAutoregressiveImagePipeline
from .binary_autoregressive import BinaryAutoregressiveTextToImagePipeline
from .binary_diffusion import BinaryDiffusionTextToImagePipeline
from .maskgit import MaskGITPipeline
from .next_scale import NextScalePipeline
from .next_scale_t2i import NextScaleTextToImagePipeline

__all__ = ["VistokPipeline", "MaskGITPipeline", "MaskGenPipeline", "MaskGenKLPipeline", "AutoregressiveImagePipeline",
           "TextToImageAutoregressivePipeline", "FactorizedAutoregressiveImagePipeline", "NextScalePipeline",
           "NextScaleTextToImagePipeline", "TokenFlowTextToImagePipeline", "BinaryAutoregressiveTextToImagePipeline",
           "BinaryDiffusionTextToImagePipeline"]


def __getattr__(name: str):
    """A pipeline class that lives in its family's folder (``Family.pipelines``: MaskGenPipeline,
    TokenFlowTextToImagePipeline, ...), looked up through the family descriptors on first use."""
    from ..families import families

    for family in families():
        for cls in family.pipelines:
            if cls.__name__ == name:
                globals()[name] = cls
                return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
