"""TokenFlow (ByteFlow-AI/TokenFlow): the dual-codebook, shared-mapping multi-scale tokenizer whose ids carry
semantic (CLIP/SigLIP) and pixel features."""

from ...families import TOKENIZER, ConverterSpec, Family, TokenizerSpec
from . import convert_tokenflow
from .configuration_tokenflow import TokenFlowConfig
from .modeling_tokenflow import TokenFlowModel, TokenFlowPreTrainedModel

FAMILY = Family(
    name="tokenflow",
    description="TokenFlow dual-codebook multi-scale tokenizer (ByteFlow-AI/TokenFlow)",
    tokenizers=(TokenizerSpec("tokenflow", TokenFlowConfig, TokenFlowModel),),
    converters=(
        ConverterSpec("tokenflow", TOKENIZER, convert_tokenflow.convert, convert_tokenflow.RELEASES,
                      convert_tokenflow.CLI_OPTIONS,
                      "a TokenFlow tokenizer (tokenflow_clipb_32k_enhanced.pt, tokenflow_siglip_32k.pt) -> a tokenizer folder"),
    ),
)

__all__ = ["FAMILY", "TokenFlowConfig", "TokenFlowModel", "TokenFlowPreTrainedModel"]
