from .configuration_titok import TiTokConfig
from .modeling_titok import TiTokModel, TiTokPreTrainedModel

__all__ = ["TiTokConfig", "TiTokModel", "TiTokPreTrainedModel"]
