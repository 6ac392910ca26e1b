"""Convert the FoundationVision/VAR release (``vae_ch160v4096z32.pth``, ``var_d{16,20,24,30,36}.pth``:
bare pickled state dicts) to vistok: ``var-vqvae`` -> a ``VARVQVAE`` tokenizer folder, ``var`` -> a
complete ``NextScalePipeline`` folder (the tokenizer, the transformer, the released sampling settings).

Architecture hyper-parameters come from the checkpoints' shapes: widths, depth, codebook, the
scales (``patch_nums``, from the generator's ``lvl_1L`` buffer), shared AdaLN and cosine attention
(the presence of ``shared_ada_lin`` / ``scale_mul_1H11``). What shapes cannot say follows
``build_vae_var``: heads = depth (for dot-product-attention checkpoints, which carry no per-head
parameter), mlp ratio from ``fc1``, and the VQVAE's scales, which only the generator records (the
same VQVAE file serves 256 px and 512 px): ``--patch-nums`` or a preset gives them.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ...conversion import (ConversionError, Release, card_repo_id, choose_release, count_numbered, load_converted, load_model_folder,
                           numbered, read_original, rename_key, write_model_folder)
from ...hub.cards import metrics_table, render_model_card
from ..layers.conv_autoencoder import taming_conv_autoencoder_key
from ..quantizers.multiscale import DEFAULT_PATCH_NUMS, convert_var_quantizer_state_dict
from .configuration_var import DEFAULT_SAMPLING, VARConfig, VARVQVAEConfig
from .modeling_var import VARTransformer, VARVQVAE

HUB_REPO = "FoundationVision/var"
PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
_README = "FoundationVision/VAR README (model zoo)"


def _fid(value, setting="ImageNet 256x256, cfg 1.5, top-k 900, top-p 0.96"):
    return [{"metric": "FID", "value": value, "setting": setting, "source": _README}]


_MIT = {"license": "mit"}
VAE_PRESETS = {
    "vae-ch160v4096z32": Release(HUB_REPO, "VAR's multi-scale VQVAE, 10 scales at 256 px (680 tokens).", "vae_ch160v4096z32.pth",
                                 **_MIT, settings={"patch_nums": DEFAULT_PATCH_NUMS}),
    "vae-ch160v4096z32-512": Release(HUB_REPO, "VAR's multi-scale VQVAE with the 512 px scales of VAR-d36 (2240 tokens).",
                                     "vae_ch160v4096z32.pth", **_MIT, settings={"patch_nums": PATCH_NUMS_512}),
}
# the README's FID-evaluation settings are the config's DEFAULT_SAMPLING (the demo uses cfg 4, top-p 0.95)
VAR_PRESETS = {
    "var-d16": Release(HUB_REPO, "VAR-d16 (310M parameters), ImageNet 256x256.", "var_d16.pth", **_MIT, sampling=DEFAULT_SAMPLING, metrics=_fid(3.55)),
    "var-d20": Release(HUB_REPO, "VAR-d20 (600M parameters), ImageNet 256x256.", "var_d20.pth", **_MIT, sampling=DEFAULT_SAMPLING, metrics=_fid(2.95)),
    "var-d24": Release(HUB_REPO, "VAR-d24 (1.0B parameters), ImageNet 256x256.", "var_d24.pth", **_MIT, sampling=DEFAULT_SAMPLING, metrics=_fid(2.33)),
    "var-d30": Release(HUB_REPO, "VAR-d30 (2.0B parameters), ImageNet 256x256.", "var_d30.pth", **_MIT, sampling=DEFAULT_SAMPLING, metrics=_fid(1.97)),
    "var-d36": Release(HUB_REPO, "VAR-d36 with shared AdaLN (2.3B parameters), ImageNet 512x512.", "var_d36.pth", **_MIT,
                       settings={"patch_nums": PATCH_NUMS_512}, sampling=DEFAULT_SAMPLING, metrics=_fid(2.63, "ImageNet 512x512")),
}


# -- VQVAE ----------------------------------------------------------------------------------------
def convert_vae_state_dict(original: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """VAR ``VQVAE`` keys -> ``VARVQVAE`` keys; returns (converted, unused original keys)."""
    levels = 1 + max((int(m[1]) for k in original if (m := re.match(r"^encoder\.down\.(\d+)\.", k))), default=-1)
    out, unused = {}, set()
    for key, value in original.items():
        part, _, rest = key.partition(".")
        if part in ("encoder", "decoder"):
            out[f"{part}.{taming_conv_autoencoder_key(rest, levels)}"] = value
        elif part in ("quant_conv", "post_quant_conv"):
            out[key] = value
        elif part != "quantize":
            unused.add(key)
    out.update({f"quantizer.{k}": v for k, v in convert_var_quantizer_state_dict(original, prefix="quantize.").items()})
    return out, unused


def _need(state: dict, key: str) -> torch.Tensor:
    if key not in state:
        raise ConversionError(f"missing key {key!r}: not a VAR VQVAE / VAR checkpoint")
    return state[key]


def infer_vae_config(original: dict[str, torch.Tensor], patch_nums) -> dict:
    """VARVQVAEConfig kwargs from the original VQVAE state dict's shapes."""
    embedding = _need(original, "quantize.embedding.weight")
    channels = _need(original, "encoder.conv_in.weight").shape[0]
    levels = numbered(original, r"^encoder\.down\.(\d+)\.")
    mult = []
    for level in levels:
        width = _need(original, f"encoder.down.{level}.block.0.conv1.weight").shape[0]
        if width % channels:
            raise ConversionError(f"encoder.down.{level} has {width} channels, not a multiple of conv_in's {channels}")
        mult.append(width // channels)
    blocks = count_numbered(original, r"^encoder\.down\.0\.block\.(\d+)\.")
    phis = {m[1] for k in original if (m := re.match(r"^quantize\.quant_resi\.qresi_ls\.(\d+)\.", k))}
    if phis:
        share = len(phis)
    elif any(k.startswith("quantize.quant_resi.qresi.") for k in original):
        share = 1
    else:
        share = 0
    counts = {m[1] for k in original if (m := re.match(r"^quantize\.quant_resi\.(\d+)\.", k))}
    return dict(
        codebook_size=embedding.shape[0], z_channels=embedding.shape[1], channels=channels, channel_mult=mult,
        num_res_blocks=blocks, quant_conv_kernel_size=_need(original, "quant_conv.weight").shape[-1],
        num_residual_convs=share or len(counts) or None,  # VAR's share_quant_resi / default_qresi_counts
        residual_ratio=0.5 if (phis or counts or share == 1) else 0.0, patch_nums=list(patch_nums),
    )


def build_vae(original: dict[str, torch.Tensor], patch_nums) -> VARVQVAE:
    config = VARVQVAEConfig(**infer_vae_config(original, patch_nums))
    converted, unused = convert_vae_state_dict(original)
    return load_converted(VARVQVAE, config, converted, unused, original)


def _parse_patch_nums(patch_nums) -> tuple[int, ...] | None:
    if patch_nums is None:
        return None
    if isinstance(patch_nums, str):
        try:
            patch_nums = [int(p) for p in re.split(r"[,_\s]+", patch_nums.strip()) if p]
        except ValueError:
            raise ConversionError(f"--patch-nums must be integers like 1,2,3,4,5,6,8,10,13,16, got {patch_nums!r}") from None
    nums = tuple(patch_nums)
    if not nums or any(not isinstance(p, int) or p < 1 for p in nums):
        raise ConversionError(f"patch_nums must be positive integers, coarse to fine, got {patch_nums!r}")
    return nums


def convert_vae(source: str, output: str, *, preset: str | None = None, patch_nums=None, overwrite: bool = False,
                push_to_hub: str | None = None) -> Path:
    """``vistok convert var-vqvae``: the VQVAE alone, as a tokenizer folder."""
    chosen = choose_release(preset, VAE_PRESETS, "var-vqvae")
    nums = _parse_patch_nums(patch_nums) or (chosen.settings["patch_nums"] if chosen else DEFAULT_PATCH_NUMS)
    original = read_original(source, chosen, VAE_PRESETS["vae-ch160v4096z32"].filename, several_per_repo=True)
    model = build_vae(original, nums)
    base_model = original.hub_id or (chosen.repo if chosen else None)
    card = render_vae_card(model.config, chosen, base_model, Path(source).name, card_repo_id(output, push_to_hub))
    return write_model_folder(output, model, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


# -- transformer ------------------------------------------------------------------------------------
_VAR_RENAMES = [
    (r"^pos_start$", "start_position_embedding"), (r"^pos_1LC$", "position_embedding"),
    (r"^class_emb\.", "class_embedding."), (r"^lvl_embed\.", "level_embedding."),
    (r"^shared_ada_lin\.1\.", "shared_adaln."), (r"^head_nm\.ada_lin\.1\.", "head_adaln."), (r"^head\.", "lm_head."),
    (r"^(blocks\.\d+)\.attn\.scale_mul_1H11$", r"\1.attention.logit_scale"),
    (r"^(blocks\.\d+)\.attn\.mat_qkv\.", r"\1.attention.qkv."), (r"^(blocks\.\d+)\.attn\.proj\.", r"\1.attention.out_proj."),
    (r"^(blocks\.\d+)\.attn\.(q_bias|v_bias)$", r"\1.attention.\2"),
    (r"^(blocks\.\d+)\.ffn\.", r"\1.mlp."), (r"^(blocks\.\d+)\.ada_lin\.1\.", r"\1.adaln."),
    (r"^(blocks\.\d+)\.ada_gss$", r"\1.adaln_table"),
]
_DERIVED_BUFFERS = ("lvl_1L", "attn_bias_for_masking")


def patch_nums_from_levels(lvl_1L: torch.Tensor) -> tuple[int, ...]:
    """The scales a VAR checkpoint was trained with, from its ``lvl_1L`` buffer (the scale index of each token)."""
    levels = lvl_1L.reshape(-1).long()
    counts = torch.bincount(levels).tolist()
    nums = tuple(round(c ** 0.5) for c in counts)
    expected = torch.cat([torch.full((n * n,), k) for k, n in enumerate(nums)]) if nums else levels
    if any(n * n != c for n, c in zip(nums, counts)) or not torch.equal(levels, expected):
        raise ConversionError("lvl_1L does not describe square scales in order (expected 0 x pn0^2, 1 x pn1^2, ...)")
    return nums


def convert_var_state_dict(original: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """VAR keys -> ``VARTransformer`` keys; returns (converted, unused original keys). The derived
    buffers are dropped; ``zero_k_bias`` must be zero (VAR never trains it)."""
    out, unused = {}, set()
    for key, value in original.items():
        if key in _DERIVED_BUFFERS:
            continue
        if key.endswith(".attn.zero_k_bias"):
            if value.abs().max() != 0:
                raise ConversionError(f"{key} is not zero: VAR's key bias is a zero buffer")
            continue
        new = rename_key(key, _VAR_RENAMES)
        if new == key and not key.startswith(("word_embed.",)):
            unused.add(key)
            continue
        out[new] = value
    return out, unused


def infer_var_config(original: dict[str, torch.Tensor]) -> dict:
    """VARConfig kwargs from the original VAR state dict's shapes (heads = depth as ``build_vae_var``
    when the checkpoint has no per-head scale)."""
    width = _need(original, "pos_start").shape[-1]
    depth = count_numbered(original, r"^blocks\.(\d+)\.")
    if depth == 0:
        raise ConversionError("no blocks.N.* keys: not a VAR transformer checkpoint")
    scale = original.get("blocks.0.attn.scale_mul_1H11")
    heads = scale.shape[1] if scale is not None else depth
    if width % heads:
        raise ConversionError(f"width {width} is not divisible by {heads} heads (heads = depth for checkpoints without scale_mul_1H11)")
    return dict(
        codebook_size=_need(original, "head.weight").shape[0], z_channels=_need(original, "word_embed.weight").shape[1],
        patch_nums=list(patch_nums_from_levels(_need(original, "lvl_1L"))), num_classes=_need(original, "class_emb.weight").shape[0] - 1,
        depth=depth, hidden_size=width, num_attention_heads=heads,
        mlp_ratio=_need(original, "blocks.0.ffn.fc1.weight").shape[0] / width,
        shared_adaln="shared_ada_lin.1.weight" in original, attn_l2_norm=scale is not None,
        drop_path_rate=0.1 * depth / 24,  # build_vae_var's training setting
    )


def build_transformer(original: dict[str, torch.Tensor], sampling: dict | None = None) -> VARTransformer:
    config = VARConfig(**infer_var_config(original), sampling_defaults=sampling)
    converted, unused = convert_var_state_dict(original)
    return load_converted(VARTransformer, config, converted, unused, original)


def _load_tokenizer(tokenizer: str, patch_nums) -> VARVQVAE:
    """A converted vistok VARVQVAE folder, or the original VQVAE release converted with the generator's scales."""
    model = load_model_folder(tokenizer, VARVQVAE, "expected a VAR VQVAE (vistok_var_vqvae)")
    if model is not None:
        return model
    return build_vae(read_original(tokenizer, VAE_PRESETS["vae-ch160v4096z32"], several_per_repo=True), patch_nums)


def convert(source: str, output: str, *, tokenizer: str, preset: str | None = None, overwrite: bool = False,
            push_to_hub: str | None = None) -> Path:
    """``vistok convert var``: a generator plus its VQVAE, as a NextScalePipeline folder."""
    from ...pipelines import NextScalePipeline

    chosen = choose_release(preset, VAR_PRESETS, "var")
    original = read_original(source, chosen, several_per_repo=True)
    transformer = build_transformer(original, chosen.sampling if chosen else None)
    tokenizer_model = _load_tokenizer(tokenizer, transformer.config.patch_nums)
    try:
        pipeline = NextScalePipeline(image_tokenizer=tokenizer_model, transformer=transformer)
    except ValueError as err:
        raise ConversionError(f"the tokenizer does not fit the generator: {err}") from err
    base_model = original.hub_id or (chosen.repo if chosen else None)
    card = render_var_card(transformer.config, tokenizer_model.config, chosen, base_model, Path(source).name,
                           card_repo_id(output, push_to_hub))
    return write_model_folder(output, pipeline, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


# -- cards ------------------------------------------------------------------------------------------
def render_vae_card(cfg: VARVQVAEConfig, preset: Release | None, base_model: str | None, source_name: str, repo_id: str) -> str:
    metadata = {"license": preset.license if preset else "mit", "library_name": "vistok",
                "tags": ["vistok", "image-tokenization", "var", "multi-scale"], "base_model": base_model,
                "datasets": ["ILSVRC/imagenet-1k"] if preset else None}
    return render_model_card(
        "var-vqvae", metadata=metadata, model_name=Path(repo_id).name, base_model=base_model or source_name,
        description=preset.description if preset else "", image_size=str(cfg.image_size), num_tokens=str(cfg.num_tokens),
        num_scales=str(cfg.num_scales), patch_nums=", ".join(map(str, cfg.patch_nums)), codebook_size=str(cfg.codebook_size),
        z_channels=str(cfg.z_channels), channels=str(cfg.channels), channel_mult=", ".join(map(str, cfg.channel_mult)),
        residual_convs=str(cfg.num_residual_convs or f"{cfg.num_scales} (one per scale)"), repo_id=repo_id, license=metadata["license"],
    )


def render_var_card(cfg: VARConfig, tok_cfg: VARVQVAEConfig, preset: Release | None, base_model: str | None,
                    source_name: str, repo_id: str) -> str:
    sampling = "\n".join(f"| `{k}` | {v} |" for k, v in cfg.sampling_defaults.items())
    metadata = {"license": preset.license if preset else "mit", "library_name": "vistok",
                "pipeline_tag": "unconditional-image-generation",
                "tags": ["vistok", "var", "next-scale-prediction", "class-conditional", "image-generation"],
                "base_model": base_model, "datasets": ["ILSVRC/imagenet-1k"] if preset else None}
    return render_model_card(
        "var", metadata=metadata, model_name=Path(repo_id).name, base_model=base_model or source_name,
        description=preset.description if preset else "", depth=str(cfg.depth), hidden_size=str(cfg.hidden_size),
        num_heads=str(cfg.num_attention_heads), adaln="shared across blocks (plus a per-block table)" if cfg.shared_adaln else "per block",
        attention="cosine, learned per-head scale clamped at 100" if cfg.attn_l2_norm else "dot product, scale 0.25 / sqrt(head_dim)",
        image_size=str(tok_cfg.image_size), num_tokens=str(cfg.num_tokens), num_scales=str(cfg.num_scales),
        codebook_size=str(cfg.codebook_size), num_classes=str(cfg.num_classes), sampling=sampling, repo_id=repo_id,
        metrics=metrics_table(preset.metrics if preset else []), license=metadata["license"],
    )


VQVAE_CLI_OPTIONS = (
    ("--patch-nums", dict(metavar="PN", help="the token-map side of each scale, coarse to fine, e.g. 1,2,3,4,5,6,8,10,13,16 "
                          "(256 px, the default) or 1,2,3,4,6,9,13,18,24,32 (512 px); a preset sets it")),
)
CLI_OPTIONS = (
    ("--tokenizer", dict(required=True, metavar="SRC", help="the VQVAE: a converted vistok var-vqvae folder, or the original "
                         "vae_ch160v4096z32.pth (converted on the way with the generator's scales)")),
)
