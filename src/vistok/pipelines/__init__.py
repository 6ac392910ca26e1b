from .autoregressive import AutoregressiveImagePipeline, TextToImageAutoregressivePipeline
from .base import VistokPipeline
from .maskgit import MaskGITPipeline
from .next_scale import NextScalePipeline

__all__ = ["VistokPipeline", "MaskGITPipeline", "AutoregressiveImagePipeline", "TextToImageAutoregressivePipeline",
           "NextScalePipeline"]
