"""FlexTok (apple/ml-flextok, "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length"): 1 to 256
ordered FSQ tokens over a VAE latent, any prefix decoded by a rectified-flow transformer."""

from ...families import TOKENIZER, ConverterSpec, Family, TokenizerSpec
from . import convert_flextok
from .configuration_flextok import FlexTokConfig
from .modeling_flextok import FlexTokModel, FlexTokPreTrainedModel

FAMILY = Family(
    name="flextok",
    description="FlexTok variable-length 1D tokenizers with a rectified-flow decoder (apple/ml-flextok)",
    tokenizers=(TokenizerSpec("flextok", FlexTokConfig, FlexTokModel),),
    converters=(ConverterSpec("flextok", TOKENIZER, convert_flextok.convert, convert_flextok.RELEASES,
                              convert_flextok.CLI_OPTIONS,
                              "a FlexTok tokenizer from its hub layout (config.json read as data + model.safetensors) "
                              "and its VAE"),),
)

__all__ = ["FAMILY", "FlexTokConfig", "FlexTokModel", "FlexTokPreTrainedModel"]
