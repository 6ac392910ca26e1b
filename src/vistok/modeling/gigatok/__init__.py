"""GigaTok (SilentView/GigaTok, "Scaling Visual Tokenizers to 3 Billion Parameters for Autoregressive Image
Generation"): hybrid CNN-transformer VQ tokenizers with 1D (Q-Former) and 2D (ViT) token layouts."""

from ...families import GENERATOR, TOKENIZER, ConverterSpec, Family, TokenizerSpec
from . import convert_gigatok
from .configuration_gigatok import VIT_SIZES, GigaTokConfig
from .modeling_gigatok import GigaTokModel, GigaTokPreTrainedModel

FAMILY = Family(
    name="gigatok",
    description="GigaTok 1D and 2D hybrid CNN-transformer VQ tokenizers (SilentView/GigaTok)",
    tokenizers=(TokenizerSpec("gigatok", GigaTokConfig, GigaTokModel),),
    converters=(ConverterSpec("gigatok", TOKENIZER, convert_gigatok.convert, convert_gigatok.RELEASES, convert_gigatok.CLI_OPTIONS,
                              "a GigaTok tokenizer .pt (1D or 2D, EMA weights preferred) -> a tokenizer folder"),
                ConverterSpec("gigatok-gpt", GENERATOR, convert_gigatok.convert_gpt, convert_gigatok.GPT_RELEASES,
                              convert_gigatok.GPT_CLI_OPTIONS,
                              "a GigaTok gpt_1d GPT .pt and its tokenizer -> a pipeline folder (LlamaGen transformer, learned positions)")),
)

__all__ = ["FAMILY", "GigaTokConfig", "GigaTokModel", "GigaTokPreTrainedModel", "VIT_SIZES"]
