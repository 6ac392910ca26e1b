from .configuration_var import DEFAULT_SAMPLING, VARConfig, VARVQVAEConfig
from .modeling_var import VARPreTrainedModel, VARTransformer, VARVQVAE, VARVQVAEPreTrainedModel

__all__ = ["VARConfig", "VARVQVAEConfig", "VARTransformer", "VARVQVAE", "VARPreTrainedModel",
           "VARVQVAEPreTrainedModel", "DEFAULT_SAMPLING"]
