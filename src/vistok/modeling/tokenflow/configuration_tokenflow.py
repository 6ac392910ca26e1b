"""Configuration of the TokenFlow tokenizer (ByteFlow-AI/TokenFlow, ``tokenflow/tokenizer/vq_model.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, CLIPVisionConfig, LlamaConfig, PreTrainedConfig, SiglipVisionConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..config_checks import check_positive_numbers, check_probabilities, check_size_list, check_sizes

SEMANTIC_ENCODERS = ("clip", "siglip")
# TokenFlow's scale tables (scale_rq_layers): clipb_224 with infer_interpolate (the t2i release, 256 px), and
# siglip_384 (the understanding release, 27x27 SigLIP grid)
CLIP_PATCH_NUMS = (1, 2, 4, 6, 8, 10, 12, 14, 16)
SIGLIP_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 22, 27)


def _clip_b16() -> dict:
    """OpenAI CLIP ViT-B/16's vision tower (TokenFlow's clipb_224 teacher) as a transformers config."""
    return CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            image_size=224, patch_size=16, hidden_act="quick_gelu", layer_norm_eps=1e-5).to_dict()


class TokenFlowConfig(PreTrainedConfig):
    """TokenFlow's dual-encoder, shared-mapping multi-scale tokenizer.

    Semantic branch: a transformers vision tower (``semantic_encoder_config``: a ``CLIPVisionConfig`` for the
    ``clip`` teacher of TokenFlow-t2i, a ``SiglipVisionConfig`` for the ``siglip`` teacher of the understanding
    release) -> patch tokens -> ``semantic_in`` (Linear-Tanh-Linear to ``semantic_code_dim``). CLIP reads the
    pixels as they are ([-1, 1], TokenFlow's ``scaling_layer=None``) after its last layer and post-LayerNorm,
    its position embedding interpolated (DINO-style) when the grid differs from the tower's; SigLIP reads
    them rescaled by TokenFlow's ``ScalingLayerForSigLip`` and returns the second-to-last hidden state.

    Pixel branch: the LlamaGen/taming conv encoder (``pixel_channels``, ``pixel_channel_mult``,
    ``pixel_num_res_blocks``, ``pixel_z_channels``) -> 1x1 ``quant_conv`` to ``pixel_code_dim``; the input is
    bicubic-resized to ``downsample_factor * patch_nums[-1]`` when that differs from ``image_size`` (SigLIP:
    384 -> 432), and the decoder output back to ``image_size``.

    Both are concatenated (semantic first) and quantized by
    :class:`~vistok.modeling.quantizers.SharedMappingMultiScaleQuantizer` over ``patch_nums``: one index per
    position and scale addresses a semantic and a pixel codebook of ``codebook_size`` rows.

    Decoding: the pixel part -> 1x1 ``post_quant_conv`` -> conv decoder (``decoder_channels``,
    ``decoder_num_res_blocks`` blocks per level; TokenFlow's "enhanced" decoder: 256 and 4, built with one
    block more per level as in LlamaGen) -> pixels in [-1, 1]. The semantic part -> the semantic decoder (a
    ``semantic_decoder_num_layers``-layer ViT over the code map, patch 1, position grid
    ``semantic_decoder_grid``) -> ``semantic_out`` to ``semantic_feature_dim`` (the teacher's feature size;
    a training target).

    Token layout ("multiscale"): ``token_ids [B, num_tokens]``, scales concatenated coarse to fine, row-major
    inside a scale; ``scale_lengths`` / ``scale_offsets`` give it (817 tokens for the t2i release).
    """

    model_type = "vistok_tokenflow"
    sub_configs = {"semantic_encoder_config": AutoConfig}

    def __init__(
        self,
        image_size: int = 256,
        codebook_size: int = 32768,
        semantic_code_dim: int = 32,
        pixel_code_dim: int = 8,
        patch_nums: Sequence[int] = CLIP_PATCH_NUMS,
        semantic_encoder_type: str = "clip",
        semantic_encoder_config: dict | PreTrainedConfig | None = None,
        semantic_decoder_hidden_size: int = 768,
        semantic_decoder_num_layers: int = 3,
        semantic_decoder_num_heads: int = 12,
        semantic_decoder_grid: int = 14,
        semantic_feature_dim: int = 512,
        pixel_channels: int = 128,
        pixel_channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        pixel_num_res_blocks: int = 2,
        pixel_z_channels: int = 256,
        decoder_channels: int = 256,
        decoder_num_res_blocks: int = 4,
        dropout: float = 0.0,
        commitment_cost: float = 1.0,
        entropy_loss_ratio: float = 0.0,
        pixel_range: Sequence[float] = (-1.0, 1.0),
        initializer_range: float = 0.02,
        **kwargs,
    ):
        check_sizes(image_size=image_size, codebook_size=codebook_size, semantic_code_dim=semantic_code_dim,
                    pixel_code_dim=pixel_code_dim, semantic_decoder_hidden_size=semantic_decoder_hidden_size,
                    semantic_decoder_num_layers=semantic_decoder_num_layers,
                    semantic_decoder_num_heads=semantic_decoder_num_heads, semantic_decoder_grid=semantic_decoder_grid,
                    semantic_feature_dim=semantic_feature_dim, pixel_channels=pixel_channels,
                    pixel_num_res_blocks=pixel_num_res_blocks, pixel_z_channels=pixel_z_channels,
                    decoder_channels=decoder_channels, decoder_num_res_blocks=decoder_num_res_blocks)
        check_positive_numbers(initializer_range=initializer_range)
        check_probabilities(dropout=dropout)
        check_size_list("pixel_channel_mult", pixel_channel_mult)
        check_size_list("patch_nums", patch_nums)
        if semantic_encoder_type not in SEMANTIC_ENCODERS:
            raise ValueError(f"semantic_encoder_type must be one of {SEMANTIC_ENCODERS}, got {semantic_encoder_type!r}")
        if semantic_decoder_hidden_size % semantic_decoder_num_heads:
            raise ValueError(f"semantic_decoder_hidden_size {semantic_decoder_hidden_size} must be divisible by "
                             f"semantic_decoder_num_heads {semantic_decoder_num_heads}")
        if commitment_cost < 0 or entropy_loss_ratio < 0:
            raise ValueError(f"commitment_cost and entropy_loss_ratio must be >= 0, got {commitment_cost}, {entropy_loss_ratio}")
        if semantic_encoder_config is None:
            if semantic_encoder_type != "clip":
                raise ValueError("semantic_encoder_config is required for a siglip semantic encoder "
                                 "(e.g. google/siglip-so400m-patch14-384's vision config)")
            semantic_encoder_config = _clip_b16()
        if isinstance(semantic_encoder_config, dict):
            config_dict = dict(semantic_encoder_config)
            default = "clip_vision_model" if semantic_encoder_type == "clip" else "siglip_vision_model"
            semantic_encoder_config = CONFIG_MAPPING[config_dict.pop("model_type", default)](**config_dict)
        expected = CLIPVisionConfig if semantic_encoder_type == "clip" else SiglipVisionConfig
        if not isinstance(semantic_encoder_config, expected):
            raise ValueError(f"a {semantic_encoder_type} semantic encoder takes a {expected.__name__}, "
                             f"got {type(semantic_encoder_config).__name__}")
        self.image_size = image_size
        self.codebook_size = codebook_size
        self.semantic_code_dim = semantic_code_dim
        self.pixel_code_dim = pixel_code_dim
        self.patch_nums = list(patch_nums)
        self.semantic_encoder_type = semantic_encoder_type
        self.semantic_encoder_config = semantic_encoder_config
        self.semantic_decoder_hidden_size = semantic_decoder_hidden_size
        self.semantic_decoder_num_layers = semantic_decoder_num_layers
        self.semantic_decoder_num_heads = semantic_decoder_num_heads
        self.semantic_decoder_grid = semantic_decoder_grid
        self.semantic_feature_dim = semantic_feature_dim
        self.pixel_channels = pixel_channels
        self.pixel_channel_mult = list(pixel_channel_mult)
        self.pixel_num_res_blocks = pixel_num_res_blocks
        self.pixel_z_channels = pixel_z_channels
        self.decoder_channels = decoder_channels
        self.decoder_num_res_blocks = decoder_num_res_blocks
        self.dropout = dropout
        self.commitment_cost = commitment_cost
        self.entropy_loss_ratio = entropy_loss_ratio
        self.pixel_range = list(pixel_range)
        self.initializer_range = initializer_range
        for derived in ("num_tokens", "token_layout", "variable_length", "scale_lengths", "scale_offsets"):
            kwargs.pop(derived, None)
        self.scale_lengths = [p * p for p in self.patch_nums]
        self.scale_offsets = [sum(self.scale_lengths[:k]) for k in range(len(self.patch_nums) + 1)]
        self.num_tokens = self.scale_offsets[-1]
        self.token_layout = "multiscale"
        self.variable_length = False
        grid = image_size // semantic_encoder_config.patch_size
        if grid != self.patch_nums[-1]:
            raise ValueError(f"the semantic encoder's grid ({image_size} px / patch {semantic_encoder_config.patch_size} "
                             f"= {grid}) must equal the last scale of patch_nums {self.patch_nums}")
        super().__init__(**kwargs)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def code_dim(self) -> int:
        """Channels of a code (semantic + pixel): the width of ``latents`` and of the features
        ``get_image_features`` returns."""
        return self.semantic_code_dim + self.pixel_code_dim

    @property
    def embed_dim(self) -> int:
        """TokenFlow's name for ``code_dim`` ("parameters required by llava"): the width of the image features."""
        return self.code_dim

    @property
    def token_dim(self) -> int:
        return self.code_dim

    @property
    def pixel_downsample_factor(self) -> int:
        return 2 ** (len(self.pixel_channel_mult) - 1)

    @property
    def pixel_input_size(self) -> int:
        """The side the pixel encoder reads (and the pixel decoder writes)."""
        return self.pixel_downsample_factor * self.patch_nums[-1]


# run_llava_samples.py's negative prompt (the unconditional branch of guidance) and sampling settings (loop 1)
NEGATIVE_PROMPT = ("lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
                   "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry.")
DEFAULT_SAMPLING = {"guidance_scale": 7.5, "temperature": 1.0, "top_k": 600, "top_p": 0.6}
PROJECTOR_TYPES = ("linear", "mlp2x_gelu", "mlp3x_gelu", "identity")


@strict
class TokenFlowT2IConfig(LlamaConfig):
    """TokenFlow-t2i: a Llama language model (transformers' Llama + per-head QK RMSNorm before RoPE, eps
    ``qk_norm_eps``) that predicts the TokenFlow tokenizer's codes after the prompt, scale by scale (VAR-style).

    The vocabulary is the text vocabulary followed by the ``codebook_size`` image tokens ``<vq_token_i>`` from
    ``image_token_start`` on. The prompt is ``prompt_length`` tokens (BOS + text, truncated or left-padded with
    ``pad_token_id``) followed by ``image_start_token_id`` (``<img>``); the image inputs of scales 1..S-1 are
    the chained code sums of the tokenizer (``SharedMappingMultiScaleQuantizer.teacher_forcing_input``,
    ``code_dim`` wide) through ``projector_type`` (LLaVA's ``mm_projector``), plus a level embedding (0 for text,
    s+1 for scale s) and a learned position per image token (``<img>`` takes scale 0's). Attention is causal
    over the text and block-causal across scales inside the image. ``sampling_defaults`` hold the released
    sampling settings, ``negative_prompt`` the unconditional prompt of guidance.
    """

    model_type = "vistok_tokenflow_t2i"

    vocab_size: int = 64768  # Llama's 32000 text ids + the 32768 image tokens (the converter reads the release's)
    codebook_size: int = 32768
    image_token_start: int = 32000
    image_start_token_id: int | None = None
    patch_nums: list | tuple = CLIP_PATCH_NUMS
    code_dim: int = 40
    projector_type: str = "mlp2x_gelu"
    qk_norm_eps: float = 1e-6
    prompt_length: int = 128
    negative_prompt: str = NEGATIVE_PROMPT
    sampling_defaults: dict | None = None

    def __post_init__(self, **kwargs):
        check_sizes(codebook_size=self.codebook_size, code_dim=self.code_dim, prompt_length=self.prompt_length)
        check_size_list("patch_nums", self.patch_nums)
        check_positive_numbers(qk_norm_eps=self.qk_norm_eps)
        if self.projector_type not in PROJECTOR_TYPES:
            raise ValueError(f"projector_type must be one of {PROJECTOR_TYPES}, got {self.projector_type!r}")
        if self.image_token_start < 0 or self.image_token_start + self.codebook_size > self.vocab_size:
            raise ValueError(f"the image tokens [{self.image_token_start}, {self.image_token_start + self.codebook_size}) "
                             f"must lie inside the vocabulary of {self.vocab_size}")
        self.patch_nums = list(self.patch_nums)
        self.sampling_defaults = {**DEFAULT_SAMPLING, **(self.sampling_defaults or {})}
        for derived in ("num_tokens", "token_layout", "scale_lengths", "scale_offsets"):
            kwargs.pop(derived, None)
        super().__post_init__(**kwargs)

    @property
    def num_tokens(self) -> int:
        """Image tokens per image (sum of pn^2)."""
        return sum(p * p for p in self.patch_nums)

    @property
    def scale_offsets(self) -> list[int]:
        lengths = [p * p for p in self.patch_nums]
        return [sum(lengths[:k]) for k in range(len(lengths) + 1)]

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)
