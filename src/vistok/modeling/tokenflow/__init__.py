"""TokenFlow (ByteFlow-AI/TokenFlow): the dual-codebook, shared-mapping multi-scale tokenizer whose ids carry
semantic (CLIP/SigLIP) and pixel features, and TokenFlow-t2i, a Llama language model that predicts those ids
after a prompt (sampled by :class:`vistok.pipelines.TokenFlowTextToImagePipeline`)."""

from ...families import GENERATOR, TOKENIZER, ConverterSpec, Family, GeneratorSpec, TokenizerSpec
from . import convert_tokenflow
from .configuration_tokenflow import DEFAULT_SAMPLING, NEGATIVE_PROMPT, TokenFlowConfig, TokenFlowT2IConfig
from .modeling_tokenflow import (TokenFlowModel, TokenFlowPreTrainedModel, TokenFlowT2IForCausalLM, TokenFlowT2IModel,
                                 TokenFlowT2IPreTrainedModel)
from .pipeline_tokenflow import TokenFlowTextToImagePipeline
from .training_tokenflow import caption_objective, next_scale_text_objective

FAMILY = Family(
    name="tokenflow",
    description="TokenFlow dual-codebook multi-scale tokenizer and the TokenFlow-t2i Llama generator (ByteFlow-AI/TokenFlow)",
    tokenizers=(TokenizerSpec("tokenflow", TokenFlowConfig, TokenFlowModel),),
    generators=(GeneratorSpec(
        "tokenflow-t2i", TokenFlowT2IConfig, TokenFlowT2IForCausalLM, "TokenFlowTextToImagePipeline",
        next_scale_text_objective, token_layouts=("multiscale",),
        config_from_tokenizer=lambda tok: {"codebook_size": tok.codebook_size, "code_dim": tok.code_dim,
                                           "patch_nums": list(tok.patch_nums)},
        text_pipeline="TokenFlowTextToImagePipeline", needs_tokenizer=True, text_objective=caption_objective),),
    converters=(
        ConverterSpec("tokenflow", TOKENIZER, convert_tokenflow.convert, convert_tokenflow.RELEASES,
                      convert_tokenflow.CLI_OPTIONS,
                      "a TokenFlow tokenizer (tokenflow_clipb_32k_enhanced.pt, tokenflow_siglip_32k.pt) -> a tokenizer folder"),
        ConverterSpec("tokenflow-t2i", GENERATOR, convert_tokenflow.convert_t2i, convert_tokenflow.T2I_RELEASES,
                      convert_tokenflow.T2I_CLI_OPTIONS,
                      "TokenFlow-t2i (ByteFlow-AI/TokenFlow-t2i) and its TokenFlow tokenizer -> a "
                      "TokenFlowTextToImagePipeline folder"),
    ),
    pipelines=(TokenFlowTextToImagePipeline,),
)

__all__ = ["FAMILY", "TokenFlowTextToImagePipeline", "TokenFlowConfig", "TokenFlowModel", "TokenFlowPreTrainedModel", "TokenFlowT2IConfig",
           "TokenFlowT2IForCausalLM", "TokenFlowT2IModel", "TokenFlowT2IPreTrainedModel", "DEFAULT_SAMPLING",
           "NEGATIVE_PROMPT"]
