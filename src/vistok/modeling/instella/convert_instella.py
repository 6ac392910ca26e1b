"""Convert Instella-T2I's binary autoencoder (HF ``amd/Instella-T2I``, ``bae/model.safetensors``) to a vistok folder.

Widths, depths, token count and bits are read from the checkpoint's shapes (heads are 64 wide, as in
``configs/bae_config.py``); what shapes cannot tell (the resize block indices, the RoPE axes, the
``set_scale(1024)`` position scale) comes from the release settings, which copy the original config.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ...conversion import (
    ConversionError,
    Release,
    card_repo_id,
    choose_release,
    load_converted,
    read_original,
    rename_key,
    write_model_folder,
)
from ...hub.cards import metrics_table, render_model_card
from .configuration_instella import InstellaBAEConfig
from .modeling_instella import InstellaBAEModel

HEAD_DIM = 64
BAE_SETTINGS = {"image_size": 1024, "patch_size": 16, "downsample_layers": [7], "upsample_layers": [7],
                "axes_dims_rope": [8, 28, 28], "rope_scale": 64.0, "train_temperature": 0.1}

RELEASES = {
    "instella-t2i-bae": Release(
        "amd/Instella-T2I",
        "Instella-T2I binary autoencoder (1D-BIT): a 1024x1024 image as 128 tokens of 64 bits.",
        filename="bae/model.safetensors", license="other", settings=BAE_SETTINGS),
}

_RENAMES = [(r"^quantizer\.proj\.0\.", "quantizer.proj.")]
_UNUSED = re.compile(r"^decoder\.repa_proj\.")  # the REPA alignment head, training only (absent in the release)


def _count(state: dict, prefix: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(rf"^{re.escape(prefix)}\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def infer_config(state: dict, settings: dict) -> dict:
    try:
        _, num_tokens, enc_width = state["encoder.latent_tokens"].shape
        dec_width = state["decoder.mask_tokens"].shape[-1]
        num_bits = state["quantizer.embed"].shape[0]
        patch = state["encoder.patch_embedder.weight"].shape[-1]
    except KeyError as err:
        raise ConversionError(f"not an Instella-T2I BAE checkpoint: missing {err.args[0]}") from None
    cfg = dict(settings)
    cfg.update(num_tokens=num_tokens, num_bits=num_bits, patch_size=patch,
               encoder_hidden_size=enc_width, encoder_num_heads=enc_width // HEAD_DIM,
               encoder_num_layers=_count(state, "encoder.transformer_blocks"),
               decoder_hidden_size=dec_width, decoder_num_heads=dec_width // HEAD_DIM,
               decoder_num_layers=_count(state, "decoder.transformer_blocks"))
    if _count(state, "encoder.down_layers") != len(cfg["downsample_layers"]):
        raise ConversionError(f"the checkpoint has {_count(state, 'encoder.down_layers')} down-sampling layers, "
                              f"the settings {cfg['downsample_layers']}")
    return cfg


def read_bae_config(path: str) -> dict:
    """The original mmengine config (``configs/bae_config.py``: plain assignments) read as data, never executed:
    the literal assignments, later ones winning (the file assigns ``num_latent_tkns`` twice)."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError) as err:
        raise ConversionError(f"cannot read the original config {path}: {err}") from err
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def settings_from_original(original: dict, image_size: int) -> dict:
    """Our settings from the original config's fields (those shapes cannot tell)."""
    patch = original.get("patch_size", 16)
    settings = {"image_size": image_size, "patch_size": patch, "rope_scale": image_size / patch}
    for ours, theirs in (("downsample_layers", "downsample_idx"), ("upsample_layers", "upsample_idx"),
                         ("axes_dims_rope", "axes_dims_rope"), ("train_temperature", "train_temp")):
        if theirs in original:
            settings[ours] = original[theirs]
    return settings


def convert_state_dict(original: dict) -> tuple[dict, set[str]]:
    """Renamed tensors; the training-only REPA head is dropped (nothing reads it at inference)."""
    converted = {rename_key(k, _RENAMES): v for k, v in original.items() if not _UNUSED.match(k)}
    return converted, set()


def convert(source: str, output: str, *, preset: str | None = None, overwrite: bool = False,
            push_to_hub: str | None = None, config: str | None = None, image_size: int | None = None) -> Path:
    """``vistok convert instella-bae``: the released ``bae/model.safetensors`` (a file, the release folder or
    the hub repo) -> a vistok tokenizer folder; ``config``: the original ``configs/bae_config.py`` (read as data)
    for checkpoints other than the release; ``image_size``: the ``set_scale`` size (1024 in the release)."""
    chosen = choose_release(preset, RELEASES, "instella-bae") or RELEASES["instella-t2i-bae"]
    state = read_original(source, chosen)
    settings = dict(chosen.settings)
    if config is not None:
        original = read_bae_config(config)
        settings.update(settings_from_original(original, image_size or settings["image_size"]))
    elif image_size is not None:
        settings.update(image_size=image_size, rope_scale=image_size / settings["patch_size"])
    cfg = infer_config(state, settings)
    if config is not None:
        for ours, theirs in (("encoder_num_heads", "encoder_num_heads"), ("decoder_num_heads", "decoder_num_heads")):
            if theirs in original:
                cfg[ours] = original[theirs]
    config = InstellaBAEConfig(**cfg)
    converted, unused = convert_state_dict(state)
    model = load_converted(InstellaBAEModel, config, converted, unused, state)
    base_model = state.hub_id or chosen.repo
    card = render_card(config, chosen, base_model, Path(source).name, card_repo_id(output, push_to_hub))
    return write_model_folder(output, model, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


CLI_OPTIONS = (
    ("--config", dict(metavar="PY", help="the original configs/bae_config.py (read as data) for other checkpoints")),
    ("--image-size", dict(type=int, metavar="N", help="the image size the model was set to (set_scale; 1024)")),
)


def render_card(cfg: InstellaBAEConfig, preset: Release, base_model: str, source_name: str, repo_id: str) -> str:
    def trunk(width, layers, heads):
        return f"ViT {width} wide, {layers} layers, {heads} heads"

    metadata = {"license": preset.license, "library_name": "vistok",
                "tags": ["vistok", "image-tokenization", "instella-bae", "1d-tokenizer", "binary"],
                "base_model": preset.repo}
    return render_model_card(
        "instella-bae", metadata=metadata, model_name=Path(repo_id).name, base_model=base_model or source_name,
        description=preset.description, image_size=str(cfg.image_size), num_tokens=str(cfg.num_tokens),
        num_bits=str(cfg.num_bits), encoder=trunk(cfg.encoder_hidden_size, cfg.encoder_num_layers, cfg.encoder_num_heads),
        decoder=trunk(cfg.decoder_hidden_size, cfg.decoder_num_layers, cfg.decoder_num_heads), repo_id=repo_id,
        metrics=metrics_table(preset.metrics), license=preset.license,
    )


# -- the AR generator (ar.pt, weights under ["module"]) ----------------------------------------------------
_AR_RENAMES = [(r"\.mlp\.net\.0\.proj\.", ".mlp.fc1."), (r"\.mlp\.net\.2\.", ".mlp.fc2.")]
_AR_UNUSED = re.compile(r"^time_embed\.")  # constructed by the original, never used in its forward


def infer_ar_config(state: dict, head_dim: int = 128) -> dict:
    """The AR architecture from ``ar.pt``'s shapes (heads of ``head_dim``: 128 in the release)."""
    try:
        width = state["split_token"].shape[-1]
        num_bits = state["x_embedder.weight"].shape[1]
        positions, text_width = state["transformer_blocks.0.pos_emb"].shape[1], state["transformer_blocks.0.proj_cond.weight"].shape[1]
    except KeyError as err:
        raise ConversionError(f"not an Instella-T2I AR checkpoint: missing {err.args[0]}") from None
    return dict(num_bits=num_bits, num_tokens=positions - 1, hidden_size=width, num_attention_heads=width // head_dim,
                num_hidden_layers=_count(state, "transformer_blocks"), text_hidden_size=text_width,
                mlp_ratio=state["transformer_blocks.0.mlp.net.0.proj.weight"].shape[0] / width)


def load_ar(source: str, head_dim: int = 128):
    """An ``InstellaARModel`` from the original ``ar.pt`` (``torch.load(weights_only=True)``, unwrapped from
    ``["module"]``) or a folder holding it; eval mode."""
    from .configuration_instella import InstellaARConfig
    from .modeling_instella_ar import InstellaARModel

    state = read_original(source, filename="ar.pt")
    config = InstellaARConfig(**infer_ar_config(state, head_dim))
    # the never-used time_embed is dropped
    converted = {rename_key(k, _AR_RENAMES): v for k, v in state.items() if not _AR_UNUSED.match(k)}
    return load_converted(InstellaARModel, config, converted, set(), state)


AR_RELEASES = {
    "instella-t2i-ar": Release(
        "amd/Instella-T2I", "Instella-T2I autoregressive generator: 128 binary tokens from text (AMD-OLMo-1B features).",
        filename="ar.pt", license="other", sampling={"guidance_scale": 7.5, "temperature": 1.0}, tokenizer="instella-t2i-bae"),
}


def convert_ar(source: str, output: str, *, tokenizer: str, text_encoder: str | None = None, preset: str | None = None,
               head_dim: int | None = None, overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """``vistok convert instella-ar``: ``ar.pt`` + a converted tokenizer folder (``vistok convert instella-bae``)
    [+ an OLMo folder, amd/AMD-OLMo-1B, with its tokenizer] -> a BinaryAutoregressiveTextToImagePipeline folder."""
    from ...pipelines import BinaryAutoregressiveTextToImagePipeline

    chosen = choose_release(preset, AR_RELEASES, "instella-ar") or AR_RELEASES["instella-t2i-ar"]
    transformer = load_ar(source, head_dim or 128)
    transformer.config.sampling_defaults = dict(chosen.sampling)
    cfg = transformer.config
    return _write_pipeline(BinaryAutoregressiveTextToImagePipeline, "instella-ar", chosen, source, output, transformer,
                           tokenizer, text_encoder, overwrite, push_to_hub,
                           guidance=str(cfg.sampling_defaults["guidance_scale"]),
                           temperature=str(cfg.sampling_defaults["temperature"]))


def _write_pipeline(pipeline_class, card_name: str, chosen: Release, source: str, output: str, transformer, tokenizer: str,
                    text_encoder: str | None, overwrite: bool, push_to_hub: str | None, **card_fields) -> Path:
    """The generator with the converted tokenizer folder [and an OLMo folder with its tokenizer] as a pipeline folder
    with its card."""
    from transformers import AutoModel

    image_tokenizer = AutoModel.from_pretrained(tokenizer)
    if not isinstance(image_tokenizer, InstellaBAEModel):
        raise ConversionError(f"--tokenizer must be a converted Instella-T2I tokenizer folder (vistok convert instella-bae), "
                              f"got a {type(image_tokenizer).__name__}")
    encoder = text_tokenizer = None
    if text_encoder is not None:
        from transformers import AutoTokenizer

        encoder = AutoModel.from_pretrained(text_encoder).eval()
        text_tokenizer = AutoTokenizer.from_pretrained(text_encoder, padding_side="left")
    try:
        pipeline = pipeline_class(image_tokenizer=image_tokenizer, transformer=transformer, text_encoder=encoder,
                                  tokenizer=text_tokenizer)
    except ValueError as err:
        raise ConversionError(str(err)) from None
    cfg = transformer.config
    metadata = {"license": chosen.license, "library_name": "vistok", "pipeline_tag": "text-to-image",
                "tags": ["vistok", "text-to-image", card_name, "binary-tokens"], "base_model": chosen.repo}
    card = render_model_card(
        card_name, metadata=metadata, model_name=Path(card_repo_id(output, push_to_hub)).name,
        base_model=state_source(source), description=chosen.description, repo_id=card_repo_id(output, push_to_hub),
        hidden_size=str(cfg.hidden_size), num_layers=str(cfg.num_hidden_layers), num_heads=str(cfg.num_attention_heads),
        num_tokens=str(cfg.num_tokens), num_bits=str(cfg.num_bits), license=chosen.license, **card_fields)
    return write_model_folder(output, pipeline, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


def state_source(source: str) -> str:
    return Path(source).name or source


AR_CLI_OPTIONS = (
    ("--tokenizer", dict(required=True, metavar="DIR", help="a tokenizer folder from `vistok convert instella-bae`")),
    ("--text-encoder", dict(metavar="DIR", help="an OLMo folder with its tokenizer (amd/AMD-OLMo-1B); without it, "
                                                 "the pipeline takes prompt_embeds")),
    ("--head-dim", dict(type=int, metavar="N", help="attention head size (128 in the release)")),
)


# -- the diffusion generator (diffusion.pt, weights under ["module"]) ------------------------------------------
_DIFF_RENAMES = [(r"\.ff\.net\.0\.proj\.", ".mlp.fc1."), (r"\.ff\.net\.2\.", ".mlp.fc2.")]


def infer_diffusion_config(state: dict, head_dim: int = 128) -> dict:
    """The diffusion architecture from ``diffusion.pt``'s shapes (heads of ``head_dim``: 128 in the release)."""
    try:
        width, num_bits = state["x_embedder.weight"].shape
        positions, text_width = state["transformer_blocks.0.pos_emb"].shape[1], state["transformer_blocks.0.proj_cond.weight"].shape[1]
        hidden = state["transformer_blocks.0.ff.net.0.proj.weight"].shape[0]
        state["time_embed.linear_1.weight"], state["norm_out.linear.weight"]
    except KeyError as err:
        raise ConversionError(f"not an Instella-T2I diffusion checkpoint: missing {err.args[0]}") from None
    if width % head_dim:
        raise ConversionError(f"the width {width} is not a multiple of the head size {head_dim} (--head-dim)")
    return dict(num_bits=num_bits, num_tokens=positions, hidden_size=width, num_attention_heads=width // head_dim,
                num_hidden_layers=_count(state, "transformer_blocks"), text_hidden_size=text_width, mlp_ratio=hidden / width)


def load_diffusion(source: str, head_dim: int = 128):
    """An ``InstellaDiffusionModel`` from the original ``diffusion.pt`` (``torch.load(weights_only=True)``, unwrapped
    from ``["module"]``) or a folder holding it; eval mode."""
    from .configuration_instella import InstellaDiffusionConfig
    from .modeling_instella_diffusion import InstellaDiffusionModel

    state = read_original(source, filename="diffusion.pt")
    config = InstellaDiffusionConfig(**infer_diffusion_config(state, head_dim))
    converted = {rename_key(k, _DIFF_RENAMES): v for k, v in state.items()}
    return load_converted(InstellaDiffusionModel, config, converted, set(), state)


DIFF_RELEASES = {
    "instella-t2i-diffusion": Release(
        "amd/Instella-T2I", "Instella-T2I binary diffusion generator: 128 binary tokens from text (AMD-OLMo-1B features).",
        filename="diffusion.pt", license="other", tokenizer="instella-t2i-bae",
        # test_diff.py's defaults (its --image_size default is 512)
        sampling={"guidance_scale": 7.5, "temperature": 1.0, "num_inference_steps": 20, "rho": 1.0, "step_rule": "protocol_1"}),
}


def convert_diffusion(source: str, output: str, *, tokenizer: str, text_encoder: str | None = None,
                      preset: str | None = None, head_dim: int | None = None, overwrite: bool = False,
                      push_to_hub: str | None = None) -> Path:
    """``vistok convert instella-diffusion``: ``diffusion.pt`` + a converted tokenizer folder (``vistok convert
    instella-bae``) [+ an OLMo folder, amd/AMD-OLMo-1B, with its tokenizer] -> a BinaryDiffusionTextToImagePipeline
    folder."""
    from ...pipelines import BinaryDiffusionTextToImagePipeline

    chosen = choose_release(preset, DIFF_RELEASES, "instella-diffusion") or DIFF_RELEASES["instella-t2i-diffusion"]
    transformer = load_diffusion(source, head_dim or 128)
    transformer.config.sampling_defaults = dict(chosen.sampling)
    d = transformer.config.sampling_defaults
    return _write_pipeline(BinaryDiffusionTextToImagePipeline, "instella-diffusion", chosen, source, output, transformer,
                           tokenizer, text_encoder, overwrite, push_to_hub, guidance=str(d["guidance_scale"]),
                           temperature=str(d["temperature"]), steps=str(d["num_inference_steps"]), rho=str(d["rho"]),
                           step_rule=d["step_rule"])


DIFF_CLI_OPTIONS = AR_CLI_OPTIONS
