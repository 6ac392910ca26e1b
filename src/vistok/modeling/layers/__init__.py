"""Blocks shared by families: transformer attention/MLP blocks, conv autoencoder parts, the MaskGIT-VQGAN
decoder, RoPE, norms and the KV cache."""

from .transformer import Attention, MLP, TransformerBlock, eager_attention_forward
from .vqgan import MaskGITVQGANDecoder, VQGANResnetBlock

__all__ = ["Attention", "MLP", "TransformerBlock", "eager_attention_forward", "MaskGITVQGANDecoder", "VQGANResnetBlock"]
