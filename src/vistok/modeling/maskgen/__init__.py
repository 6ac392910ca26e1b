"""MaskGen (bytedance/1d-tokenizer, "Democratizing Text-to-Image Masked Generative Models with Compact Text-Aware
One-Dimensional Tokens"): text-to-image masked generation of TA-TiTok tokens. MaskGen-VQ is an MM-DiT (diffusers'
joint-attention blocks) sampled by :class:`vistok.pipelines.MaskGenPipeline`; MaskGen-KL the same MM-DiT over
continuous TA-TiTok KL tokens with MAR's diffusion head, sampled by :class:`vistok.pipelines.MaskGenKLPipeline`."""

from ...families import GENERATOR, ConverterSpec, Family, GeneratorSpec
from . import convert_maskgen
from .configuration_maskgen import DEFAULT_SAMPLING, GUIDANCE_SCHEDULES, KL_DEFAULT_SAMPLING, MaskGenKLConfig, MaskGenVQConfig
from .modeling_maskgen import (
    DDPMTokenSampler,
    MaskGenKLDiffusionHead,
    MaskGenKLPreTrainedModel,
    MaskGenKLTransformer,
    MaskGenPreTrainedModel,
    MaskGenVQTransformer,
)
from .training_maskgen import diffusion_text_objective, masked_text_objective, unsupported_class_objective
from .pipeline_maskgen import MaskGenKLPipeline, MaskGenPipeline

FAMILY = Family(
    name="maskgen",
    description="MaskGen text-to-image generators over TA-TiTok tokens (bytedance/1d-tokenizer)",
    generators=(GeneratorSpec(
        "maskgen-vq", MaskGenVQConfig, MaskGenVQTransformer, "MaskGenPipeline", unsupported_class_objective,
        token_layouts=("1d",),
        config_from_tokenizer=lambda tok: {"codebook_size": tok.codebook_size, "num_tokens": tok.num_tokens},
        text_pipeline="MaskGenPipeline", text_objective=masked_text_objective,
        text_encoder_class="CLIPTextModelWithProjection"),
        GeneratorSpec(
            "maskgen-kl", MaskGenKLConfig, MaskGenKLTransformer, "MaskGenKLPipeline", unsupported_class_objective,
            token_layouts=("continuous",),
            config_from_tokenizer=lambda tok: {"token_dim": tok.token_dim, "num_tokens": tok.num_tokens},
            text_pipeline="MaskGenKLPipeline", text_objective=diffusion_text_objective,
            text_encoder_class="CLIPTextModelWithProjection"),),
    converters=(ConverterSpec("maskgen-vq", GENERATOR, convert_maskgen.convert, convert_maskgen.RELEASES, convert_maskgen.CLI_OPTIONS,
                              "a MaskGen-VQ generator and its TA-TiTok tokenizer -> a MaskGenPipeline folder"),
                ConverterSpec("maskgen-kl", GENERATOR, convert_maskgen.convert_kl, convert_maskgen.KL_RELEASES, convert_maskgen.KL_CLI_OPTIONS,
                              "a MaskGen-KL generator and its TA-TiTok KL tokenizer -> a MaskGenKLPipeline folder"),),
    pipelines=(MaskGenPipeline, MaskGenKLPipeline),
)

__all__ = ["FAMILY", "MaskGenPipeline", "MaskGenKLPipeline", "MaskGenVQConfig", "MaskGenVQTransformer", "MaskGenPreTrainedModel", "DEFAULT_SAMPLING", "GUIDANCE_SCHEDULES",
           "MaskGenKLConfig", "MaskGenKLTransformer", "MaskGenKLPreTrainedModel", "MaskGenKLDiffusionHead", "DDPMTokenSampler",
           "KL_DEFAULT_SAMPLING"]
