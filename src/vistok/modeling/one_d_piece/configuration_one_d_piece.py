"""Configuration of One-D-Piece (turingmotors/One-D-Piece): legacy TiTok trained with tail token drop, so any prefix
of its tokens decodes to an image — a variable-length ("quality-controllable") tokenizer."""

from ..titok.configuration_titok import TiTokConfig


class OneDPieceConfig(TiTokConfig):
    model_type = "vistok_one_d_piece"

    def __init__(self, num_tokens: int = 256, encoder_hidden_size: int = 512, encoder_num_layers: int = 8,
                 encoder_num_heads: int = 8, decoder_hidden_size: int = 512, decoder_num_layers: int = 8,
                 decoder_num_heads: int = 8, **kwargs):
        kwargs["variable_length"] = True
        kwargs.setdefault("is_legacy", True)
        super().__init__(
            num_tokens=num_tokens, encoder_hidden_size=encoder_hidden_size, encoder_num_layers=encoder_num_layers,
            encoder_num_heads=encoder_num_heads, decoder_hidden_size=decoder_hidden_size,
            decoder_num_layers=decoder_num_layers, decoder_num_heads=decoder_num_heads, **kwargs,
        )
