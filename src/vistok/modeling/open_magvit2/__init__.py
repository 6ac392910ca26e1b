"""Open-MAGVIT2 (TencentARC/SEED-Voken): lookup-free (LFQ) image tokenizers with 2^18 codes, factorized
autoregressive generators sampled by :class:`vistok.pipelines.FactorizedAutoregressiveImagePipeline`, and the same
repository's IBQ tokenizers (taming conv autoencoder + index backpropagation quantization) and adaLN generators
(sampled by :class:`vistok.pipelines.AutoregressiveImagePipeline`)."""

from ...families import GENERATOR, TOKENIZER, ConverterSpec, Family, GeneratorSpec, TokenizerSpec
from . import convert_open_magvit2
from .configuration_open_magvit2 import (AR_PRESETS, DEFAULT_SAMPLING, IBQARConfig, IBQConfig, OpenMagvit2ARConfig,
                                         OpenMagvit2Config)
from .modeling_open_magvit2 import IBQARTransformer, IBQModel, OpenMagvit2AROutput, OpenMagvit2ARTransformer, OpenMagvit2Model
from .training_open_magvit2 import factorized_objective, next_token_objective


def _from_tokenizer(tok) -> dict:
    bits = tok.factorized_bits or [tok.num_bits // 3, tok.num_bits - tok.num_bits // 3]
    return {"factorized_bits": bits, "num_tokens": tok.num_tokens}


FAMILY = Family(
    name="open_magvit2",
    description="Open-MAGVIT2 LFQ tokenizers and factorized autoregressive generators (TencentARC/SEED-Voken)",
    tokenizers=(TokenizerSpec("open-magvit2", OpenMagvit2Config, OpenMagvit2Model), TokenizerSpec("ibq", IBQConfig, IBQModel)),
    generators=(GeneratorSpec(
        "open-magvit2-ar", OpenMagvit2ARConfig, OpenMagvit2ARTransformer, "FactorizedAutoregressiveImagePipeline",
        factorized_objective, token_layouts=("2d",), config_from_tokenizer=_from_tokenizer),
                GeneratorSpec("ibq-ar", IBQARConfig, IBQARTransformer, "AutoregressiveImagePipeline", next_token_objective,
                              token_layouts=("2d",),
                              config_from_tokenizer=lambda tok: {"codebook_size": tok.codebook_size, "num_tokens": tok.num_tokens})),
    converters=(
        ConverterSpec("open-magvit2", TOKENIZER, convert_open_magvit2.convert_tokenizer, convert_open_magvit2.TOKENIZER_RELEASES,
                      convert_open_magvit2.TOKENIZER_CLI_OPTIONS,
                      "an Open-MAGVIT2 LFQ tokenizer (imagenet_*_L.ckpt, pretrain256_*.ckpt) -> a tokenizer folder"),
        ConverterSpec("open-magvit2-ar", GENERATOR, convert_open_magvit2.convert_ar, convert_open_magvit2.AR_RELEASES,
                      convert_open_magvit2.AR_CLI_OPTIONS,
                      "an Open-MAGVIT2 AR generator (AR_256_*.ckpt) and its tokenizer -> a pipeline folder"),
        ConverterSpec("ibq", TOKENIZER, convert_open_magvit2.convert_ibq, convert_open_magvit2.IBQ_RELEASES,
                      convert_open_magvit2.TOKENIZER_CLI_OPTIONS,
                      "an IBQ tokenizer (imagenet256_*.ckpt, IBQ_pretrain_*.ckpt) -> a tokenizer folder"),
        ConverterSpec("ibq-ar", GENERATOR, convert_open_magvit2.convert_ibq_ar, convert_open_magvit2.IBQ_AR_RELEASES,
                      convert_open_magvit2.IBQ_AR_CLI_OPTIONS, "an IBQ AR generator (AR_256_*.ckpt) and its tokenizer -> a pipeline folder"),
    ),
)

__all__ = ["FAMILY", "OpenMagvit2Config", "OpenMagvit2Model", "IBQConfig", "IBQModel", "IBQARConfig", "IBQARTransformer", "OpenMagvit2ARConfig", "OpenMagvit2ARTransformer",
           "OpenMagvit2AROutput", "AR_PRESETS", "DEFAULT_SAMPLING"]
