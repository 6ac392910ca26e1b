"""Configuration of the class-conditional MaskGIT generators of bytedance/1d-tokenizer
(``ImageBert`` — a BERT encoder — and ``UViTBert`` — a U-ViT with long skips)."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ..config_checks import check_positive_numbers, check_probabilities, check_sizes

BACKBONES = ("bert", "uvit")
GUIDANCE_SCHEDULES = ("constant", "linear", "power-cosine")

# The settings MaskGITPipeline falls back to; converters store each release's own.
DEFAULT_SAMPLING = {
    "num_inference_steps": 8,
    "guidance_scale": 3.0,
    "guidance_schedule": "constant",
    "guidance_scale_pow": 3.0,
    "randomize_temperature": 4.5,
    "softmax_temperature_annealing": False,
}


class MaskGITConfig(PreTrainedConfig):
    """Bidirectional transformer over ``[class token, num_tokens image tokens]`` predicting logits over
    the tokenizer's ``codebook_size`` codes.

    Token ids: image codes ``0..codebook_size-1``; the mask token ``codebook_size``; class ``c`` is
    ``codebook_size + 1 + c``; the null class (guidance) ``codebook_size + 1 + num_classes``.
    ``sampling_defaults`` holds the released sampling settings (see ``DEFAULT_SAMPLING``).
    """

    guidance_schedules = GUIDANCE_SCHEDULES  # what MaskGITPipeline accepts as guidance_schedule

    model_type = "vistok_maskgit"

    def __init__(self, backbone: str = "bert", codebook_size: int = 4096, num_tokens: int = 32, num_classes: int = 1000,
                 hidden_size: int = 768, num_hidden_layers: int = 24, num_attention_heads: int = 16,
                 intermediate_size: int = 3072, hidden_dropout: float = 0.1, attention_dropout: float = 0.1,
                 layer_norm_eps: float | None = None, class_label_dropout: float = 0.1,
                 sampling_defaults: dict | None = None, initializer_range: float = 0.02, **kwargs):
        check_sizes(codebook_size=codebook_size, num_tokens=num_tokens, num_classes=num_classes, hidden_size=hidden_size,
                    num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads, intermediate_size=intermediate_size)
        check_positive_numbers(layer_norm_eps=layer_norm_eps, initializer_range=initializer_range)
        check_probabilities(hidden_dropout=hidden_dropout, attention_dropout=attention_dropout, class_label_dropout=class_label_dropout)
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if backbone == "uvit" and num_hidden_layers % 2:
            raise ValueError(f"a U-ViT has num_hidden_layers // 2 in- and out-blocks: use an even count, got {num_hidden_layers}")
        sampling = {**DEFAULT_SAMPLING, **(sampling_defaults or {})}
        if sampling["guidance_schedule"] not in GUIDANCE_SCHEDULES:
            raise ValueError(f"guidance_schedule must be one of {GUIDANCE_SCHEDULES}, got {sampling['guidance_schedule']!r}")
        self.backbone = backbone
        self.codebook_size = codebook_size
        self.num_tokens = num_tokens
        self.num_classes = num_classes
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        # BERT's own default vs torch's LayerNorm default in the U-ViT blocks
        self.layer_norm_eps = layer_norm_eps if layer_norm_eps is not None else (1e-12 if backbone == "bert" else 1e-5)
        self.class_label_dropout = class_label_dropout
        self.sampling_defaults = sampling
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def mask_token_id(self) -> int:
        return self.codebook_size

    @property
    def null_class_token_id(self) -> int:
        return self.codebook_size + 1 + self.num_classes

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + self.num_classes + 2
