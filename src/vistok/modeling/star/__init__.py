"""STAR (Davinci-XLab/STAR-T2I): text-to-image next-scale prediction on the VAR family (VAR's multi-scale
VQVAE, VAR's self-attention and MLP, plus cross-attention to CLIP text and a normalized 2D RoPE), sampled by
:class:`vistok.pipelines.NextScaleTextToImagePipeline`."""

from ...families import GENERATOR, ConverterSpec, Family, GeneratorSpec
from . import convert_star
from .configuration_star import DEFAULT_SAMPLING, SCALE_SCHEDULES, STARConfig
from .modeling_star import STARPreTrainedModel, STARTransformer
from .training_star import caption_objective, next_scale_text_objective

FAMILY = Family(
    name="star",
    description="STAR text-to-image next-scale transformers on VAR's multi-scale VQVAE (Davinci-XLab/STAR-T2I)",
    generators=(GeneratorSpec(
        "star", STARConfig, STARTransformer, "NextScaleTextToImagePipeline", next_scale_text_objective,
        token_layouts=("multiscale",),
        config_from_tokenizer=lambda tok: {"codebook_size": tok.codebook_size, "z_channels": tok.z_channels,
                                           "patch_nums": list(tok.patch_nums)},
        text_pipeline="NextScaleTextToImagePipeline", needs_tokenizer=True,
        text_objective=caption_objective, text_encoder_class="CLIPTextModel"),),
    converters=(
        ConverterSpec("star", GENERATOR, convert_star.convert, convert_star.PRESETS, convert_star.CLI_OPTIONS,
                      "a STAR transformer (taocrayon/STAR .pth), VAR's VQVAE and optionally the CLIP text tower "
                      "-> a NextScaleTextToImagePipeline folder"),
    ),
)

__all__ = ["FAMILY", "STARConfig", "STARTransformer", "STARPreTrainedModel", "DEFAULT_SAMPLING", "SCALE_SCHEDULES"]
