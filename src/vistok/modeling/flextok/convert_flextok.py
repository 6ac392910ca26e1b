"""Convert FlexTok checkpoints (apple/ml-flextok; hub ``EPFL-VILAB/flextok_*``) to vistok folders.

A release is ``config.json`` (the hydra config ``FlexTokFromHub`` is built from: every component a dict with a
``_target_``) + ``model.safetensors`` (which may also embed that config in its ``__metadata__``). The config is
read as data: each ``_target_`` string must be one of the original classes this converter knows
(``KNOWN_TARGETS``) and is never imported; an unknown one is an error naming it and where it is. The modules
are found by their class (not their names), their settings become :class:`FlexTokConfig` fields, and their
state-dict keys are renamed accordingly; shapes are checked against the architecture.

The VAE is a diffusers ``AutoencoderKL``: its weights are in the release's ``vae.vae.*`` keys, its config comes
from ``--vae`` (a diffusers folder or hub id such as ``EPFL-VILAB/flextok_vae_c16``), else from the config's
``hf_hub_path``, else from the original's SDXL-like default with the config's ``latent_channels``.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import torch

from ...conversion import (ConversionError, Release, card_repo_id, choose_release, load_config_file, load_converted, load_state_dict,
                           read_original, write_model_folder)
from ...hub.cards import metrics_table, render_model_card
from ...utils.io import SourceNotFoundError, resolve_source
from .configuration_flextok import DEFAULT_VAE_CONFIG, FlexTokConfig
from .modeling_flextok import FlexTokModel

_M, _P, _U = "flextok.model.", "flextok.model.preprocessors.", "flextok.model.utils."
# every original class a FlexTok config may name, by role; nothing here is ever imported
KNOWN_TARGETS = {
    "flextok.flextok_wrapper.FlexTok": "model", "flextok.flextok_wrapper.FlexTokFromHub": "model",
    "flextok.vae_wrapper.StableDiffusionVAE": "vae",
    f"{_U}wrappers.SequentialModuleDictWrapper": "sequence",
    f"{_U}dict_ops.PerSampleOp": "per_sample", f"{_U}dict_ops.channels_first_to_last": "op",
    f"{_U}dict_ops.channels_last_to_first": "op",
    f"{_P}patching.PatchEmbedder": "patches", f"{_U}posembs.PositionalEmbeddingAdder": "posemb",
    f"{_P}registers.Registers1D": "registers", f"{_P}flex_seq_packing.BlockWiseSequencePacker": "packer",
    f"{_M}trunks.transformers.FlexTransformer": "trunk", f"{_M}postprocessors.seq_unpacking.SequenceUnpacker": "unpacker",
    f"{_M}postprocessors.heads.LinearHead": "linear", f"{_P}linear.LinearLayer": "linear",
    f"{_M}postprocessors.heads.ToPatchesLinearHead": "to_patches",
    f"{_P}token_dropout.MaskedNestedDropout": "nested_dropout", f"{_P}nullcond.LearnedNullCond": "null_condition",
    f"{_P}time_embedding.TimestepEmbedder": "time",
    "flextok.regularizers.quantize_fsq.FSQ": "fsq",
    "flextok.flow_matching.noise_modules.MinRFNoiseModule": "noise", "flextok.flow_matching.pipelines.MinRFPipeline": "pipeline",
    f"{_M}layers.norm.Fp32LayerNorm": "norm", "torch.nn.SiLU": "act",
}

_PAPER = "FlexTok (Bachmann et al., ICML 2025, arXiv 2502.13967), as reported in later papers' comparison tables"


def _rfid(value):
    return [{"metric": "rFID (ImageNet-1k val, 256x256, 256 tokens)", "value": value, "setting": "", "source": _PAPER}]


_LICENSE = "other (Apple ML Research Model license)"
RELEASES = {
    "flextok-d12-d12-in1k": Release("EPFL-VILAB/flextok_d12_d12_in1k", "FlexTok d12-d12: 12-layer encoder and decoder (768 wide), ImageNet-1k.",
                                    license=_LICENSE, settings={"vae": "EPFL-VILAB/flextok_vae_c16"}, metrics=_rfid(4.20)),
    "flextok-d18-d18-in1k": Release("EPFL-VILAB/flextok_d18_d18_in1k", "FlexTok d18-d18: 18-layer encoder and decoder (1152 wide), ImageNet-1k.",
                                    license=_LICENSE, settings={"vae": "EPFL-VILAB/flextok_vae_c16"}, metrics=_rfid(1.61)),
    "flextok-d18-d28-in1k": Release("EPFL-VILAB/flextok_d18_d28_in1k", "FlexTok d18-d28: 18-layer encoder (1152 wide), 28-layer decoder (1792 wide), ImageNet-1k.",
                                    license=_LICENSE, settings={"vae": "EPFL-VILAB/flextok_vae_c16"}, metrics=_rfid(1.45)),
    "flextok-d18-d28-dfn": Release("EPFL-VILAB/flextok_d18_d28_dfn", "FlexTok d18-d28 trained on DFN (Data Filtering Networks) images.",
                                   license=_LICENSE, settings={"vae": "EPFL-VILAB/flextok_vae_c16"}),
}

CLI_OPTIONS = (
    ("--vae", dict(metavar="FOLDER_OR_REPO", help="the VAE's diffusers folder or hub id (e.g. EPFL-VILAB/flextok_vae_c16): "
                                                   "its AutoencoderKL config and scaling factor (and weights if the "
                                                   "checkpoint lacks vae.vae.*)")),
    ("--config", dict(metavar="JSON", help="the original hydra config (JSON/YAML) when it is neither beside the "
                                            "checkpoint nor in its safetensors metadata")),
)


# -- reading the hydra config as data ---------------------------------------------------------
def check_targets(node, where: str = "config") -> None:
    """Every ``_target_`` in the config is a class this converter knows; else an error naming it and where."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and target not in KNOWN_TARGETS:
            raise ConversionError(f"unknown _target_ {target!r} at {where}: vistok maps only the original FlexTok "
                                  f"classes ({len(KNOWN_TARGETS)} known) and never imports a config's targets")
        for key, value in node.items():
            check_targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_targets(value, f"{where}[{i}]")


def _role(node) -> str | None:
    return KNOWN_TARGETS.get(node.get("_target_")) if isinstance(node, dict) else None


def _modules(config: dict, part: str) -> list[tuple[str, dict]]:
    node = config.get(part)
    if _role(node) != "sequence" or not isinstance(node.get("module_dict"), dict):
        raise ConversionError(f"config {part!r} must be a SequentialModuleDictWrapper with a module_dict")
    return list(node["module_dict"].items())


def _one(modules, role: str, part: str, where=lambda m: True) -> tuple[str, dict]:
    found = [(n, m) for n, m in modules if _role(m) == role and where(m)]
    if len(found) != 1:
        raise ConversionError(f"the {part} must have exactly one {role} module, found {[n for n, _ in found]}")
    return found[0]


def _trunk_settings(trunk: dict, where: str) -> dict:
    if not trunk.get("gated_mlp", True):
        raise ConversionError(f"{where}: only the gated (SwiGLU) MLP of the releases is supported (gated_mlp=False)")
    if trunk.get("qkv_bias", False) != trunk.get("proj_bias", False):
        raise ConversionError(f"{where}: qkv_bias and proj_bias must agree")
    norm = trunk.get("norm_layer")
    if isinstance(norm, dict) and (norm.get("elementwise_affine") or norm.get("bias")):
        raise ConversionError(f"{where}: only the non-affine Fp32LayerNorm of the releases is supported")
    act = trunk.get("act_layer")
    if isinstance(act, dict) and _role(act) != "act":
        raise ConversionError(f"{where}: only SiLU activations are supported")
    return {"hidden_size": int(trunk.get("dim", 768)), "num_layers": int(trunk.get("depth", 12)),
            "head_dim": int(trunk.get("head_dim", 64)), "mlp_ratio": float(trunk.get("mlp_ratio", 4.0)),
            "qk_norm": bool(trunk.get("qk_norm", True)), "attention_bias": bool(trunk.get("qkv_bias", False)),
            "mlp_bias": bool(trunk.get("mlp_bias", False))}


def _head_norm(module: dict, name: str) -> bool:
    target = module["_target_"]
    if target.endswith("LinearLayer"):
        return False
    norm = module.get("norm_layer", "default")
    if norm is None:
        return False
    if isinstance(norm, dict) and (norm.get("elementwise_affine") or norm.get("bias")):
        raise ConversionError(f"{name}: only a non-affine norm before the projection is supported")
    return True


def parse_config(config: dict, image_size: int | None = None) -> tuple[dict, dict[str, str]]:
    """(FlexTokConfig kwargs without the VAE's, {original module prefix: vistok prefix}) from the hydra config."""
    if isinstance(config.get("config"), dict) and "encoder" in config["config"]:
        config = config["config"]  # PyTorchModelHubMixin's wrapping
    check_targets(config)
    for part in ("vae", "encoder", "decoder", "regularizer"):
        if part not in config:
            raise ConversionError(f"config has no {part!r} section (the FlexTokFromHub layout)")
    names: dict[str, str] = {}
    enc = _modules(config, "encoder")
    patch_name, patch = _one(enc, "patches", "encoder")
    pos_name, pos = _one(enc, "posemb", "encoder")
    reg_name, reg = _one(enc, "registers", "encoder")
    packer_name, packer = _one(enc, "packer", "encoder")
    trunk_name, trunk = _one(enc, "trunk", "encoder")
    head_name, head = _one(enc, "linear", "encoder")
    if packer.get("mask_mode") != "causal_last":
        raise ConversionError(f"encoder.{packer_name}: expected mask_mode 'causal_last' (the prefix-LM mask), got {packer.get('mask_mode')!r}")
    if pos.get("posemb_type", "sincos") != "sincos":
        raise ConversionError(f"encoder.{pos_name}: only sincos patch position embeddings are supported")
    if reg.get("ordering_mode", "nested") != "nested":
        raise ConversionError(f"encoder.{reg_name}: only nested register ordering is supported")
    patch_sizes = list(patch.get("patch_sizes", []))
    if len(patch_sizes) != 2 or patch_sizes[0] != patch_sizes[1]:
        raise ConversionError(f"encoder.{patch_name}: expected square 2D patch_sizes, got {patch_sizes}")
    enc_trunk = _trunk_settings(trunk, f"encoder.{trunk_name}")
    if trunk.get("adaLN_emb_read_key") is not None:
        raise ConversionError(f"encoder.{trunk_name}: the encoder has no adaLN")
    names.update({f"encoder.module_dict.{patch_name}.patch_proj.": "encoder.patch_embed.",
                  f"encoder.module_dict.{pos_name}.posembs": "encoder.position_embedding",
                  f"encoder.module_dict.{reg_name}.registers": "encoder.registers",
                  f"encoder.module_dict.{trunk_name}.blocks.": "encoder.layers.",
                  f"encoder.module_dict.{head_name}.proj.": "encoder.to_latents."})

    dec = _modules(config, "decoder")
    dec_names = [n for n, _ in dec]
    from_name, from_latents = _one(dec, "linear", "decoder")
    regpos_name, regpos = _one(dec, "posemb", "decoder", lambda m: len(m.get("max_sizes", [])) == 1)
    patchpos_name, patchpos = _one(dec, "posemb", "decoder", lambda m: len(m.get("max_sizes", [])) == 2)
    drop_name, _ = _one(dec, "nested_dropout", "decoder")
    null_name, null = _one(dec, "null_condition", "decoder")
    dpatch_name, dpatch = _one(dec, "patches", "decoder")
    dpacker_name, dpacker = _one(dec, "packer", "decoder")
    time_name, time = _one(dec, "time", "decoder")
    dtrunk_name, dtrunk = _one(dec, "trunk", "decoder")
    out_name, out = _one(dec, "to_patches", "decoder")
    if regpos.get("posemb_type") not in ("learnable_sum", "learnable_prod"):
        raise ConversionError(f"decoder.{regpos_name}: expected a learnable 1D register position embedding")
    if patchpos.get("posemb_type", "sincos") != "sincos":
        raise ConversionError(f"decoder.{patchpos_name}: only sincos patch position embeddings are supported")
    if dpacker.get("mask_mode", "full") != "full" or list(dpacker.get("input_list_read_keys", [])) != [
            dpatch.get("patches_list_write_key"), regpos.get("write_key")]:
        raise ConversionError(f"decoder.{dpacker_name}: expected full attention over [patches, registers]")
    if int(dtrunk.get("adaLN_expansion", 1)) != 2 or not dpacker.get("per_subseq_embs", False):
        raise ConversionError(f"decoder.{dtrunk_name}: expected separate adaLN for patches and registers (adaLN_expansion 2)")
    if out.get("use_mup_readout"):
        raise ConversionError(f"decoder.{out_name}: use_mup_readout=True needs μP base shapes the release does not ship")
    if out.get("adaLN_emb_read_key") is None:
        raise ConversionError(f"decoder.{out_name}: expected an adaLN-modulated output head")
    if list(out.get("patch_sizes", [])) != patch_sizes or list(dpatch.get("patch_sizes", [])) != patch_sizes:
        raise ConversionError("the decoder's patch sizes must equal the encoder's")
    dec_trunk = _trunk_settings(dtrunk, f"decoder.{dtrunk_name}")
    for key in ("mlp_ratio", "qk_norm"):
        if dec_trunk[key] != enc_trunk[key]:
            raise ConversionError(f"encoder and decoder differ in {key}; vistok shares it")
    names.update({f"decoder.module_dict.{from_name}.proj.": "decoder.from_latents.",
                  f"decoder.module_dict.{regpos_name}.posembs": "decoder.register_position_embedding",
                  f"decoder.module_dict.{drop_name}.dropout_mask_token": "decoder.mask_token",
                  f"decoder.module_dict.{null_name}.nullcond": "decoder.null_condition",
                  f"decoder.module_dict.{dpatch_name}.patch_proj.": "decoder.patch_embed.",
                  f"decoder.module_dict.{patchpos_name}.posembs": "decoder.position_embedding",
                  f"decoder.module_dict.{time_name}.mlp.": "decoder.time_embed.",
                  f"decoder.module_dict.{dtrunk_name}.blocks.": "decoder.layers.",
                  f"decoder.module_dict.{out_name}.adaLN_modulation.1.": "decoder.head_modulation.",
                  f"decoder.module_dict.{out_name}.proj.": "decoder.head."})

    fsq = config["regularizer"]
    if _role(fsq) != "fsq" or not fsq.get("levels"):
        raise ConversionError("config 'regularizer' must be the FSQ with its levels")
    vae = config["vae"]
    if _role(vae) != "vae":
        raise ConversionError("config 'vae' must be a StableDiffusionVAE")
    grid = int(patchpos.get("max_sizes")[0])
    kwargs = dict(
        num_tokens=int(reg["n_max"]), fsq_levels=[int(v) for v in fsq["levels"]], patch_size=int(patch_sizes[0]),
        encoder_hidden_size=enc_trunk["hidden_size"], encoder_num_layers=enc_trunk["num_layers"],
        encoder_head_dim=enc_trunk["head_dim"], decoder_hidden_size=dec_trunk["hidden_size"],
        decoder_num_layers=dec_trunk["num_layers"], decoder_head_dim=dec_trunk["head_dim"],
        mlp_ratio=enc_trunk["mlp_ratio"], qk_norm=enc_trunk["qk_norm"],
        attention_bias=enc_trunk["attention_bias"] or dec_trunk["attention_bias"],
        mlp_bias=enc_trunk["mlp_bias"] or dec_trunk["mlp_bias"],
        encoder_head_norm=_head_norm(head, f"encoder.{head_name}"),
        decoder_input_norm=_head_norm(from_latents, f"decoder.{from_name}"),
        mask_token_posemb=dec_names.index(drop_name) < dec_names.index(regpos_name),
        null_condition_single_token=bool(null.get("replace_with_single_token", False)),
        timestep_max=float(time.get("max_timestep", 1000.0)),
        timestep_frequency_size=int(time.get("frequency_embedding_size", 256)),
        grid=grid, latent_channels=int(vae.get("latent_channels", 16)),
        vae_scaling_factor=vae.get("scaling_factor"), vae_hub_path=vae.get("hf_hub_path"),
    )
    return kwargs, names


def convert_state_dict(original: dict[str, torch.Tensor], names: dict[str, str]) -> tuple[dict, set]:
    """Original keys -> vistok keys (module prefixes from :func:`parse_config`); returns (new dict, unused keys)."""
    block = [(r"\.attn\.wq\.", ".attn.q_proj."), (r"\.attn\.wk\.", ".attn.k_proj."), (r"\.attn\.wv\.", ".attn.v_proj."),
             (r"\.attn\.proj\.", ".attn.out_proj."), (r"\.adaLN_modulation\.1\.", ".adaln_modulation.")]
    out, unused = {}, set()
    for key, value in original.items():
        if key.startswith("vae.vae."):
            out["vae." + key[len("vae.vae."):]] = value
            continue
        prefix = next((p for p in names if key.startswith(p)), None)
        if prefix is None:
            unused.add(key)
            continue
        new = names[prefix] + key[len(prefix):]
        if new.startswith(("encoder.layers.", "decoder.layers.")):
            for pattern, replacement in block:
                new = re.sub(pattern, replacement, new)
        if new == "decoder.register_position_embedding":  # learnable_sum 1D [1, 1, D, N] -> [N, D]
            if value.ndim != 4 or value.shape[:2] != (1, 1):
                raise ConversionError(f"{key}: expected a [1, 1, D, N] register position embedding, got {tuple(value.shape)}")
            value = value[0, 0].t().contiguous()
        out[new] = value
    return out, unused


def _safetensors_metadata_config(path: Path) -> dict | None:
    """The hydra config embedded in a safetensors header (``__metadata__``), parsed as a Python literal (data only)."""
    if path.suffix != ".safetensors":
        return None
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    meta = header.get("__metadata__") or {}
    parsed = {}
    for key, value in meta.items():
        try:
            parsed[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[key] = value
    return parsed if "encoder" in parsed else None


def _vae_config(vae_source: str | None, hub_path: str | None, latent_channels: int):
    """(AutoencoderKL config dict, its folder or None): --vae, else the config's hf_hub_path, else the default."""
    source = vae_source or hub_path
    if source is None:
        return {**DEFAULT_VAE_CONFIG, "latent_channels": latent_channels}, None
    try:
        folder = resolve_source(source, "VAE")
    except SourceNotFoundError as err:
        raise ConversionError(str(err)) from err
    folder = folder / "vae" if (folder / "vae" / "config.json").is_file() else folder
    if not (folder / "config.json").is_file():
        raise ConversionError(f"VAE {source}: no diffusers config.json in {folder}")
    config = load_config_file(folder / "config.json")
    if int(config.get("latent_channels", -1)) != latent_channels:
        raise ConversionError(f"VAE {source} has {config.get('latent_channels')} latent channels; the model expects {latent_channels}")
    return config, folder


def convert(source: str, output: str, *, preset: str | None = None, vae: str | None = None, config: str | None = None,
            overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """``vistok convert flextok``: an original FlexTok release -> a vistok tokenizer folder (atomically)."""
    chosen = choose_release(preset, RELEASES, "flextok")
    original = read_original(source)
    if chosen is None:
        chosen = next((r for r in RELEASES.values() if original.hub_id and r.hub_id.lower() == original.hub_id.lower()), None)
    if config is not None:
        hydra = load_config_file(config)
    elif original.folder is not None and (original.folder / "config.json").is_file():
        hydra = load_config_file(original.folder / "config.json")
    else:
        hydra = _safetensors_metadata_config(original.path)
        if hydra is None:
            raise ConversionError(f"no FlexTok config beside {original.path} nor in its safetensors metadata: pass --config")
    kwargs, names = parse_config(hydra)
    grid, channels = kwargs.pop("grid"), kwargs.pop("latent_channels")
    scaling, hub_path = kwargs.pop("vae_scaling_factor"), kwargs.pop("vae_hub_path")
    vae_source = vae or (chosen.settings.get("vae") if chosen and hub_path is None else None)
    vae_config, vae_folder = _vae_config(vae_source, hub_path, channels)
    scaling = scaling if scaling is not None else vae_config.get("scaling_factor")
    if scaling is None:
        raise ConversionError("the VAE's scaling_factor is in neither the FlexTok config nor the VAE config: pass --vae")
    state = dict(original)
    if not any(k.startswith("vae.vae.") for k in state):
        if vae_folder is None:
            raise ConversionError("the checkpoint has no vae.vae.* weights: pass --vae with the VAE's diffusers folder")
        weights = vae_folder / "diffusion_pytorch_model.safetensors"
        state.update({f"vae.vae.{k}": v for k, v in load_state_dict(weights).items()})
    # the patch position tables cover the latent of one image size (256 px in the releases)
    image_size = grid * kwargs["patch_size"] * 2 ** (len(vae_config["down_block_types"]) - 1)
    model_config = FlexTokConfig(image_size=image_size, vae_config=vae_config, vae_scaling_factor=float(scaling), **kwargs)
    converted, unused = convert_state_dict(state, names)
    model = load_converted(FlexTokModel, model_config, converted, unused, original)
    base_model = original.hub_id or (chosen.hub_id if chosen else None)
    card = render_card(model_config, chosen, base_model, Path(source).name, card_repo_id(output, push_to_hub))
    return write_model_folder(output, model, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


def render_card(cfg: FlexTokConfig, release: Release | None, base_model: str | None, source_name: str, repo_id: str) -> str:
    def trunk(width, layers, head):
        return f"{layers} layers, {width} wide, {width // head} heads (QK-norm, SwiGLU)"

    metadata = {"license": "other" if release else "apache-2.0", "license_name": "apple-ml-research-model" if release else None,
                "library_name": "vistok", "tags": ["vistok", "image-tokenization", "flextok", "1d-tokenizer"],
                "base_model": base_model}
    return render_model_card(
        "flextok", metadata=metadata, model_name=Path(repo_id).name, base_model=base_model or source_name,
        description=release.description if release else "", image_size=str(cfg.image_size),
        num_tokens=str(cfg.num_tokens), levels=str(cfg.fsq_levels), codebook_size=str(cfg.codebook_size),
        encoder=trunk(cfg.encoder_hidden_size, cfg.encoder_num_layers, cfg.encoder_head_dim),
        decoder=trunk(cfg.decoder_hidden_size, cfg.decoder_num_layers, cfg.decoder_head_dim),
        latent_channels=str(cfg.latent_channels), steps=str(cfg.num_inference_steps), guidance=str(cfg.guidance_scale),
        apg="on" if cfg.use_apg else "off", repo_id=repo_id, metrics=metrics_table(release.metrics if release else []),
        conversion=f"Converted from `{base_model or source_name}` with `vistok convert flextok`.",
        license=release.license if release else "apache-2.0",
    )
