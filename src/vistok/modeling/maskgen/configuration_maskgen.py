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


KL_GUIDANCE_SCHEDULES = ("linear", "constant")

# What MaskGenKLPipeline falls back to: configs/infer/MaskGen/maskgen_kl_{l,xl}.yaml (num_iter 32, cfg 3.0,
# cfg_schedule linear, temperature 1.0, sample_aesthetic_score 6.5) and DiffLoss' 100 respaced DDPM steps.
KL_DEFAULT_SAMPLING = {
    "num_inference_steps": 32,
    "num_diffusion_steps": 100,
    "guidance_scale": 3.0,
    "guidance_schedule": "linear",
    "temperature": 1.0,
    "aesthetic_score": 6.5,
}


class MaskGenKLConfig(PreTrainedConfig):
    """MaskGen-KL (bytedance/1d-tokenizer ``MaskGen_KL``, MAR-style): the same joint-attention transformer as
    MaskGen-VQ over ``num_tokens`` continuous TA-TiTok KL tokens (``token_dim`` channels, multiplied by
    ``scale_factor``), masked ones replaced by a learned mask token; its output conditions a diffusion head
    (``diffusion_head_depth`` residual AdaLN MLP blocks ``diffusion_head_width`` wide) that denoises each token with a
    cosine-schedule DDPM of ``num_train_timesteps`` steps (learned-range variance, epsilon prediction), respaced to
    ``sampling_defaults["num_diffusion_steps"]`` when sampling.

    ``text_hidden_size``: the CLIP text width (768 for ViT-L-14-336); ``encoder_hidden_states`` are its penultimate
    hidden states and ``pooled_projections`` its projected pooled feature. The aesthetic-score micro-condition
    (``micro_condition``) is MaskGen-KL's own interleaved sin/cos embedding of ``score * 100``.
    """

    model_type = "vistok_maskgen_kl"
    guidance_schedules = KL_GUIDANCE_SCHEDULES

    def __init__(self, token_dim: int = 16, num_tokens: int = 32, hidden_size: int = 1024, num_hidden_layers: int = 16,
                 num_attention_heads: int = 16, text_hidden_size: int = 768, micro_condition: bool = True,
                 micro_condition_embed_dim: int = 256, text_drop_prob: float = 0.1, scale_factor: float = 0.7525,
                 diffusion_head_width: int = 1024, diffusion_head_depth: int = 8, num_train_timesteps: int = 1000,
                 diffusion_batch_mul: int = 4, sampling_defaults: dict | None = None, initializer_range: float = 0.02,
                 **kwargs):
        check_sizes(token_dim=token_dim, num_tokens=num_tokens, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                    num_attention_heads=num_attention_heads, text_hidden_size=text_hidden_size,
                    micro_condition_embed_dim=micro_condition_embed_dim, diffusion_head_width=diffusion_head_width,
                    diffusion_head_depth=diffusion_head_depth, num_train_timesteps=num_train_timesteps,
                    diffusion_batch_mul=diffusion_batch_mul)
        check_positive_numbers(initializer_range=initializer_range, scale_factor=scale_factor)
        check_probabilities(text_drop_prob=text_drop_prob)
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} must be a multiple of num_attention_heads {num_attention_heads}")
        if micro_condition and micro_condition_embed_dim % 2:
            raise ValueError(f"micro_condition_embed_dim must be even (sin/cos pairs), got {micro_condition_embed_dim}")
        sampling = {**KL_DEFAULT_SAMPLING, **(sampling_defaults or {})}
        if sampling["guidance_schedule"] not in KL_GUIDANCE_SCHEDULES:
            raise ValueError(f"guidance_schedule must be one of {KL_GUIDANCE_SCHEDULES}, got {sampling['guidance_schedule']!r}")
        if not 1 <= int(sampling["num_diffusion_steps"]) <= num_train_timesteps:
            raise ValueError(f"num_diffusion_steps must lie in [1, {num_train_timesteps}], got {sampling['num_diffusion_steps']}")
        self.token_dim = token_dim
        self.num_tokens = num_tokens
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.text_hidden_size = text_hidden_size
        self.micro_condition = bool(micro_condition)
        self.micro_condition_embed_dim = micro_condition_embed_dim
        self.text_drop_prob = text_drop_prob
        self.scale_factor = float(scale_factor)
        self.diffusion_head_width = diffusion_head_width
        self.diffusion_head_depth = diffusion_head_depth
        self.num_train_timesteps = num_train_timesteps
        self.diffusion_batch_mul = diffusion_batch_mul
        self.sampling_defaults = sampling
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def condition_type(self) -> str:
        return "text"
