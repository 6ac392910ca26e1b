"""Configuration of MaskGen-VQ (bytedance/1d-tokenizer ``modeling/maskgen.py``, "Democratizing Text-to-Image Masked
Generative Models with Compact Text-Aware One-Dimensional Tokens"): an MM-DiT over TA-TiTok VQ tokens."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ..config_checks import check_positive_numbers, check_probabilities, check_sizes

GUIDANCE_SCHEDULES = ("cosine", "flippedcosine", "linear", "none")

# What MaskGenPipeline falls back to (the released MaskGen-VQ settings: configs/infer/MaskGen/maskgen_vq_*.yaml and
# the README's ``generate`` call); converters store each release's own.
DEFAULT_SAMPLING = {
    "num_inference_steps": 16,
    "guidance_scale": 12.0,
    "guidance_schedule": "cosine",
    "guidance_scale_pow": 1.0,
    "randomize_temperature": 2.0,
    "softmax_temperature_annealing": True,
    "aesthetic_score": 6.5,
}


class MaskGenVQConfig(PreTrainedConfig):
    """Joint-attention transformer (diffusers' SD3 ``JointTransformerBlock``) over ``num_tokens`` image tokens and the
    prompt's CLIP text features, modulated by the pooled text feature and (``micro_condition``) a sinusoidal
    embedding of the aesthetic score; logits over the tokenizer's ``codebook_size`` codes.

    Token ids: codes ``0..codebook_size-1``, the mask token ``codebook_size``; ``num_classes + 1`` further rows of
    the embedding are unused (kept from the class-conditional model, as in the release). ``weight_tying``:
    the head is the first ``codebook_size`` rows of the input embedding (``weight_tying`` upstream).
    ``text_hidden_size``: the CLIP text width (768 for ViT-L-14-336); ``encoder_hidden_states`` are its
    penultimate hidden states and ``pooled_projections`` its projected pooled feature.
    """

    model_type = "vistok_maskgen_vq"
    guidance_schedules = GUIDANCE_SCHEDULES

    def __init__(self, codebook_size: int = 8192, num_tokens: int = 128, num_classes: int = 1000, hidden_size: int = 1024,
                 num_hidden_layers: int = 16, num_attention_heads: int = 16, text_hidden_size: int = 768,
                 micro_condition: bool = True, micro_condition_embed_dim: int = 256, text_drop_prob: float = 0.1,
                 weight_tying: bool = True, mask_schedule: str = "arccos", sampling_defaults: dict | None = None,
                 initializer_range: float = 0.02, **kwargs):
        check_sizes(codebook_size=codebook_size, num_tokens=num_tokens, num_classes=num_classes, hidden_size=hidden_size,
                    num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                    text_hidden_size=text_hidden_size, micro_condition_embed_dim=micro_condition_embed_dim)
        check_positive_numbers(initializer_range=initializer_range)
        check_probabilities(text_drop_prob=text_drop_prob)
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} must be a multiple of num_attention_heads {num_attention_heads}")
        if mask_schedule not in ("arccos", "cosine", "linear", "square", "root"):
            raise ValueError(f"mask_schedule must be arccos, cosine, linear, square or root, got {mask_schedule!r}")
        sampling = {**DEFAULT_SAMPLING, **(sampling_defaults or {})}
        if sampling["guidance_schedule"] not in GUIDANCE_SCHEDULES:
            raise ValueError(f"guidance_schedule must be one of {GUIDANCE_SCHEDULES}, got {sampling['guidance_schedule']!r}")
        self.codebook_size = codebook_size
        self.num_tokens = num_tokens
        self.num_classes = num_classes
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.text_hidden_size = text_hidden_size
        self.micro_condition = bool(micro_condition)
        self.micro_condition_embed_dim = micro_condition_embed_dim
        self.text_drop_prob = text_drop_prob
        self.mask_schedule = mask_schedule
        self.sampling_defaults = sampling
        self.initializer_range = initializer_range
        self.weight_tying = bool(weight_tying)
        super().__init__(**kwargs)

    @property
    def condition_type(self) -> str:
        return "text"

    @property
    def mask_token_id(self) -> int:
        return self.codebook_size

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + self.num_classes + 2
