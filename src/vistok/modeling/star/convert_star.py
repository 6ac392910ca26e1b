"""Convert the STAR release (HF ``taocrayon/STAR``: trainer checkpoints, the weights at
``["trainer"]["var_wo_ddp"]``, read with ``torch.load(weights_only=True)``) to a
``NextScaleTextToImagePipeline`` folder: VAR's VQVAE (``vae_ch160v4096z32.pth`` or a converted
``var-vqvae`` folder) and the STAR transformer, optionally with the CLIP text encoder and tokenizer
(a diffusers SD 2.1 folder, ``--text-encoder``).

Hyper-parameters come from the shapes (width, depth, heads from ``scale_mul_1H11``, codebook, text
width, the sampler head); what shapes cannot say (the scale schedule, RoPE base and normalisation)
from a preset or ``--patch-nums`` (the releases' sample.py: RoPE theta 10000, norm 64).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ...conversion import ConversionError, Release, card_repo_id, choose_release, load_converted, read_original, rename_key, write_model_folder
from ...conversion.common import Original
from ...hub.cards import metrics_table, render_model_card
from ...utils.io import UnreadablePickleError, load_pickle
from ..var.convert_var import VAE_PRESETS, _load_tokenizer, _need, _parse_patch_nums
from .configuration_star import DEFAULT_SAMPLING, PATCH_NUMS_256, PATCH_NUMS_512, PATCH_NUMS_1024, STARConfig
from .modeling_star import STARTransformer

HUB_REPO = "taocrayon/STAR"
_PAPER = "STAR paper (arXiv:2406.10797)"
_LICENSE = {"license": "other"}
PRESETS = {
    "star-256-d16": Release(HUB_REPO, "STAR d16, 256x256 text-to-image.", None, **_LICENSE,
                            settings={"patch_nums": PATCH_NUMS_256}, sampling=DEFAULT_SAMPLING),
    "star-256-d30": Release(HUB_REPO, "STAR d30, 256x256 text-to-image.", None, **_LICENSE,
                            settings={"patch_nums": PATCH_NUMS_256}, sampling=DEFAULT_SAMPLING),
    "star-512": Release(HUB_REPO, "STAR d30, 512x512 text-to-image.", None, **_LICENSE,
                        settings={"patch_nums": PATCH_NUMS_512}, sampling=DEFAULT_SAMPLING),
    "star-1024": Release(HUB_REPO, "STAR d30, 1024x1024 text-to-image.", None, **_LICENSE,
                         settings={"patch_nums": PATCH_NUMS_1024}, sampling=DEFAULT_SAMPLING,
                         metrics=[{"metric": "seconds per 1024x1024 image", "value": 2.21, "setting": "A100", "source": _PAPER}]),
    "star-1024-sampler": Release(HUB_REPO, "STAR d30, 1024x1024, with the causal-driven stable sampler head.",
                                 "var_rope_d30_1024_sampler_mask_0108-ar-ckpt-ep2-iter6000.pth", **_LICENSE,
                                 settings={"patch_nums": PATCH_NUMS_1024}, sampling={**DEFAULT_SAMPLING, "masking_sampler": True},
                                 metrics=[{"metric": "seconds per 1024x1024 image", "value": 2.21, "setting": "A100", "source": _PAPER}]),
}

_RENAMES = [
    (r"^pos_start$", "start_position_embedding"), (r"^lvl_embed\.", "level_embedding."),
    (r"^encoder_proj\.", "text_projection."), (r"^head_logits\.", "lm_head."),
    (r"^word_embed_head\.", "sampler_word_embed."), (r"^feat_extract_blocks\.", "sampler_blocks."),
    (r"^head_proj\.", "sampler_input_proj."), (r"^encoder_proj2\.", "sampler_text_projection."),
    (r"^pos_start_last$", "sampler_start_embedding"), (r"^lvl_embed_2\.", "sampler_level_embedding."),
    (r"^head_logits2\.", "sampler_lm_head."),
    (r"\.attn\.scale_mul_1H11$", ".attention.logit_scale"), (r"\.attn\.mat_qkv\.", ".attention.qkv."),
    (r"\.attn\.proj\.", ".attention.out_proj."), (r"\.attn\.(q_bias|v_bias)$", r".attention.\1"),
    (r"\.cross_attn\.scale_mul_1H11$", ".cross_attention.logit_scale"), (r"\.cross_attn\.mat_q\.", ".cross_attention.q."),
    (r"\.cross_attn\.mat_kv\.", ".cross_attention.kv."), (r"\.cross_attn\.proj\.", ".cross_attention.out_proj."),
    (r"\.cross_attn\.(q_bias|v_bias)$", r".cross_attention.\1"), (r"\.ffn\.", ".mlp."),
]
# class_emb (the unused ImageNet table VAR's constructor still builds) and the buffers VAR derives
_DROPPED = ("class_emb.weight", "lvl_1L", "attn_bias_for_masking", "attn_mask")


def read_star_checkpoint(source: str, release: Release | None) -> Original:
    """A local trainer checkpoint (``["trainer"]["var_wo_ddp"]``) or bare state dict, read with weights_only=True."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix != ".safetensors":
        try:
            state = load_pickle(path)
        except UnreadablePickleError as err:
            raise ConversionError(str(err)) from None
        if isinstance(state, dict) and isinstance(state.get("trainer"), dict):
            state = state["trainer"].get("var_wo_ddp")
        if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ConversionError(f"{path} holds neither a STAR trainer checkpoint ['trainer']['var_wo_ddp'] nor a state dict of tensors")
        return Original(dict(state), path)
    return read_original(source, release, several_per_repo=True)


def convert_star_state_dict(original: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    out, unused = {}, set()
    for key, value in original.items():
        if key in _DROPPED:
            continue
        if key.endswith("zero_k_bias"):
            if value.abs().max() != 0:
                raise ConversionError(f"{key} is not zero: STAR's key bias is a zero buffer")
            continue
        new = rename_key(key, _RENAMES)
        if new == key and not key.startswith("word_embed."):
            unused.add(key)
            continue
        out[new] = value
    return out, unused


def infer_star_config(original: dict[str, torch.Tensor], patch_nums) -> dict:
    width = _need(original, "pos_start").shape[-1]
    depth = len({m[1] for k in original if (m := re.match(r"^blocks\.(\d+)\.", k))})
    if depth == 0:
        raise ConversionError("no blocks.N.* keys: not a STAR transformer checkpoint")
    scale = original.get("blocks.0.attn.scale_mul_1H11")
    heads = scale.shape[1] if scale is not None else depth
    levels = _need(original, "lvl_embed.weight").shape[0]
    if levels != len(patch_nums):
        raise ConversionError(f"the checkpoint has {levels} scales (lvl_embed) but the schedule {list(patch_nums)} has {len(patch_nums)}: "
                              "pass the matching --preset or --patch-nums")
    return dict(
        codebook_size=_need(original, "head_logits.weight").shape[0], z_channels=_need(original, "word_embed.weight").shape[1],
        patch_nums=list(patch_nums), depth=depth, hidden_size=width, num_attention_heads=heads,
        mlp_ratio=_need(original, "blocks.0.ffn.fc1.weight").shape[0] / width, attn_l2_norm=scale is not None,
        text_hidden_size=_need(original, "encoder_proj.weight").shape[1],
        num_sampler_blocks=len({m[1] for k in original if (m := re.match(r"^feat_extract_blocks\.(\d+)\.", k))}),
        drop_path_rate=0.1 * depth / 24,
    )


def build_transformer(original, patch_nums, sampling=None, rope_theta: float = 10000.0, rope_norm: float = 64.0,
                      sampler_from_scale: int = 9) -> STARTransformer:
    try:
        config = STARConfig(**infer_star_config(original, patch_nums), rope_theta=rope_theta, rope_norm=rope_norm,
                            sampler_from_scale=sampler_from_scale, sampling_defaults=sampling)
    except (TypeError, ValueError) as err:
        raise ConversionError(f"cannot build a STAR config from this checkpoint: {err}") from err
    converted, unused = convert_star_state_dict(original)
    return load_converted(STARTransformer, config, converted, unused, original)


def _load_text(text_encoder: str | None):
    if text_encoder is None:
        return None, None
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(text_encoder).expanduser()
    sub = (lambda name: {"subfolder": name}) if (path / "text_encoder").is_dir() else (lambda name: {})
    try:
        return CLIPTextModel.from_pretrained(text_encoder, **sub("text_encoder")), CLIPTokenizer.from_pretrained(text_encoder, **sub("tokenizer"))
    except Exception as err:
        raise ConversionError(f"could not load a CLIP text encoder and tokenizer from {text_encoder}: {err}") from err


def convert(source: str, output: str, *, tokenizer: str, text_encoder: str | None = None, preset: str | None = None,
            patch_nums=None, rope_theta: float = 10000.0, rope_norm: float = 64.0, sampler_from_scale=None, overwrite: bool = False,
            push_to_hub: str | None = None) -> Path:
    """``vistok convert star``: a STAR transformer plus VAR's VQVAE (and the CLIP text tower) as a pipeline folder."""
    from ...pipelines import NextScaleTextToImagePipeline

    chosen = choose_release(preset, PRESETS, "star")
    nums = _parse_patch_nums(patch_nums) or (chosen.settings["patch_nums"] if chosen else None)
    original = read_star_checkpoint(source, chosen)
    if nums is None:
        levels = _need(original, "lvl_embed.weight").shape[0]
        nums = {len(p): p for p in (PATCH_NUMS_256, PATCH_NUMS_1024)}.get(levels)
        if nums is None:
            raise ConversionError(f"{levels} scales: pass --preset or --patch-nums (256 and 512 px both have 10 scales)")
    transformer = build_transformer(original, nums, chosen.sampling if chosen else None, float(rope_theta), float(rope_norm),
                                    int(sampler_from_scale) if sampler_from_scale is not None else 9)
    tokenizer_model = _load_tokenizer(tokenizer, transformer.config.patch_nums)
    encoder, text_tokenizer = _load_text(text_encoder)
    try:
        pipeline = NextScaleTextToImagePipeline(image_tokenizer=tokenizer_model, transformer=transformer,
                                                text_encoder=encoder, tokenizer=text_tokenizer)
    except ValueError as err:
        raise ConversionError(f"the components do not fit together: {err}") from err
    base_model = original.hub_id or (chosen.repo if chosen else None)
    card = render_card(transformer.config, tokenizer_model.config, chosen, base_model, Path(source).name, card_repo_id(output, push_to_hub))
    return write_model_folder(output, pipeline, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


def render_card(cfg: STARConfig, tok_cfg, preset: Release | None, base_model: str | None, source_name: str, repo_id: str) -> str:
    sampling = "\n".join(f"| `{k}` | {v} |" for k, v in cfg.sampling_defaults.items())
    metadata = {"license": preset.license if preset else "other", "library_name": "vistok", "pipeline_tag": "text-to-image",
                "tags": ["vistok", "star", "var", "next-scale-prediction", "text-to-image"], "base_model": base_model}
    return render_model_card(
        "star", metadata=metadata, model_name=Path(repo_id).name, base_model=base_model or source_name,
        description=preset.description if preset else "", depth=str(cfg.depth), hidden_size=str(cfg.hidden_size),
        num_heads=str(cfg.num_attention_heads), image_size=str(tok_cfg.image_size), num_tokens=str(cfg.num_tokens),
        num_scales=str(cfg.num_scales), patch_nums=", ".join(map(str, cfg.patch_nums)), codebook_size=str(cfg.codebook_size),
        text_hidden_size=str(cfg.text_hidden_size), sampler="yes" if cfg.num_sampler_blocks else "no", sampling=sampling,
        repo_id=repo_id, metrics=metrics_table(preset.metrics if preset else []), license=metadata["license"],
    )


CLI_OPTIONS = (
    ("--tokenizer", dict(required=True, metavar="SRC", help="VAR's VQVAE: a converted var-vqvae folder or vae_ch160v4096z32.pth")),
    ("--text-encoder", dict(metavar="DIR", help="a CLIP text encoder + tokenizer (SD 2.1 folder with text_encoder/ and tokenizer/); "
                            "without it the pipeline takes prompt_embeds")),
    ("--patch-nums", dict(metavar="PN", help="the scale schedule, coarse to fine (a preset sets it)")),
    ("--rope-theta", dict(type=float, default=10000.0, help="RoPE base (the releases' sample.py: 10000)")),
    ("--rope-norm", dict(type=float, default=64.0, help="RoPE coordinate normalisation (the releases' sample.py: 64)")),
    ("--sampler-from-scale", dict(type=int, metavar="K", help="first scale of the masking sampler (the release: 9)")),
)
