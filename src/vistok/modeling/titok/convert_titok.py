"""Convert original TiTok tokenizer checkpoints (bytedance/1d-tokenizer) to vistok folders; the same
reader serves TiTok's variants (One-D-Piece) through :func:`convert_release`.

Every architecture hyper-parameter is read from the checkpoint's shapes; the original config
supplies what shapes cannot tell (``use_l2_norm``, ``commitment_cost``) and is cross-checked.
Head counts are width // 64: every released TiTok trunk (S 512/8, B 768/12, L 1024/16) uses 64-wide heads.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ...conversion import (ConversionError, Release, card_repo_id, choose_release, load_config_file, load_converted, load_state_dict,
                           read_original, rename_key, write_model_folder)
from ...hub.cards import metrics_table, render_model_card
from .configuration_titok import TiTokConfig
from .modeling_titok import TiTokModel

HEAD_DIM = 64
_TRUNKS = {"small": 512, "base": 768, "large": 1024}


def legacy_vq_model(enc, dec, n):
    """The original ``model.vq_model`` section of a two-stage (legacy) TiTok release."""
    return {"codebook_size": 4096, "token_size": 12, "use_l2_norm": True, "commitment_cost": 0.25,
            "vit_enc_model_size": enc, "vit_dec_model_size": dec, "num_latent_tokens": n, "finetune_decoder": True}


def _vq8k(enc, dec, n):
    return {"codebook_size": 8192, "token_size": 64, "use_l2_norm": False, "commitment_cost": 0.25,
            "vit_enc_model_size": enc, "vit_dec_model_size": dec, "num_latent_tokens": n, "finetune_decoder": False,
            "is_legacy": False}


def _vae(enc, dec, n):
    return {"quantize_mode": "vae", "token_size": 16, "vit_enc_model_size": enc, "vit_dec_model_size": dec,
            "num_latent_tokens": n, "finetune_decoder": False, "is_legacy": False}


def rfid(value, source):
    return [{"metric": "rFID (ImageNet-1k val, 256x256)", "value": value, "setting": "", "source": source}]


_TITOK_README = "bytedance/1d-tokenizer README_TiTok.md"

RELEASES = {
    "titok-l32": Release("yucornetto/tokenizer_titok_l32_imagenet", "TiTok-L-32: large encoder/decoder, 32 tokens, two-stage (legacy) decoder.", settings=legacy_vq_model("large", "large", 32), metrics=rfid(2.21, _TITOK_README)),
    "titok-b64": Release("yucornetto/tokenizer_titok_b64_imagenet", "TiTok-B-64: base encoder/decoder, 64 tokens, two-stage (legacy) decoder.", settings=legacy_vq_model("base", "base", 64), metrics=rfid(1.70, _TITOK_README)),
    "titok-s128": Release("yucornetto/tokenizer_titok_s128_imagenet", "TiTok-S-128: small encoder/decoder, 128 tokens, two-stage (legacy) decoder.", settings=legacy_vq_model("small", "small", 128), metrics=rfid(1.71, _TITOK_README)),
    "titok-bl64-vq8k": Release("yucornetto/tokenizer_titok_bl64_vq8k_imagenet", "TiTok-BL-64 VQ: base encoder, large decoder, 64 tokens, 8192-entry codebook, single-stage decoder.", settings=_vq8k("base", "large", 64), metrics=rfid(2.06, _TITOK_README)),
    "titok-bl128-vq8k": Release("yucornetto/tokenizer_titok_bl128_vq8k_imagenet", "TiTok-BL-128 VQ: base encoder, large decoder, 128 tokens, 8192-entry codebook, single-stage decoder.", settings=_vq8k("base", "large", 128), metrics=rfid(1.49, _TITOK_README)),
    "titok-sl256-vq8k": Release("yucornetto/tokenizer_titok_sl256_vq8k_imagenet", "TiTok-SL-256 VQ: small encoder, large decoder, 256 tokens, 8192-entry codebook, single-stage decoder.", settings=_vq8k("small", "large", 256), metrics=rfid(1.03, _TITOK_README)),
    "titok-ll32-vae-c16": Release("yucornetto/tokenizer_titok_ll32_vae_c16_imagenet", "TiTok-LL-32 VAE: continuous 16-channel tokens, large encoder/decoder, 32 tokens.", settings=_vae("large", "large", 32), metrics=rfid(1.61, _TITOK_README)),
    "titok-bl64-vae-c16": Release("yucornetto/tokenizer_titok_bl64_vae_c16_imagenet", "TiTok-BL-64 VAE: continuous 16-channel tokens, base encoder, large decoder, 64 tokens.", settings=_vae("base", "large", 64), metrics=rfid(1.25, _TITOK_README)),
    "titok-bl128-vae-c16": Release("yucornetto/tokenizer_titok_bl128_vae_c16_imagenet", "TiTok-BL-128 VAE: continuous 16-channel tokens, base encoder, large decoder, 128 tokens.", settings=_vae("base", "large", 128), metrics=rfid(0.84, _TITOK_README)),
}

_TATITOK_README = "bytedance/1d-tokenizer README_MaskGen.md"


def _ta(vq_model):
    return {**vq_model, "text_embed_dim": 768, "text_context_length": 77}


def rfid_is(rfid_value, is_value):
    return [{"metric": "rFID (ImageNet-1k val, 256x256)", "value": rfid_value, "setting": "", "source": _TATITOK_README},
            {"metric": "IS (ImageNet-1k val reconstructions)", "value": is_value, "setting": "", "source": _TATITOK_README}]


# TA-TiTok: text-aware decoders reading OpenCLIP ViT-L-14-336 (openai) text features (TiTokConfig.text_conditioned)
TA_TITOK_RELEASES = {
    "ta-titok-bl32-vq": Release("turkeyju/tokenizer_tatitok_bl32_vq", "TA-TiTok-BL-32 VQ: base encoder, large text-aware decoder, 32 tokens, 8192-entry codebook.", settings=_ta(_vq8k("base", "large", 32)), metrics=rfid_is(3.95, 219.6)),
    "ta-titok-bl64-vq": Release("turkeyju/tokenizer_tatitok_bl64_vq", "TA-TiTok-BL-64 VQ: base encoder, large text-aware decoder, 64 tokens, 8192-entry codebook.", settings=_ta(_vq8k("base", "large", 64)), metrics=rfid_is(2.43, 218.8)),
    "ta-titok-bl128-vq": Release("turkeyju/tokenizer_tatitok_bl128_vq", "TA-TiTok-BL-128 VQ: base encoder, large text-aware decoder, 128 tokens, 8192-entry codebook (the MaskGen-VQ tokenizer).", settings=_ta(_vq8k("base", "large", 128)), metrics=rfid_is(1.53, 222.8)),
    "ta-titok-bl32-kl": Release("turkeyju/tokenizer_tatitok_bl32_vae", "TA-TiTok-BL-32 KL: continuous 16-channel tokens, base encoder, large text-aware decoder, 32 tokens (the MaskGen-KL tokenizer).", settings=_ta(_vae("base", "large", 32)), metrics=rfid_is(1.53, 222.0)),
    "ta-titok-bl64-kl": Release("turkeyju/tokenizer_tatitok_bl64_vae", "TA-TiTok-BL-64 KL: continuous 16-channel tokens, base encoder, large text-aware decoder, 64 tokens.", settings=_ta(_vae("base", "large", 64)), metrics=rfid_is(1.47, 220.7)),
    "ta-titok-sl128-kl": Release("turkeyju/tokenizer_tatitok_sl128_vae", "TA-TiTok-SL-128 KL: continuous 16-channel tokens, small encoder, large text-aware decoder, 128 tokens.", settings=_ta(_vae("small", "large", 128)), metrics=rfid_is(0.90, 227.7)),
}

_BLOCK_RENAMES = [
    (r"\.transformer\.(\d+)\.ln_1\.", r".layers.\1.layer_norm1."),
    (r"\.transformer\.(\d+)\.ln_2\.", r".layers.\1.layer_norm2."),
    (r"\.transformer\.(\d+)\.attn\.out_proj\.", r".layers.\1.self_attn.out_proj."),
    (r"\.transformer\.(\d+)\.mlp\.c_fc\.", r".layers.\1.mlp.fc1."),
    (r"\.transformer\.(\d+)\.mlp\.c_proj\.", r".layers.\1.mlp.fc2."),
]
_RENAMES = [
    (r"^latent_tokens$", "encoder.latent_tokens"),
    (r"^(encoder|decoder)\.positional_embedding$", r"\1.position_embedding"),
    (r"^(encoder|decoder)\.latent_token_positional_embedding$", r"\1.latent_position_embedding"),
    (r"^(encoder|decoder)\.ln_pre\.", r"\1.pre_layernorm."),
    (r"^(encoder|decoder)\.ln_post\.", r"\1.post_layernorm."),
    (r"^encoder\.conv_out\.", "encoder.proj_out."),
    (r"^decoder\.decoder_embed\.", "decoder.embed_in."),
    (r"^quantize\.", "quantizer."),
    (r"^pixel_quantize\.", "pixel_quantizer."),
    (r"^decoder\.text_guidance_proj\.", "decoder.text_proj."),  # TA-TiTok
    (r"^decoder\.text_guidance_positional_embedding$", "decoder.text_position_embedding"),
]
_KEPT = re.compile(r"^(encoder\.(patch_embed\.|class_embedding$)|decoder\.(class_embedding|mask_token)$|decoder\.conv_out\.|pixel_decoder\.)")


def convert_state_dict(original: dict[str, torch.Tensor], is_legacy: bool) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Original TiTok keys -> vistok keys; returns the new dict and the original keys left unused."""
    out, unused = {}, set()
    for key, value in original.items():
        match = re.match(r"^(encoder|decoder)\.transformer\.(\d+)\.attn\.in_proj_(weight|bias)$", key)
        if match:  # nn.MultiheadAttention's fused projection -> q/k/v
            prefix = f"{match[1]}.layers.{match[2]}.self_attn"
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{prefix}.{name}.{match[3]}"] = part.clone()
            continue
        new = rename_key(key, _BLOCK_RENAMES + _RENAMES)
        ffn = re.match(r"^decoder\.ffn\.(\d+)\.(weight|bias)$", key)
        if ffn:  # 1x1 convs over the token grid are linear layers over tokens
            index = int(ffn[1])
            if is_legacy and index in (0, 2):
                new = f"decoder.head.{index}.{ffn[2]}"
            elif not is_legacy and index == 0:
                new = f"decoder.head.{ffn[2]}"
            else:
                unused.add(key)
                continue
            value = value.flatten(1) if value.ndim == 4 else value
        elif key.startswith("encoder.conv_out.") and value.ndim == 4:
            value = value.flatten(1)
        if new == key and not _KEPT.match(key):
            unused.add(key)
            continue
        out[new] = value
    return out, unused


def _count(state, pattern) -> int:
    indices = {int(m[1]) for k in state if (m := re.match(pattern, k))}
    if indices != set(range(len(indices))):
        raise ConversionError(f"non-contiguous block indices for {pattern}: {sorted(indices)}")
    return len(indices)


def _need(state, key) -> torch.Tensor:
    if key not in state:
        raise ConversionError(f"missing key {key!r} in the original checkpoint")
    return state[key]


def infer_config(state: dict[str, torch.Tensor], vq_model: dict, crop_size: int | None, legacy_only: bool = False) -> dict:
    """vistok config kwargs from the original state dict (shapes) and its config (what shapes cannot say).
    ``legacy_only``: the variant exists only with the two-stage decoder (One-D-Piece)."""
    patch_w = _need(state, "encoder.patch_embed.weight")
    enc_width, patch = patch_w.shape[0], patch_w.shape[-1]
    grid_sq = _need(state, "encoder.positional_embedding").shape[0] - 1
    grid = round(grid_sq**0.5)
    if grid * grid != grid_sq:
        raise ConversionError(f"encoder.positional_embedding has {grid_sq + 1} rows: expected grid*grid + 1")
    image_size = grid * patch
    if crop_size is not None and int(crop_size) != image_size:
        raise ConversionError(f"config crop_size {crop_size} disagrees with the checkpoint's image size {image_size}")
    num_tokens = _need(state, "latent_tokens").shape[0]
    if "num_latent_tokens" in vq_model and int(vq_model["num_latent_tokens"]) != num_tokens:
        raise ConversionError(f"config num_latent_tokens {vq_model['num_latent_tokens']} disagrees with latent_tokens ({num_tokens})")
    dec_width = _need(state, "decoder.decoder_embed.weight").shape[0]
    dec_grid = round((_need(state, "decoder.positional_embedding").shape[0] - 1) ** 0.5)
    is_legacy = "decoder.ffn.2.weight" in state
    if not legacy_only and "is_legacy" in vq_model and bool(vq_model["is_legacy"]) != is_legacy:
        raise ConversionError(f"config is_legacy={vq_model['is_legacy']} but the checkpoint's decoder is {'legacy two-stage' if is_legacy else 'single-stage'}")
    if legacy_only and not is_legacy:
        raise ConversionError("One-D-Piece checkpoints have the legacy two-stage decoder (decoder.ffn.2.*); this one does not")
    quantize_mode = "vq" if "quantize.embedding.weight" in state else "vae"
    if vq_model.get("quantize_mode", "vq") != quantize_mode:
        raise ConversionError(f"config quantize_mode={vq_model.get('quantize_mode', 'vq')!r} but the checkpoint is {quantize_mode!r}")
    out_dim = _need(state, "encoder.conv_out.weight").shape[0]
    kwargs = dict(
        image_size=image_size, patch_size=patch, decoder_patch_size=image_size // dec_grid, num_tokens=num_tokens,
        quantize_mode=quantize_mode, is_legacy=is_legacy,
        encoder_hidden_size=enc_width, encoder_num_layers=_count(state, r"^encoder\.transformer\.(\d+)\.ln_1\.weight$"),
        encoder_num_heads=enc_width // HEAD_DIM,
        decoder_hidden_size=dec_width, decoder_num_layers=_count(state, r"^decoder\.transformer\.(\d+)\.ln_1\.weight$"),
        decoder_num_heads=dec_width // HEAD_DIM,
        commitment_cost=float(vq_model.get("commitment_cost", 0.25)),
    )
    if quantize_mode == "vq":
        codebook = state["quantize.embedding.weight"]
        if "use_l2_norm" not in vq_model:
            raise ConversionError("the original config does not say use_l2_norm; pass a --preset or --config")
        kwargs.update(codebook_size=codebook.shape[0], token_dim=codebook.shape[1], use_l2_norm=bool(vq_model["use_l2_norm"]))
        if out_dim != codebook.shape[1]:
            raise ConversionError(f"encoder.conv_out emits {out_dim} channels but the codebook has {codebook.shape[1]}")
    else:
        kwargs.update(codebook_size=None, token_dim=out_dim // 2, use_l2_norm=False)
    text_proj = state.get("decoder.text_guidance_proj.weight")
    if text_proj is not None:  # TA-TiTok: the decoder reads CLIP text features
        text_length = _need(state, "decoder.text_guidance_positional_embedding").shape[0]
        for field, value in (("text_embed_dim", text_proj.shape[1]), ("text_context_length", text_length)):
            if field in vq_model and int(vq_model[field]) != value:
                raise ConversionError(f"config {field}={vq_model[field]} disagrees with the checkpoint's text projection ({value})")
        kwargs.update(text_conditioned=True, text_hidden_size=text_proj.shape[1], text_max_length=text_length)
    if not is_legacy:
        head = _need(state, "decoder.ffn.0.weight").shape[0]
        kwargs["decoder_patch_size"] = round((head // 3) ** 0.5)
    else:
        pixel_codebook = _need(state, "pixel_quantize.embedding.weight")
        levels = _count(state, r"^pixel_decoder\.up\.(\d+)\.block\.0\.conv1\.weight$")
        channels = [state[f"pixel_decoder.up.{i}.block.0.conv1.weight"].shape[0] for i in range(levels)]
        kwargs.update(
            pixel_codebook_size=pixel_codebook.shape[0], pixel_embed_dim=pixel_codebook.shape[1],
            pixel_hidden_channels=channels[0], pixel_channel_mult=[c // channels[0] for c in channels],
            pixel_num_res_blocks=_count(state, r"^pixel_decoder\.up\.0\.block\.(\d+)\.conv1\.weight$"),
        )
    for side in ("enc", "dec"):
        size = vq_model.get(f"vit_{side}_model_size")
        width = enc_width if side == "enc" else dec_width
        if size in _TRUNKS and _TRUNKS[size] != width and crop_size is None:
            raise ConversionError(f"config says vit_{side}_model_size={size!r} (width {_TRUNKS[size]}) but the checkpoint is {width} wide")
    return kwargs


def _merge_pixel_decoder(state: dict, path: str) -> None:
    """Stage-1 checkpoints lack the MaskGIT-VQGAN decoder; take it from maskgit-vqgan-imagenet-f16-256.bin."""
    vqgan = load_state_dict(path)
    for key, value in vqgan.items():
        if key.startswith("decoder.") or key.startswith("quantize."):
            state[f"pixel_{key}"] = value


def read_release(source: str, config_path: str | None, release: Release | None) -> tuple[dict, dict, int | None, str | None]:
    """(state_dict, vq_model config, crop_size, hub id) from a release folder, a checkpoint file or a hub id."""
    original = read_original(source)
    if config_path is None and original.folder is not None:
        for name in ("config.json", "config.yaml"):
            if (original.folder / name).is_file():
                config_path = str(original.folder / name)
                break
    if config_path is not None:
        config = load_config_file(config_path)
        model = config.get("model", {})
        vq_model = model.get("vq_model") if isinstance(model, dict) else None
        if not isinstance(vq_model, dict):
            raise ConversionError(f"{config_path} has no model.vq_model section (the original TiTok config layout)")
        crop = config.get("dataset", {}).get("preprocessing", {}).get("crop_size")
    elif release is not None:
        vq_model, crop = dict(release.settings), None
    else:
        raise ConversionError(f"no config.json beside {original.path}: pass --config ORIGINAL.yaml or --preset NAME")
    return original, dict(vq_model), crop, original.hub_id


def convert_release(name: str, config_class, model_class, releases: dict, source: str, output: str, *,
                    config: str | None = None, preset: str | None = None, pixel_decoder: str | None = None,
                    overwrite: bool = False, push_to_hub: str | None = None, legacy_only: bool = False,
                    require_text: bool = False) -> Path:
    """Convert one original checkpoint of TiTok or a variant of it (``config_class``/``model_class``, its
    ``releases`` and card template ``name``; ``legacy_only``: its releases all have the two-stage decoder);
    the output folder appears only if everything succeeded."""
    chosen = choose_release(preset, releases, name)
    state, vq_model, crop, hub_id = read_release(source, config, chosen)
    if chosen is None:
        chosen = next((p for p in releases.values() if hub_id and p.hub_id.lower() == hub_id.lower()), None)
    if pixel_decoder is not None:
        _merge_pixel_decoder(state, pixel_decoder)
    elif "decoder.ffn.2.weight" in state and "pixel_quantize.embedding.weight" not in state:
        raise ConversionError("legacy checkpoint without pixel_decoder.* / pixel_quantize.* (a stage-1 checkpoint): "
                              "pass --pixel-decoder maskgit-vqgan-imagenet-f16-256.bin")
    model_config = config_class(**infer_config(state, vq_model, crop, legacy_only))
    if require_text and not model_config.text_conditioned:
        raise ConversionError("not a TA-TiTok checkpoint: no decoder.text_guidance_proj.* (convert it with `vistok convert titok`)")
    converted, unused = convert_state_dict(state, model_config.is_legacy)
    model = load_converted(model_class, model_config, converted, unused, state)
    base_model = hub_id or (chosen.hub_id if chosen else None)
    card = render_card(name, model_config, chosen, base_model, Path(source).name, card_repo_id(output, push_to_hub))
    return write_model_folder(output, model, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


def convert(source: str, output: str, **options) -> Path:
    """``vistok convert titok``: an original TiTok tokenizer -> a vistok tokenizer folder."""
    return convert_release("titok", TiTokConfig, TiTokModel, RELEASES, source, output, **options)


def convert_ta_titok(source: str, output: str, **options) -> Path:
    """``vistok convert ta-titok``: an original TA-TiTok tokenizer (text-aware decoder) -> a vistok TiTok folder
    with ``text_conditioned=True``."""
    return convert_release("ta-titok", TiTokConfig, TiTokModel, TA_TITOK_RELEASES, source, output, require_text=True, **options)


# the flags of ``vistok convert titok`` (and of TiTok's variants) beside --original/--output/--preset
CLI_OPTIONS = (
    ("--config", dict(metavar="YAML", help="the original config (YAML/JSON) for a bare checkpoint file")),
    ("--pixel-decoder", dict(metavar="BIN", help="maskgit-vqgan-imagenet-f16-256.bin, for stage-1 legacy checkpoints "
                                                  "without pixel_* weights")),
)


def render_card(name: str, cfg: TiTokConfig, preset: Release | None, base_model: str | None, source_name: str, repo_id: str) -> str:
    def trunk(width, layers, heads):
        return f"ViT {width} wide, {layers} layers, {heads} heads"

    quantizer = (
        f"VQ, {cfg.codebook_size} x {cfg.token_dim}, {'cosine (L2-normalised)' if cfg.use_l2_norm else 'Euclidean'} lookup"
        if cfg.quantize_mode == "vq" else f"continuous diagonal Gaussian (KL), {cfg.token_dim} channels per token"
    )
    decoder_type = (
        f"two-stage: logits over a {cfg.pixel_codebook_size}-entry MaskGIT-VQGAN codebook, CNN pixel decoder"
        if cfg.is_legacy else "single-stage: pixels predicted directly"
    )
    text = ", text_features=text_features" if cfg.text_conditioned else ""
    if cfg.quantize_mode == "vq":
        decode_line = f"reconstruction = tokenizer.decode(encoded.token_ids{text})"
    else:
        decode_line = f"reconstruction = tokenizer.decode_latents(encoded.latents{text})"
    extra = {}
    if cfg.text_conditioned:
        extra["text_features"] = f"{cfg.text_max_length} x {cfg.text_hidden_size} (CLIP text model, last hidden state)"
    conversion = f"Converted from `{base_model or source_name}` with `vistok convert {name}`."
    metadata = {
        "license": preset.license if preset else "apache-2.0",
        "library_name": "vistok",
        "tags": ["vistok", "image-tokenization", name, "1d-tokenizer"],
        "base_model": base_model,
        "datasets": (["ILSVRC/imagenet-1k"] if not cfg.text_conditioned else None) if preset else None,
    }
    return render_model_card(
        name, metadata=metadata, model_name=Path(repo_id).name, base_model=base_model or source_name,
        description=preset.description if preset else "",
        image_size=str(cfg.image_size), pixel_low=str(cfg.pixel_range[0]), pixel_high=str(cfg.pixel_range[1]),
        num_tokens=str(cfg.num_tokens), quantizer=quantizer,
        encoder=trunk(cfg.encoder_hidden_size, cfg.encoder_num_layers, cfg.encoder_num_heads),
        decoder=trunk(cfg.decoder_hidden_size, cfg.decoder_num_layers, cfg.decoder_num_heads),
        decoder_type=decoder_type, repo_id=repo_id, decode_line=decode_line,
        metrics=metrics_table(preset.metrics if preset else []), conversion=conversion, license=metadata["license"],
        **extra,
    )
