"""LlamaGen (FoundationVision/LlamaGen): VQGAN tokenizers with a 2D token grid, and Llama-style GPT
generators (class- or text-conditional) sampled by :class:`vistok.pipelines.AutoregressiveImagePipeline`."""

from ...families import GENERATOR, TOKENIZER, ConverterSpec, Family, GeneratorSpec, TokenizerSpec
from . import convert_llamagen
from .configuration_llamagen import DEFAULT_SAMPLING, GPT_PRESETS, LlamaGenConfig, LlamaGenVQConfig
from .modeling_llamagen import LlamaGenOutput, LlamaGenPreTrainedModel, LlamaGenTransformer, LlamaGenVQModel
from .training_llamagen import next_token_objective

FAMILY = Family(
    name="llamagen",
    description="LlamaGen VQ tokenizers and autoregressive GPT generators (FoundationVision/LlamaGen)",
    tokenizers=(TokenizerSpec("llamagen-vq", LlamaGenVQConfig, LlamaGenVQModel),),
    generators=(GeneratorSpec(
        "llamagen", LlamaGenConfig, LlamaGenTransformer, "AutoregressiveImagePipeline", next_token_objective,
        # 1D tokens train with learned positions (model.config.position_embedding: learned): a raster 2D RoPE
        # would invent a grid they do not have
        token_layouts=("2d", "1d"),
        config_from_tokenizer=lambda tok: {"codebook_size": tok.codebook_size, "num_tokens": tok.num_tokens},
        text_pipeline="TextToImageAutoregressivePipeline"),),  # the original recipe has no label smoothing
    converters=(
        ConverterSpec("llamagen-vq", TOKENIZER, convert_llamagen.convert_vq, convert_llamagen.VQ_RELEASES,
                      convert_llamagen.VQ_CLI_OPTIONS, "a LlamaGen VQ tokenizer (vq_ds*.pt) -> a tokenizer folder"),
        ConverterSpec("llamagen", GENERATOR, convert_llamagen.convert_gpt, convert_llamagen.GPT_RELEASES,
                      convert_llamagen.GPT_CLI_OPTIONS, "a LlamaGen GPT (c2i_*.pt, t2i_*.pt) and its VQ -> a pipeline folder"),
    ),
)

__all__ = ["FAMILY", "LlamaGenConfig", "LlamaGenTransformer", "LlamaGenPreTrainedModel", "LlamaGenOutput", "LlamaGenVQConfig",
           "LlamaGenVQModel", "GPT_PRESETS", "DEFAULT_SAMPLING"]
