"""TiTok (bytedance/1d-tokenizer, "An Image is Worth 32 Tokens for Reconstruction and Generation"): a ViT
that reads an image into a short 1D token sequence and back. VQ, FSQ and continuous (VAE) variants, and
TA-TiTok's text-aware decoder (``TiTokConfig.text_conditioned``)."""

from ...families import TOKENIZER, ConverterSpec, Family, TokenizerSpec
from ..layers.clip_text import clip_text_features
from . import convert_titok
from .configuration_titok import TiTokConfig
from .modeling_titok import TiTokModel, TiTokPreTrainedModel

FAMILY = Family(
    name="titok",
    description="TiTok 1D tokenizers (bytedance/1d-tokenizer)",
    tokenizers=(TokenizerSpec("titok", TiTokConfig, TiTokModel),),
    converters=(ConverterSpec("titok", TOKENIZER, convert_titok.convert, convert_titok.RELEASES, convert_titok.CLI_OPTIONS,
                              "a TiTok tokenizer: architecture from the checkpoint's shapes, the rest from the original config"),
                ConverterSpec("ta-titok", TOKENIZER, convert_titok.convert_ta_titok, convert_titok.TA_TITOK_RELEASES,
                              convert_titok.CLI_OPTIONS,
                              "a TA-TiTok tokenizer (text-aware decoder): a TiTok folder with text_conditioned=True")),
)

__all__ = ["FAMILY", "clip_text_features", "TiTokConfig", "TiTokModel", "TiTokPreTrainedModel"]
