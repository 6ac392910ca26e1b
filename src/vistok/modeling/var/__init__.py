"""VAR (FoundationVision/VAR): a multi-scale residual VQVAE and next-scale-prediction transformers, sampled
scale by scale by :class:`vistok.pipelines.NextScalePipeline`."""

from ...families import GENERATOR, TOKENIZER, ConverterSpec, Family, GeneratorSpec, TokenizerSpec
from . import convert_var
from .configuration_var import DEFAULT_SAMPLING, VARConfig, VARVQVAEConfig
from .modeling_var import VARPreTrainedModel, VARTransformer, VARVQVAE, VARVQVAEPreTrainedModel
from .training_var import next_scale_objective

FAMILY = Family(
    name="var",
    description="VAR multi-scale VQVAE and next-scale-prediction transformers (FoundationVision/VAR)",
    tokenizers=(TokenizerSpec("var-vqvae", VARVQVAEConfig, VARVQVAE),),
    generators=(GeneratorSpec(
        "var", VARConfig, VARTransformer, "NextScalePipeline", next_scale_objective, token_layouts=("multiscale",),
        # the scale layout and code width come from the VQVAE
        config_from_tokenizer=lambda tok: {"codebook_size": tok.codebook_size, "z_channels": tok.z_channels,
                                           "patch_nums": list(tok.patch_nums)},
        needs_tokenizer=True),),
    converters=(
        ConverterSpec("var-vqvae", TOKENIZER, convert_var.convert_vae, convert_var.VAE_PRESETS, convert_var.VQVAE_CLI_OPTIONS,
                      "VAR's multi-scale VQVAE (vae_ch160v4096z32.pth) -> a tokenizer folder"),
        ConverterSpec("var", GENERATOR, convert_var.convert, convert_var.VAR_PRESETS, convert_var.CLI_OPTIONS,
                      "a VAR transformer (var_d*.pth) and its VQVAE -> a NextScalePipeline folder"),
    ),
)

__all__ = ["FAMILY", "VARConfig", "VARVQVAEConfig", "VARTransformer", "VARVQVAE", "VARPreTrainedModel",
           "VARVQVAEPreTrainedModel", "DEFAULT_SAMPLING"]
