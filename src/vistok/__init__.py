"""vistok: Hugging Face-native discrete image tokenizers and token-based generators.

Importing vistok registers every family with AutoConfig, AutoModel and AutoImageProcessor.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .image_processing import VistokImageProcessor
from .modeling.maskgit import MaskGITConfig, MaskGITTransformer
from .modeling.llamagen import LlamaGenConfig, LlamaGenTransformer, LlamaGenVQConfig, LlamaGenVQModel
from .modeling.var import VARConfig, VARTransformer, VARVQVAE, VARVQVAEConfig
from .modeling import (
    OneDPieceConfig,
    OneDPieceModel,
    TiTokConfig,
    TiTokModel,
    VisualTokenizerEncoderOutput,
    VisualTokenizerMixin,
    VisualTokenizerOutput,
)

from .pipelines import AutoregressiveImagePipeline, MaskGITPipeline, NextScalePipeline, TextToImageAutoregressivePipeline

__version__ = "0.1.0"

_TOKENIZERS = ((TiTokConfig, TiTokModel), (OneDPieceConfig, OneDPieceModel), (LlamaGenVQConfig, LlamaGenVQModel),
               (VARVQVAEConfig, VARVQVAE))
for _config, _model in _TOKENIZERS:
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
    AutoImageProcessor.register(_config, slow_image_processor_class=VistokImageProcessor, exist_ok=True)
AutoConfig.register(MaskGITConfig.model_type, MaskGITConfig, exist_ok=True)
AutoModel.register(MaskGITConfig, MaskGITTransformer, exist_ok=True)
AutoConfig.register(LlamaGenConfig.model_type, LlamaGenConfig, exist_ok=True)
AutoModel.register(LlamaGenConfig, LlamaGenTransformer, exist_ok=True)
AutoConfig.register(VARConfig.model_type, VARConfig, exist_ok=True)
AutoModel.register(VARConfig, VARTransformer, exist_ok=True)

__all__ = [
    "VistokImageProcessor",
    "VisualTokenizerMixin",
    "VisualTokenizerEncoderOutput",
    "VisualTokenizerOutput",
    "TiTokConfig",
    "TiTokModel",
    "OneDPieceConfig",
    "OneDPieceModel",
    "MaskGITConfig",
    "MaskGITTransformer",
    "MaskGITPipeline",
    "LlamaGenConfig",
    "LlamaGenTransformer",
    "LlamaGenVQConfig",
    "LlamaGenVQModel",
    "AutoregressiveImagePipeline",
    "TextToImageAutoregressivePipeline",
    "VARVQVAEConfig",
    "VARVQVAE",
    "VARConfig",
    "VARTransformer",
    "NextScalePipeline",
]
