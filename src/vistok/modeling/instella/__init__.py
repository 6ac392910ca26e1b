"""Instella-T2I (AMD-AGI/Instella-T2I): a binary 1D tokenizer (1024 px images as 128 tokens of 64 bits) and its two
text-to-image generators over the bits: autoregressive (sampled by
:class:`vistok.pipelines.BinaryAutoregressiveTextToImagePipeline`) and discrete diffusion (sampled by
:class:`vistok.pipelines.BinaryDiffusionTextToImagePipeline`)."""

from ...families import GENERATOR, TOKENIZER, ConverterSpec, Family, GeneratorSpec, TokenizerSpec
from . import convert_instella
from .configuration_instella import InstellaARConfig, InstellaBAEConfig, InstellaDiffusionConfig
from .modeling_instella import InstellaBAEModel, InstellaBAEPreTrainedModel
from .modeling_instella_ar import InstellaARModel, InstellaAROutput, InstellaARPreTrainedModel
from .modeling_instella_diffusion import InstellaDiffusionModel, InstellaDiffusionOutput, InstellaDiffusionPreTrainedModel
from .training_instella import caption_bit_objective, caption_flip_objective, class_objective_unsupported

FAMILY = Family(
    name="instella",
    description="Instella-T2I binary 1D tokenizer and its AR / diffusion text-to-image generators (AMD-AGI/Instella-T2I)",
    tokenizers=(TokenizerSpec("instella-bae", InstellaBAEConfig, InstellaBAEModel),),
    converters=(ConverterSpec("instella-bae", TOKENIZER, convert_instella.convert, convert_instella.RELEASES,
                              convert_instella.CLI_OPTIONS,
                              "the Instella-T2I binary autoencoder (bae/model.safetensors)"),
                ConverterSpec("instella-ar", GENERATOR, convert_instella.convert_ar, convert_instella.AR_RELEASES,
                              convert_instella.AR_CLI_OPTIONS,
                              "the Instella-T2I AR generator (ar.pt), its converted tokenizer and optionally OLMo "
                              "-> a BinaryAutoregressiveTextToImagePipeline folder"),
                ConverterSpec("instella-diffusion", GENERATOR, convert_instella.convert_diffusion,
                              convert_instella.DIFF_RELEASES, convert_instella.DIFF_CLI_OPTIONS,
                              "the Instella-T2I diffusion generator (diffusion.pt), its converted tokenizer and optionally "
                              "OLMo -> a BinaryDiffusionTextToImagePipeline folder")),
    generators=(GeneratorSpec(
        "instella-ar", InstellaARConfig, InstellaARModel, "BinaryAutoregressiveTextToImagePipeline", class_objective_unsupported,
        token_layouts=("1d",), config_from_tokenizer=lambda tok: {"num_bits": tok.num_bits, "num_tokens": tok.num_tokens},
        text_pipeline="BinaryAutoregressiveTextToImagePipeline", text_objective=caption_bit_objective,
        text_encoder_class="OlmoModel"),
        GeneratorSpec(
        "instella-diffusion", InstellaDiffusionConfig, InstellaDiffusionModel, "BinaryDiffusionTextToImagePipeline",
        class_objective_unsupported, token_layouts=("1d",),
        config_from_tokenizer=lambda tok: {"num_bits": tok.num_bits, "num_tokens": tok.num_tokens},
        text_pipeline="BinaryDiffusionTextToImagePipeline", text_objective=caption_flip_objective,
        text_encoder_class="OlmoModel")),
)

__all__ = ["FAMILY", "InstellaBAEConfig", "InstellaBAEModel", "InstellaBAEPreTrainedModel", "InstellaARConfig",
           "InstellaARModel", "InstellaAROutput", "InstellaARPreTrainedModel", "InstellaDiffusionConfig",
           "InstellaDiffusionModel", "InstellaDiffusionOutput", "InstellaDiffusionPreTrainedModel"]
