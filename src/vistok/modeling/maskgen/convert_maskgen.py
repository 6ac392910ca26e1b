"""Convert MaskGen-VQ generators of bytedance/1d-tokenizer (turkeyju/generator_maskgen_vq_*) into a MaskGenPipeline
folder, and MaskGen-KL generators (turkeyju/generator_maskgen_kl_*) into a MaskGenKLPipeline folder: the TA-TiTok VQ tokenizer (a converted folder, or an original release converted on the way), the
generator, the released sampling settings and, with ``--text-encoder``, the transformers CLIP text model and
tokenizer (``openai/clip-vit-large-patch14-336`` holds the text tower of the OpenCLIP ViT-L-14-336 (openai) model
the release reads).

MaskGen-VQ: the state dict keys are the original's (diffusers' ``JointTransformerBlock`` and ``AdaLayerNormContinuous`` on both
sides); the tied head (``lm_head.weight``, the embedding itself upstream) is dropped after a check.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ...conversion import (
    ConversionError,
    Release,
    card_repo_id,
    choose_release,
    load_config_file,
    load_converted,
    read_original,
    rename_key,
    write_model_folder,
)
from ...hub.cards import metrics_table, render_model_card
from .configuration_maskgen import DEFAULT_SAMPLING, KL_DEFAULT_SAMPLING, MaskGenKLConfig, MaskGenVQConfig
from .modeling_maskgen import MaskGenKLTransformer, MaskGenVQTransformer

_README = "bytedance/1d-tokenizer README_MaskGen.md"


def _metrics(fid, geneval):
    return [{"metric": "FID (MJHQ-30K)", "value": fid, "setting": "", "source": _README},
            {"metric": "GenEval overall", "value": geneval, "setting": "", "source": _README}]


_VQ_MODEL = {"codebook_size": 8192, "num_latent_tokens": 128, "text_embed_dim": 768}


def _maskgen(width, depth, heads):
    return {"decoder_embed_dim": width, "decoder_depth": depth, "decoder_num_heads": heads, "micro_condition": True,
            "micro_condition_embed_dim": 256, "text_drop_prob": 0.1, "condition_num_classes": 1000,
            "sample_aesthetic_score": 6.5}


# configs/infer/MaskGen/maskgen_vq_{l,xl}.yaml; the sampling settings of the README's generate() call
RELEASES = {
    "maskgen-vq-l": Release("turkeyju/generator_maskgen_vq_l", "MaskGen-VQ-L: 1024 wide, 16 joint-attention blocks, over TA-TiTok-BL-128-VQ tokens.",
                            settings={"model": {"vq_model": _VQ_MODEL, "maskgen": _maskgen(1024, 16, 16)}}, sampling=dict(DEFAULT_SAMPLING),
                            tokenizer="ta-titok-bl128-vq", metrics=_metrics(7.74, 0.53)),
    "maskgen-vq-xl": Release("turkeyju/generator_maskgen_vq_xl", "MaskGen-VQ-XL: 1280 wide, 20 joint-attention blocks, over TA-TiTok-BL-128-VQ tokens.",
                             settings={"model": {"vq_model": _VQ_MODEL, "maskgen": _maskgen(1280, 20, 20)}}, sampling=dict(DEFAULT_SAMPLING),
                             tokenizer="ta-titok-bl128-vq", metrics=_metrics(7.51, 0.57)),
}


def convert_state_dict(original: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """(vistok state, weight_tying): the keys are kept; a tied head (no bias, equal to the embedding) is dropped."""
    state = dict(original)
    if "embeddings.weight" not in state:
        raise ConversionError("missing key 'embeddings.weight': not a MaskGen-VQ checkpoint")
    tied = "lm_head.bias" not in state
    if tied:
        head = state.pop("lm_head.weight", None)
        if head is not None and not torch.equal(head, state["embeddings.weight"]):
            raise ConversionError("lm_head.weight differs from embeddings.weight but the head has no bias (a tied head)")
    return state, tied


def infer_config(state: dict[str, torch.Tensor], original_config: dict, tied: bool) -> dict:
    model = original_config.get("model", {})
    maskgen, vq_model = model.get("maskgen"), model.get("vq_model", {})
    if not isinstance(maskgen, dict) or "decoder_num_heads" not in maskgen:
        raise ConversionError("the original config has no model.maskgen.decoder_num_heads: pass --config ORIGINAL.yaml or a --preset")
    for key in ("text_embed_proj.weight", "cond_pooled_proj.weight", "pos_embed"):
        if key not in state:
            raise ConversionError(f"missing key {key!r} in the MaskGen checkpoint")
    width, text = state["text_embed_proj.weight"].shape
    micro = state["cond_pooled_proj.weight"].shape[1] - text
    depth = len({m[1] for k in state if (m := re.match(r"^blocks\.(\d+)\.", k))})
    codebook = int(vq_model.get("codebook_size", 0)) or None
    if not tied:
        codebook = state["lm_head.weight"].shape[0]
    if codebook is None:
        raise ConversionError("the original config has no model.vq_model.codebook_size")
    classes = state["embeddings.weight"].shape[0] - codebook - 2
    if classes < 0 or ("condition_num_classes" in maskgen and int(maskgen["condition_num_classes"]) != classes):
        raise ConversionError(f"embeddings.weight has {state['embeddings.weight'].shape[0]} rows: expected codebook_size "
                              f"{codebook} + 1 + condition_num_classes {maskgen.get('condition_num_classes')} + 1")
    if bool(maskgen.get("micro_condition", micro > 0)) != (micro > 0):
        raise ConversionError(f"config micro_condition={maskgen.get('micro_condition')} but cond_pooled_proj reads {micro} extra channels")
    sampling = dict(DEFAULT_SAMPLING)
    for original_key, ours in (("cfg", "guidance_scale"), ("num_iter", "num_inference_steps"),
                               ("temperature", "randomize_temperature"), ("sample_aesthetic_score", "aesthetic_score")):
        if original_key in maskgen:
            sampling[ours] = type(DEFAULT_SAMPLING[ours])(maskgen[original_key])
    return dict(
        codebook_size=codebook, num_tokens=state["pos_embed"].shape[1], num_classes=classes, hidden_size=width,
        num_hidden_layers=depth, num_attention_heads=int(maskgen["decoder_num_heads"]), text_hidden_size=text,
        micro_condition=micro > 0, micro_condition_embed_dim=micro if micro > 0 else 256,
        text_drop_prob=float(maskgen.get("text_drop_prob", 0.1)), weight_tying=tied,
        mask_schedule=maskgen.get("mask_schedule_strategy", "arccos"), sampling_defaults=sampling,
    )


def convert_transformer(source: str, config: str | None = None, release: Release | None = None) -> tuple[MaskGenVQTransformer, object]:
    """(the converted MaskGenVQTransformer, the original checkpoint as read)."""
    original = read_original(source)
    if config is None and original.folder is not None and (original.folder / "config.json").is_file():
        config = str(original.folder / "config.json")
    original_config = load_config_file(config) if config else (dict(release.settings) if release else {})
    state, tied = convert_state_dict(original)
    model_config = MaskGenVQConfig(**infer_config(state, original_config, tied))
    return load_converted(MaskGenVQTransformer, model_config, state, original=original), original


def convert(source: str, output: str, *, tokenizer: str, tokenizer_config: str | None = None, text_encoder: str | None = None,
            config: str | None = None, preset: str | None = None, overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """``vistok convert maskgen-vq``: a MaskGen-VQ generator (+ its TA-TiTok tokenizer) -> a MaskGenPipeline folder."""
    from ...pipelines import MaskGenPipeline
    from ..maskgit.convert_maskgit import _load_tokenizer

    release = choose_release(preset, RELEASES, "maskgen-vq")
    transformer, original = convert_transformer(source, config, release)
    image_tokenizer, _ = _load_tokenizer(tokenizer, "ta-titok", tokenizer_config)
    clip = clip_tokenizer = None
    if text_encoder is not None:
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        clip = CLIPTextModelWithProjection.from_pretrained(text_encoder).eval()
        clip_tokenizer = CLIPTokenizer.from_pretrained(text_encoder)
    pipeline = MaskGenPipeline(image_tokenizer=image_tokenizer.eval(), transformer=transformer, text_encoder=clip, tokenizer=clip_tokenizer)
    base = release.repo if release else (original.hub_id or Path(source).name)
    card = render_card(transformer.config, image_tokenizer.config, base, card_repo_id(output, push_to_hub), release, text_encoder)
    return write_model_folder(output, pipeline, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


CLI_OPTIONS = (
    ("--tokenizer", dict(required=True, metavar="SRC", help="the TA-TiTok VQ tokenizer: a converted vistok folder, or an "
                                                           "original release (converted on the way with `ta-titok`)")),
    ("--tokenizer-config", dict(metavar="YAML", help="original config for a bare tokenizer checkpoint file")),
    ("--text-encoder", dict(metavar="CLIP", help="a transformers CLIP folder or repo id holding the text model and tokenizer "
                                                 "(openai/clip-vit-large-patch14-336 for the releases); without it the "
                                                 "pipeline takes prompt_embeds")),
    ("--config", dict(metavar="YAML", help="the generator's original config (YAML/JSON) for a bare checkpoint file")),
)


def render_card(cfg: MaskGenVQConfig, tok_cfg, base_model: str, repo_id: str, release: Release | None, text_encoder) -> str:
    sampling = "\n".join(f"| `{k}` | {v} |" for k, v in cfg.sampling_defaults.items())
    metadata = {"license": release.license if release else "apache-2.0", "library_name": "vistok", "pipeline_tag": "text-to-image",
                "tags": ["vistok", "maskgen", "text-to-image", "ta-titok"], "base_model": base_model if "/" in base_model else None}
    return render_model_card(
        "maskgen-vq", metadata=metadata, model_name=Path(repo_id).name, base_model=base_model,
        description=release.description if release else "", hidden_size=str(cfg.hidden_size),
        num_hidden_layers=str(cfg.num_hidden_layers), num_attention_heads=str(cfg.num_attention_heads),
        num_tokens=str(cfg.num_tokens), codebook_size=str(cfg.codebook_size), text_hidden_size=str(cfg.text_hidden_size),
        sampling=sampling, repo_id=repo_id, metrics=metrics_table(release.metrics if release else []),
        text_encoder=f"`{text_encoder}` (CLIPTextModelWithProjection)" if text_encoder else
        "none stored: pass `prompt_embeds`, `pooled_prompt_embeds` and `decoder_prompt_embeds`",
        tokenizer_model_type=tok_cfg.model_type, license=metadata["license"],
    )


# ------------------------------------------------------------------------------------------------------------------
# MaskGen-KL: the keys are the original's but for the diffusion head, ``diffloss.net.*`` -> ``diffusion_head.*``.
# ------------------------------------------------------------------------------------------------------------------

_KL_VQ_MODEL = {"quantize_mode": "vae", "token_size": 16, "num_latent_tokens": 32, "scale_factor": 0.7525}


def _maskgen_kl(width, depth):
    return {"model": {"vq_model": dict(_KL_VQ_MODEL),
                      "maskgen": {"decoder_embed_dim": width, "decoder_depth": depth, "decoder_num_heads": 16,
                                  "micro_condition": True, "micro_condition_embed_dim": 256, "text_drop_prob": 0.1,
                                  "cfg": 3.0, "cfg_schedule": "linear", "num_iter": 32, "temperature": 1.0,
                                  "sample_aesthetic_score": 6.5}},
            "losses": {"diffloss_d": 8, "diffloss_w": width}}


# configs/infer/MaskGen/maskgen_kl_{l,xl}.yaml
KL_RELEASES = {
    "maskgen-kl-l": Release("turkeyju/generator_maskgen_kl_l", "MaskGen-KL-L: 1024 wide, 16 joint-attention blocks, 8 x 1024 diffusion head, over 32 TA-TiTok-BL-32-KL tokens.",
                            settings=_maskgen_kl(1024, 16), sampling=dict(KL_DEFAULT_SAMPLING),
                            tokenizer="ta-titok-bl32-kl", metrics=_metrics(7.24, 0.52)),
    "maskgen-kl-xl": Release("turkeyju/generator_maskgen_kl_xl", "MaskGen-KL-XL: 1280 wide, 20 joint-attention blocks, 8 x 1280 diffusion head, over 32 TA-TiTok-BL-32-KL tokens.",
                             settings=_maskgen_kl(1280, 20), sampling=dict(KL_DEFAULT_SAMPLING),
                             tokenizer="ta-titok-bl32-kl", metrics=_metrics(6.53, 0.55)),
}
KL_RENAMES = ((r"^diffloss\.net\.", "diffusion_head."),)


def convert_kl_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for key in ("z_proj.weight", "mask_token", "decoder_pos_embed_learned", "diffloss.net.input_proj.weight"):
        if key not in original:
            raise ConversionError(f"missing key {key!r}: not a MaskGen-KL checkpoint")
    return {rename_key(k, KL_RENAMES): v for k, v in original.items()}


def infer_kl_config(state: dict[str, torch.Tensor], original_config: dict) -> dict:
    model = original_config.get("model", {})
    maskgen, vq_model = model.get("maskgen"), model.get("vq_model", {})
    if not isinstance(maskgen, dict) or "decoder_num_heads" not in maskgen:
        raise ConversionError("the original config has no model.maskgen.decoder_num_heads: pass --config ORIGINAL.yaml or a --preset")
    if "scale_factor" not in vq_model:
        raise ConversionError("the original config has no model.vq_model.scale_factor (the latent scale MaskGen-KL samples in)")
    width, text = state["text_emb.weight"].shape
    micro = state["text_pooled_emb.weight"].shape[1] - text
    if bool(maskgen.get("micro_condition", micro > 0)) != (micro > 0):
        raise ConversionError(f"config micro_condition={maskgen.get('micro_condition')} but text_pooled_emb reads {micro} extra channels")
    token_dim = state["z_proj.weight"].shape[1]
    if int(vq_model.get("token_size", token_dim)) != token_dim:
        raise ConversionError(f"config token_size {vq_model.get('token_size')} but z_proj reads {token_dim} channels")
    head_width = state["diffusion_head.input_proj.weight"].shape[0]
    head_depth = len({m[1] for k in state if (m := re.match(r"^diffusion_head\.res_blocks\.(\d+)\.", k))})
    sampling = dict(KL_DEFAULT_SAMPLING)
    for original_key, ours in (("cfg", "guidance_scale"), ("num_iter", "num_inference_steps"), ("cfg_schedule", "guidance_schedule"),
                               ("temperature", "temperature"), ("sample_aesthetic_score", "aesthetic_score")):
        if original_key in maskgen:
            sampling[ours] = type(KL_DEFAULT_SAMPLING[ours])(maskgen[original_key])
    losses = original_config.get("losses", {})
    if "num_sampling_steps" in losses:
        sampling["num_diffusion_steps"] = int(losses["num_sampling_steps"])
    return dict(
        token_dim=token_dim, num_tokens=state["decoder_pos_embed_learned"].shape[1], hidden_size=width,
        num_hidden_layers=len({m[1] for k in state if (m := re.match(r"^decoder_blocks\.(\d+)\.", k))}),
        num_attention_heads=int(maskgen["decoder_num_heads"]), text_hidden_size=text, micro_condition=micro > 0,
        micro_condition_embed_dim=micro if micro > 0 else 256, text_drop_prob=float(maskgen.get("text_drop_prob", 0.1)),
        scale_factor=float(vq_model["scale_factor"]), diffusion_head_width=head_width, diffusion_head_depth=head_depth,
        diffusion_batch_mul=int(maskgen.get("diffusion_batch_mul", 4)), sampling_defaults=sampling,
    )


def convert_kl_transformer(source: str, config: str | None = None, release: Release | None = None) -> tuple[MaskGenKLTransformer, object]:
    """(the converted MaskGenKLTransformer, the original checkpoint as read)."""
    original = read_original(source)
    if config is None and original.folder is not None and (original.folder / "config.json").is_file():
        config = str(original.folder / "config.json")
    original_config = load_config_file(config) if config else (dict(release.settings) if release else {})
    state = convert_kl_state_dict(original)
    model_config = MaskGenKLConfig(**infer_kl_config(state, original_config))
    return load_converted(MaskGenKLTransformer, model_config, state, original=original), original


def convert_kl(source: str, output: str, *, tokenizer: str, tokenizer_config: str | None = None, text_encoder: str | None = None,
               config: str | None = None, preset: str | None = None, overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """``vistok convert maskgen-kl``: a MaskGen-KL generator (+ its TA-TiTok KL tokenizer) -> a MaskGenKLPipeline folder."""
    from ...pipelines import MaskGenKLPipeline
    from ..maskgit.convert_maskgit import _load_tokenizer

    release = choose_release(preset, KL_RELEASES, "maskgen-kl")
    transformer, original = convert_kl_transformer(source, config, release)
    image_tokenizer, _ = _load_tokenizer(tokenizer, "ta-titok", tokenizer_config)
    clip = clip_tokenizer = None
    if text_encoder is not None:
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        clip = CLIPTextModelWithProjection.from_pretrained(text_encoder).eval()
        clip_tokenizer = CLIPTokenizer.from_pretrained(text_encoder)
    try:
        pipeline = MaskGenKLPipeline(image_tokenizer=image_tokenizer.eval(), transformer=transformer, text_encoder=clip,
                                     tokenizer=clip_tokenizer)
    except ValueError as error:
        raise ConversionError(str(error)) from error
    base = release.repo if release else (original.hub_id or Path(source).name)
    card = render_kl_card(transformer.config, image_tokenizer.config, base, card_repo_id(output, push_to_hub), release, text_encoder)
    return write_model_folder(output, pipeline, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


def render_kl_card(cfg: MaskGenKLConfig, tok_cfg, base_model: str, repo_id: str, release: Release | None, text_encoder) -> str:
    sampling = "\n".join(f"| `{k}` | {v} |" for k, v in cfg.sampling_defaults.items())
    metadata = {"license": release.license if release else "apache-2.0", "library_name": "vistok", "pipeline_tag": "text-to-image",
                "tags": ["vistok", "maskgen", "text-to-image", "ta-titok", "diffusion-loss"],
                "base_model": base_model if "/" in base_model else None}
    return render_model_card(
        "maskgen-kl", metadata=metadata, model_name=Path(repo_id).name, base_model=base_model,
        description=release.description if release else "", hidden_size=str(cfg.hidden_size),
        num_hidden_layers=str(cfg.num_hidden_layers), num_attention_heads=str(cfg.num_attention_heads),
        num_tokens=str(cfg.num_tokens), token_dim=str(cfg.token_dim), scale_factor=str(cfg.scale_factor),
        diffusion_head=f"{cfg.diffusion_head_depth} x {cfg.diffusion_head_width}", text_hidden_size=str(cfg.text_hidden_size),
        sampling=sampling, repo_id=repo_id, metrics=metrics_table(release.metrics if release else []),
        text_encoder=f"`{text_encoder}` (CLIPTextModelWithProjection)" if text_encoder else
        "none stored: pass `prompt_embeds`, `pooled_prompt_embeds` and `decoder_prompt_embeds`",
        tokenizer_model_type=tok_cfg.model_type, license=metadata["license"],
    )


KL_CLI_OPTIONS = (
    ("--tokenizer", dict(required=True, metavar="SRC", help="the TA-TiTok KL tokenizer (ta-titok-bl32-kl for the releases): a "
                                                           "converted vistok folder, or an original release (converted on "
                                                           "the way with `ta-titok`)")),
    *CLI_OPTIONS[1:],
)
