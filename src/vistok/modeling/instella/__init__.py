"""Instella-T2I (AMD-AGI/Instella-T2I): a binary 1D tokenizer, 1024 px images as 128 tokens of 64 bits."""

from ...families import TOKENIZER, ConverterSpec, Family, TokenizerSpec
from . import convert_instella
from .configuration_instella import InstellaARConfig, InstellaBAEConfig
from .modeling_instella import InstellaBAEModel, InstellaBAEPreTrainedModel
from .modeling_instella_ar import InstellaARModel, InstellaAROutput, InstellaARPreTrainedModel

FAMILY = Family(
    name="instella",
    description="Instella-T2I binary 1D tokenizer (AMD-AGI/Instella-T2I)",
    tokenizers=(TokenizerSpec("instella-bae", InstellaBAEConfig, InstellaBAEModel),),
    converters=(ConverterSpec("instella-bae", TOKENIZER, convert_instella.convert, convert_instella.RELEASES,
                              convert_instella.CLI_OPTIONS,
                              "the Instella-T2I binary autoencoder (bae/model.safetensors)"),),
)

__all__ = ["FAMILY", "InstellaBAEConfig", "InstellaBAEModel", "InstellaBAEPreTrainedModel", "InstellaARConfig",
           "InstellaARModel", "InstellaAROutput", "InstellaARPreTrainedModel"]
