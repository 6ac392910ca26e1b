from .configuration_llamagen import DEFAULT_SAMPLING, GPT_PRESETS, LlamaGenConfig
from .modeling_llamagen import LlamaGenOutput, LlamaGenPreTrainedModel, LlamaGenTransformer

__all__ = ["LlamaGenConfig", "LlamaGenTransformer", "LlamaGenPreTrainedModel", "LlamaGenOutput", "GPT_PRESETS", "DEFAULT_SAMPLING"]
