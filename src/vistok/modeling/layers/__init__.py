from .transformer import Attention, MLP, TransformerBlock, eager_attention_forward
from .vqgan import MaskGITVQGANDecoder, VQGANResnetBlock

__all__ = ["Attention", "MLP", "TransformerBlock", "eager_attention_forward", "MaskGITVQGANDecoder", "VQGANResnetBlock"]
