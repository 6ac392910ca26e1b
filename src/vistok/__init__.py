"""vistok: Hugging Face-native discrete image tokenizers and token-based generators.

Importing vistok registers every family (see :mod:`vistok.families`) with AutoConfig, AutoModel and
AutoImageProcessor, and exports each family's config and model classes by their class names
(``vistok.TiTokModel``, ``vistok.LlamaGenConfig``, ...) beside the pipelines.
"""

from . import families
from .image_processing import VistokImageProcessor
from .modeling import VisualTokenizerEncoderOutput, VisualTokenizerMixin, VisualTokenizerOutput
from .pipelines import (
    AutoregressiveImagePipeline,
    FactorizedAutoregressiveImagePipeline,
    BinaryAutoregressiveTextToImagePipeline,
    BinaryDiffusionTextToImagePipeline,
    MaskGenKLPipeline,
    MaskGenPipeline,
    MaskGITPipeline,
    NextScalePipeline,
    NextScaleTextToImagePipeline,
    TextToImageAutoregressivePipeline,
    TokenFlowTextToImagePipeline,
    VistokPipeline,
)

__version__ = "0.1.0"

families.register_auto_classes()

__all__ = [
    "VistokImageProcessor", "VisualTokenizerMixin", "VisualTokenizerEncoderOutput", "VisualTokenizerOutput",
    "VistokPipeline", "MaskGITPipeline", "MaskGenPipeline", "MaskGenKLPipeline", "AutoregressiveImagePipeline", "FactorizedAutoregressiveImagePipeline",
    "TextToImageAutoregressivePipeline", "NextScalePipeline", "NextScaleTextToImagePipeline", "TokenFlowTextToImagePipeline",
    "BinaryAutoregressiveTextToImagePipeline", "BinaryDiffusionTextToImagePipeline",
]
for _family in families.families():
    for _spec in _family.models:
        for _cls in (_spec.config_class, _spec.model_class):
            globals()[_cls.__name__] = _cls
            __all__.append(_cls.__name__)
del _family, _spec, _cls
