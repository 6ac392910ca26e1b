from .configuration_maskgit import DEFAULT_SAMPLING, GUIDANCE_SCHEDULES, MaskGITConfig
from .modeling_maskgit import MaskGITPreTrainedModel, MaskGITTransformer

__all__ = ["MaskGITConfig", "MaskGITTransformer", "MaskGITPreTrainedModel", "DEFAULT_SAMPLING", "GUIDANCE_SCHEDULES"]
