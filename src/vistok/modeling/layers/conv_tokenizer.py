"""The tokenizer hooks the taming-style conv VQ tokenizers share (LlamaGen VQ, IBQ; Open-MAGVIT2's latents too):
``encoder -> quant_conv -> quantizer`` over the channels-last feature map, and ``post_quant_conv -> decoder`` over
the row-major latents put back on their square grid."""

from __future__ import annotations

import math

import torch
from transformers import PreTrainedModel

from ..base import VisualTokenizerEncoderOutput
from .conv_autoencoder import ConvLevel


def latents_to_grid(latents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Row-major latents ``[B, side^2, C]`` -> the feature map ``[B, C, side, side]`` in ``dtype``."""
    side = math.isqrt(latents.shape[1])
    return latents.reshape(latents.shape[0], side, side, -1).permute(0, 3, 1, 2).to(dtype)


class ConvTokenizerPreTrainedModel(PreTrainedModel):
    """What the conv tokenizers' ``PreTrainedModel`` classes on ``layers/conv_autoencoder.py`` share: pixel input,
    the levels kept whole on a device, and ``hidden_states`` = the output of every resolution level, encoder then
    decoder (feature maps ``[B, C, h, w]``)."""

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["ConvLevel", "ConvMidBlock"]
    _can_record_outputs = {"hidden_states": ConvLevel}


class QuantConvTokenizerMixin:
    """``VisualTokenizerMixin``'s three hooks for a model with ``encoder``, ``quant_conv``, ``quantizer`` (returning
    ``indices``/``quantized``/``loss``/``commitment_loss``/``codebook_loss``, ``indices_to_codes``), ``post_quant_conv``
    and ``decoder`` (put before ``VisualTokenizerMixin`` in the bases)."""

    def _encode(self, pixel_values):
        z = self.quant_conv(self.encoder(pixel_values)).permute(0, 2, 3, 1)  # [B, h, w, token_dim]
        q = self.quantizer(z)
        return VisualTokenizerEncoderOutput(token_ids=q.indices, latents=q.quantized.flatten(1, 2), quantizer_loss=q.loss,
                                            commitment_loss=q.commitment_loss, codebook_loss=q.codebook_loss)

    def _token_ids_to_latents(self, token_ids):
        return self.quantizer.indices_to_codes(token_ids.long()).flatten(1, 2)

    def _decode_latents(self, latents):
        return self.decoder(self.post_quant_conv(latents_to_grid(latents, self.dtype)))
