"""MaskGIT class-conditional generators over 1D tokens (bytedance/1d-tokenizer's ImageBert and UViTBert),
sampled by parallel decoding in :class:`vistok.pipelines.MaskGITPipeline`."""

from ...families import GENERATOR, ConverterSpec, Family, GeneratorSpec
from .configuration_maskgit import DEFAULT_SAMPLING, GUIDANCE_SCHEDULES, MaskGITConfig
from .modeling_maskgit import MaskGITPreTrainedModel, MaskGITTransformer
from . import convert_maskgit
from .training_maskgit import masked_token_objective

FAMILY = Family(
    name="maskgit",
    description="MaskGIT generators over 1D tokenizers (bytedance/1d-tokenizer, turingmotors/One-D-Piece)",
    generators=(GeneratorSpec(
        "maskgit", MaskGITConfig, MaskGITTransformer, "MaskGITPipeline", masked_token_objective, token_layouts=("1d",),
        config_from_tokenizer=lambda tok: {"codebook_size": tok.codebook_size, "num_tokens": tok.num_tokens},
        label_smoothing=0.1, takes_token_prefix=True),),
    converters=(ConverterSpec("maskgit", GENERATOR, convert_maskgit.convert, convert_maskgit.RELEASES, convert_maskgit.CLI_OPTIONS,
                              "a MaskGIT generator and its tokenizer -> a MaskGITPipeline folder"),),
)

__all__ = ["FAMILY", "MaskGITConfig", "MaskGITTransformer", "MaskGITPreTrainedModel", "DEFAULT_SAMPLING", "GUIDANCE_SCHEDULES"]
