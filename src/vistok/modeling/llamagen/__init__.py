from .configuration_llamagen import DEFAULT_SAMPLING, GPT_PRESETS, LlamaGenConfig, LlamaGenVQConfig
from .modeling_llamagen import LlamaGenOutput, LlamaGenPreTrainedModel, LlamaGenTransformer, LlamaGenVQModel

__all__ = ["LlamaGenConfig", "LlamaGenTransformer", "LlamaGenPreTrainedModel", "LlamaGenOutput", "LlamaGenVQConfig",
           "LlamaGenVQModel", "GPT_PRESETS", "DEFAULT_SAMPLING"]
