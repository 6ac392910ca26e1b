from .autoregressive import AutoregressiveImagePipeline, TextToImageAutoregressivePipeline
from .base import VistokPipeline
from .maskgit import MaskGITPipeline

__all__ = ["VistokPipeline", "MaskGITPipeline", "AutoregressiveImagePipeline", "TextToImageAutoregressivePipeline"]
