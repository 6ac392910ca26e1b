"""One-D-Piece model: legacy TiTok whose decoder takes any prefix of the tokens."""

# diffusers finds a pipeline component's load method by looking up PreTrainedModel in the
# component class's module, so it must be a name in this module.
from transformers import PreTrainedModel  # noqa: F401

from ..titok.modeling_titok import TiTokModel
from .configuration_one_d_piece import OneDPieceConfig


class OneDPieceModel(TiTokModel):
    """``encode(pixel_values, num_tokens=k)`` keeps the first k tokens; ``decode`` takes any prefix."""

    config_class = OneDPieceConfig
