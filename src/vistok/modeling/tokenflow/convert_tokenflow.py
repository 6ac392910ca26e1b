"""Convert ByteFlow-AI/TokenFlow tokenizer checkpoints (``tokenflow_clipb_32k_enhanced.pt``,
``tokenflow_siglip_32k.pt``) to vistok tokenizer folders.

The checkpoints are pickles read with ``torch.load(weights_only=True)``: ``ckpt["ema"]`` when present (as the
original's loaders prefer it), else ``["model"]`` / ``["state_dict"]``, or a bare state dict. Every width
comes from the tensors' shapes; what they cannot say (the teacher, the scale table, the image size, the
SigLIP tower's head count) comes from a release preset or the ``--teacher`` flag.

Key map (original -> vistok):

- ``encoder.*`` / ``decoder.*`` (LlamaGen's conv encoder/decoder) -> the same names in the shared conv
  autoencoder, q/k/v fused (LlamaGen's converter does it);
- ``encoder_vqkd.*``: OpenAI CLIP visual names (``conv1``, ``class_embedding``, ``positional_embedding``,
  ``ln_pre``, ``transformer.resblocks.N.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}``,
  ``ln_post``) -> transformers ``CLIPVisionModel`` (``in_proj`` split into q/k/v); SigLIP (transformers 4
  ``SiglipVisionModel``, ``vision_model.*``) -> transformers 5's ``SiglipVisionModel``;
- ``decoder_vqkd.*`` (VQKD ViT: fused ``qkv`` with ``q_bias``/``v_bias``) -> ``semantic_decoder.*`` (q/k/v
  split, a zero k bias: a constant key bias cancels in the softmax);
- ``encode_task_layer`` / ``decode_task_layer`` -> ``semantic_in`` / ``semantic_out``;
- ``quantize.embedding_vqkd`` / ``embedding_vqgan`` -> ``quantizer.codebooks.0`` / ``.1``; the
  ``quantize.codebook_used`` usage log is dropped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, SiglipVisionConfig

from ...conversion import (ConversionError, Original, Release, card_repo_id, choose_release, find_checkpoint,
                           load_config_file, load_converted, rename_key, write_model_folder)
from ...hub.cards import metrics_table, render_model_card
from ...utils.io import UnreadablePickleError, is_repo_id, load_pickle
from ..llamagen.convert_llamagen import convert_vq_state_dict
from ..quantizers.shared_mapping import convert_tokenflow_quantizer_state_dict
from .configuration_tokenflow import CLIP_PATCH_NUMS, SIGLIP_PATCH_NUMS, TokenFlowConfig
from .modeling_tokenflow import TokenFlowModel

logger = logging.getLogger(__name__)

REPO = "ByteFlow-AI/TokenFlow"
_SOURCE = "TokenFlow paper / README (ByteFlow-AI/TokenFlow)"

# What the weights cannot say about each teacher: TokenFlow's scale tables, the image size, the tower's
# head dimension (OpenAI CLIP: 64; SigLIP so400m: 1152 / 16 = 72) and the SigLIP tower's eps/activation.
TEACHERS = {
    "clip": dict(patch_nums=list(CLIP_PATCH_NUMS), image_size=256, head_dim=64),
    "siglip": dict(patch_nums=list(SIGLIP_PATCH_NUMS), image_size=384, head_dim=72),
}

RELEASES = {
    "clipb-32k-enhanced": Release(
        REPO, "CLIP ViT-B/16 teacher, 32768-entry dual codebook (32 semantic + 8 pixel dims), enhanced pixel decoder; "
        "9 scales up to 16x16 at 256 px (817 tokens). The tokenizer of TokenFlow-t2i.",
        "tokenflow_clipb_32k_enhanced.pt", license="apache-2.0", settings={"teacher": "clip"},
        metrics=[{"metric": "GenEval (TokenFlow-t2i)", "value": 0.55, "setting": "256 px", "source": _SOURCE}]),
    "siglip-32k": Release(
        REPO, "SigLIP so400m/14-384 teacher, 32768-entry dual codebook; 15 scales up to 27x27 at 384 px (the "
        "understanding release).", "tokenflow_siglip_32k.pt", license="apache-2.0", settings={"teacher": "siglip"},
        metrics=[{"metric": "rFID (ImageNet val)", "value": 0.63, "setting": "384 px", "source": _SOURCE},
                 {"metric": "Understanding (avg. of benchmarks)", "value": "+7.2% vs LLaVA-1.5 13B", "setting": "TokenFlow-XL",
                  "source": _SOURCE}]),
}

CLI_OPTIONS = (
    ("--teacher", dict(choices=sorted(TEACHERS), help="the semantic teacher the checkpoint was trained with "
                       "(clip: ViT-B/16, 9 scales to 16x16 at 256 px; siglip: so400m/14-384, 15 scales to 27x27); "
                       "a preset sets it; default: read from the checkpoint's keys")),
    ("--patch-nums", dict(metavar="PN", help="the token-map side of each scale, coarse to fine (default: the teacher's "
                          "table, 1,2,4,6,8,10,12,14,16 for clip); the last one is the semantic tower's grid")),
    ("--image-size", dict(type=int, metavar="PX", help="image size (default: the teacher's, 256 clip / 384 siglip); "
                          "image size / the tower's patch size must equal the last scale")),
)

_WRAPPERS = ("ema", "model", "state_dict")


def read_checkpoint(source: str, release: Release | None) -> Original:
    """A TokenFlow checkpoint (file, folder holding it, or hub repo id with a preset's file name), unwrapped
    from ``ema`` (preferred, as the original loads it), ``model`` or ``state_dict``."""
    path = Path(source).expanduser()
    hub_id = None
    if path.is_dir():
        name = release.filename if release else None
        path = path / name if name and (path / name).is_file() else find_checkpoint(path)
    elif not path.is_file():
        if not is_repo_id(source):
            raise ConversionError(f"original checkpoint not found: {source}")
        if release is None:
            raise ConversionError(f"{source!r} holds several checkpoints: pass --preset NAME (its file) or a local file")
        from huggingface_hub import hf_hub_download

        try:
            path, hub_id = Path(hf_hub_download(source, release.filename)), source
        except Exception as err:
            raise ConversionError(f"could not fetch {release.filename} from hub repo {source!r}: {err}") from err
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_pickle(path)
    except UnreadablePickleError as err:
        raise ConversionError(str(err)) from None
    except Exception as err:
        raise ConversionError(f"could not read checkpoint {path}: {type(err).__name__}: {err}") from err
    if isinstance(state, dict):
        for key in _WRAPPERS:
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} does not hold a TokenFlow state dict (tensors, or 'ema'/'model'/'state_dict')")
    return Original(state, path, None, hub_id)


# -- keys ------------------------------------------------------------------------------------------
_CLIP_RENAMES = [
    (r"^conv1\.weight$", "embeddings.patch_embedding.weight"),
    (r"^class_embedding$", "embeddings.class_embedding"),
    (r"^positional_embedding$", "embeddings.position_embedding.weight"),
    (r"^ln_pre\.", "pre_layrnorm."), (r"^ln_post\.", "post_layernorm."),
    (r"^transformer\.resblocks\.(\d+)\.ln_1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^transformer\.resblocks\.(\d+)\.ln_2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"encoder.layers.\1.mlp.fc1."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"encoder.layers.\1.mlp.fc2."),
]
_CLIP_IN_PROJ = re.compile(r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$")
_VQKD_RENAMES = [
    (r"^patch_embed\.proj\.", "patch_embed."), (r"^fc_norm\.", "norm."),
    (r"^blocks\.(\d+)\.norm1\.", r"layers.\1.layer_norm1."), (r"^blocks\.(\d+)\.norm2\.", r"layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"layers.\1.self_attn.out_proj."),
    (r"^blocks\.(\d+)\.mlp\.", r"layers.\1.mlp."),
]
_VQKD_QKV = re.compile(r"^blocks\.(\d+)\.attn\.(qkv\.weight|q_bias|v_bias)$")


def _rename(key: str, renames) -> str:
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def _convert_clip(part: dict) -> dict:
    out = {}
    for key, value in part.items():
        match = _CLIP_IN_PROJ.match(key)
        if match:
            for name, chunk in zip("qkv", value.chunk(3, dim=0)):
                out[f"encoder.layers.{match[1]}.self_attn.{name}_proj.{match[2]}"] = chunk.contiguous()
        else:
            out[_rename(key, _CLIP_RENAMES)] = value
    return out


def _convert_vqkd_decoder(part: dict) -> dict:
    out, fused = {}, {}
    for key, value in part.items():
        match = _VQKD_QKV.match(key)
        if match:
            fused.setdefault(match[1], {})[match[2]] = value
        else:
            out[_rename(key, _VQKD_RENAMES)] = value
    for layer, parts in fused.items():
        if "qkv.weight" not in parts:
            raise ConversionError(f"missing key 'decoder_vqkd.blocks.{layer}.attn.qkv.weight' in the checkpoint")
        q, k, v = parts["qkv.weight"].chunk(3, dim=0)
        prefix = f"layers.{layer}.self_attn"
        out.update({f"{prefix}.q_proj.weight": q.contiguous(), f"{prefix}.k_proj.weight": k.contiguous(),
                    f"{prefix}.v_proj.weight": v.contiguous()})
        if "q_bias" in parts or "v_bias" in parts:
            if not {"q_bias", "v_bias"} <= set(parts):
                raise ConversionError(f"decoder_vqkd.blocks.{layer}.attn has only one of q_bias/v_bias")
            out[f"{prefix}.q_proj.bias"] = parts["q_bias"]
            out[f"{prefix}.k_proj.bias"] = torch.zeros_like(parts["q_bias"])
            out[f"{prefix}.v_proj.bias"] = parts["v_bias"]
    return out


def convert_state_dict(original: dict[str, torch.Tensor], teacher: str) -> dict[str, torch.Tensor]:
    """Original ``TokenFlow`` keys -> :class:`TokenFlowModel` keys (see the module docstring)."""
    groups: dict[str, dict] = {}
    for key, value in original.items():
        head, _, rest = key.partition(".")
        groups.setdefault(head, {})[rest] = value
    out = {}
    pixel = {k: v for k, v in original.items() if k.split(".")[0] in ("encoder", "decoder", "quant_conv", "post_quant_conv")}
    out.update(convert_vq_state_dict(pixel))
    tower = groups.pop("encoder_vqkd", {})
    if teacher == "clip":
        tower = _convert_clip(tower)
    else:  # transformers 4's SiglipVisionModel wrapped everything in vision_model
        tower = {k.removeprefix("vision_model."): v for k, v in tower.items()}
    out.update({f"semantic_encoder.{k}": v for k, v in tower.items()})
    out.update({f"semantic_decoder.{k}": v for k, v in _convert_vqkd_decoder(groups.pop("decoder_vqkd", {})).items()})
    out.update({f"semantic_in.{k}": v for k, v in groups.pop("encode_task_layer", {}).items()})
    out.update({f"semantic_out.{k}": v for k, v in groups.pop("decode_task_layer", {}).items()})
    out.update({f"quantizer.{k}": v for k, v in convert_tokenflow_quantizer_state_dict(original, "quantize.").items()})
    scaling = groups.pop("scaling_layer", {})
    if scaling:  # ScalingLayerForSigLip / ForClip constants; the model applies SigLIP's (0.5, 0.5) itself
        expected = {"shift": 0.5, "scale": 0.5} if teacher == "siglip" else None
        if expected is None or set(scaling) != set(expected) or any(
                not torch.allclose(scaling[k].float(), torch.full_like(scaling[k].float(), v)) for k, v in expected.items()):
            raise ConversionError("the checkpoint's scaling_layer constants are not SigLIP's (shift 0.5, scale 0.5): "
                                  "this input normalisation is not supported")
    for head in groups:
        if head not in ("encoder", "decoder", "quant_conv", "post_quant_conv", "quantize"):
            for rest in groups[head]:
                out[f"{head}.{rest}"] = original[f"{head}.{rest}"]  # unknown: load_converted names it
    return out


def _need(state: dict, key: str) -> torch.Tensor:
    if key not in state:
        raise ConversionError(f"missing key {key!r} in the checkpoint (not a TokenFlow tokenizer?)")
    return state[key]


def detect_teacher(state: dict) -> str:
    if "encoder_vqkd.conv1.weight" in state:
        return "clip"
    if any(k.startswith("encoder_vqkd.vision_model.") or k.startswith("encoder_vqkd.embeddings.") for k in state):
        return "siglip"
    raise ConversionError("cannot tell the semantic teacher from the checkpoint (no encoder_vqkd.conv1 (CLIP) or "
                          "encoder_vqkd.vision_model (SigLIP) keys): pass --teacher or --preset")


def _count(state: dict, pattern: str) -> int:
    return len({m[1] for k in state if (m := re.match(pattern, k))})


def infer_config(state: dict, teacher: str, patch_nums=None, image_size=None) -> dict:
    """:class:`TokenFlowConfig` kwargs from the checkpoint's shapes and the teacher's fixed settings."""
    settings = TEACHERS[teacher]
    if teacher == "clip":
        conv = _need(state, "encoder_vqkd.conv1.weight")
        width, patch = conv.shape[0], conv.shape[-1]
        grid = round((_need(state, "encoder_vqkd.positional_embedding").shape[0] - 1) ** 0.5)
        layers = _count(state, r"^encoder_vqkd\.transformer\.resblocks\.(\d+)\.")
        mlp = _need(state, "encoder_vqkd.transformer.resblocks.0.mlp.c_fc.weight").shape[0]
        tower = CLIPVisionConfig(hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers,
                                 num_attention_heads=max(1, width // settings["head_dim"]), image_size=patch * grid,
                                 patch_size=patch, hidden_act="quick_gelu", layer_norm_eps=1e-5).to_dict()
    else:
        prefix = "encoder_vqkd.vision_model." if any(k.startswith("encoder_vqkd.vision_model.") for k in state) else "encoder_vqkd."
        conv = _need(state, prefix + "embeddings.patch_embedding.weight")
        width, patch = conv.shape[0], conv.shape[-1]
        positions = _need(state, prefix + "embeddings.position_embedding.weight").shape[0]
        layers = _count(state, "^" + re.escape(prefix) + r"encoder\.layers\.(\d+)\.")
        mlp = _need(state, prefix + "encoder.layers.0.mlp.fc1.weight").shape[0]
        tower = SiglipVisionConfig(hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers,
                                   num_attention_heads=max(1, width // settings["head_dim"]),
                                   image_size=patch * round(positions ** 0.5), patch_size=patch,
                                   vision_use_head=any(k.startswith(prefix + "head.") for k in state)).to_dict()
    vq = {k: v for k, v in state.items() if k.split(".")[0] in ("encoder", "decoder")}
    enc_levels = _count(vq, r"^encoder\.conv_blocks\.(\d+)\.")
    ch = _need(state, "encoder.conv_in.weight").shape[0]
    mult = [_need(state, f"encoder.conv_blocks.{i}.res.0.conv1.weight").shape[0] // ch for i in range(enc_levels)]
    dec_top = _need(state, "decoder.conv_in.weight").shape[0]
    sem = _need(state, "quantize.embedding_vqkd.weight")
    pix = _need(state, "quantize.embedding_vqgan.weight")
    _, dec_pos, dec_width = _need(state, "decoder_vqkd.pos_embed").shape
    return dict(
        image_size=image_size or settings["image_size"], codebook_size=sem.shape[0], semantic_code_dim=sem.shape[1],
        pixel_code_dim=pix.shape[1], patch_nums=list(patch_nums or settings["patch_nums"]), semantic_encoder_type=teacher,
        semantic_encoder_config=tower, semantic_decoder_hidden_size=dec_width,
        semantic_decoder_num_layers=_count(state, r"^decoder_vqkd\.blocks\.(\d+)\."),
        semantic_decoder_num_heads=max(1, dec_width // 64),  # VQKD's 768 / 12 heads
        semantic_decoder_grid=round((dec_pos - 1) ** 0.5),
        semantic_feature_dim=_need(state, "decode_task_layer.2.weight").shape[0], pixel_channels=ch,
        pixel_channel_mult=mult, pixel_num_res_blocks=_count(state, r"^encoder\.conv_blocks\.0\.res\.(\d+)\."),
        pixel_z_channels=_need(state, "encoder.conv_out.weight").shape[0],
        decoder_channels=dec_top // mult[-1],
        decoder_num_res_blocks=_count(state, r"^decoder\.conv_blocks\.0\.res\.(\d+)\.") - 1,
    )


def build_model(state: dict, teacher: str | None = None, **overrides) -> TokenFlowModel:
    teacher = teacher or detect_teacher(state)
    try:
        config = TokenFlowConfig(**{**infer_config(state, teacher), **overrides})
    except ValueError as err:
        raise ConversionError(str(err)) from err
    return load_converted(TokenFlowModel, config, convert_state_dict(state, teacher), original=state)


def _parse_patch_nums(value) -> list[int] | None:
    if value is None:
        return None
    try:
        nums = [int(v) for v in (value.split(",") if isinstance(value, str) else value)]
    except (TypeError, ValueError):
        raise ConversionError(f"--patch-nums must be comma-separated positive integers, got {value!r}") from None
    if not nums or min(nums) < 1:
        raise ConversionError(f"--patch-nums must be comma-separated positive integers, got {value!r}")
    return nums


def convert(source: str, output: str, *, preset: str | None = None, teacher: str | None = None,
            patch_nums=None, image_size: int | None = None, overwrite: bool = False,
            push_to_hub: str | None = None) -> Path:
    """``vistok convert tokenflow``: a TokenFlow tokenizer checkpoint -> a tokenizer folder."""
    release = choose_release(preset, RELEASES, "TokenFlow tokenizer")
    state = read_checkpoint(source, release)
    teacher = teacher or (release.settings["teacher"] if release else None)
    overrides = {}
    if (nums := _parse_patch_nums(patch_nums)) is not None:
        overrides["patch_nums"] = nums
    if image_size is not None:
        overrides["image_size"] = image_size
    model = build_model(state, teacher, **overrides)
    base = state.hub_id or (release.hub_id if release else Path(source).name)
    card = render_card(model.config, release, base, card_repo_id(output, push_to_hub))
    return write_model_folder(output, model, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


def render_card(cfg: TokenFlowConfig, release: Release | None, base: str, repo_id: str) -> str:
    metadata = {"license": release.license if release else "apache-2.0", "library_name": "vistok",
                "tags": ["vistok", "image-tokenization", "tokenflow", "multi-scale", "unified-tokenizer"],
                "base_model": REPO if release else None}
    tower = cfg.semantic_encoder_config
    return render_model_card(
        "tokenflow", metadata=metadata, model_name=Path(repo_id).name, base_model=base,
        description=release.description if release else "", image_size=str(cfg.image_size), num_tokens=str(cfg.num_tokens),
        num_scales=str(cfg.num_scales), patch_nums=", ".join(map(str, cfg.patch_nums)), codebook_size=str(cfg.codebook_size),
        semantic_code_dim=str(cfg.semantic_code_dim), pixel_code_dim=str(cfg.pixel_code_dim), code_dim=str(cfg.code_dim),
        teacher=f"{type(tower).__name__} ({tower.num_hidden_layers} layers, width {tower.hidden_size}, patch {tower.patch_size})",
        repo_id=repo_id, metrics=metrics_table(release.metrics if release else []),
        license=metadata["license"])


# -- TokenFlow-t2i ---------------------------------------------------------------------------------
T2I_REPO = "ByteFlow-AI/TokenFlow-t2i"
T2I_RELEASES = {
    "t2i": Release(
        T2I_REPO, "TokenFlow-t2i: a 7B LLaVA-Llama that predicts the clipb-32k-enhanced tokenizer's 817 codes after "
        "the prompt (256 px; sampling: guidance 7.5, top-k 600, top-p 0.6, the released negative prompt).",
        None, license="apache-2.0", settings={"prompt_length": 128}, tokenizer="clipb-32k-enhanced",
        sampling={"guidance_scale": 7.5, "temperature": 1.0, "top_k": 600, "top_p": 0.6},
        metrics=[{"metric": "GenEval (overall)", "value": 0.55, "setting": "256 px", "source": _SOURCE}]),
}
T2I_CLI_OPTIONS = (
    ("--tokenizer", dict(required=True, metavar="SRC", help="the TokenFlow tokenizer: a converted vistok folder, or the "
                         "original tokenflow_clipb_32k_enhanced.pt (converted on the way)")),
    ("--prompt-length", dict(type=int, metavar="N", help="text tokens before <img> (the original's max_text_token_num; "
                             "128 in the release, the default)")),
)
_T2I_RENAMES = [(r"^model\.pos_1LC$", "model.position_embedding"), (r"^model\.lvl_embed\.", "model.level_embedding.")]
_T2I_DROPPED = re.compile(r"(rotary_emb\.inv_freq|^model\.vision_tower\.)")
VQ_TOKEN = "<vq_token_%d>"


def _t2i_folder(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if not is_repo_id(source):
        raise ConversionError(f"TokenFlow-t2i source not found: {source} (a release folder or the hub repo id)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "tokenizer.model", "*.md"]))
    except Exception as err:
        raise ConversionError(f"could not fetch {source!r}: {err}") from err


def _load_t2i_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ConversionError(f"no .safetensors weights in {folder}")
    state = {}
    for file in files:
        state.update(load_file(str(file)))
    return state


def _special_ids(folder: Path, codebook_size: int) -> dict:
    """``image_token_start`` (``<vq_token_0>``), ``[PAD]`` and ``<img>`` ids from the release's added_tokens.json
    (read as data)."""
    import json

    path = folder / "added_tokens.json"
    if not path.is_file():
        raise ConversionError(f"{folder} has no added_tokens.json (the ids of <vq_token_i>, [PAD] and <img>)")
    added = json.loads(path.read_text())
    missing = [t for t in (VQ_TOKEN % 0, VQ_TOKEN % (codebook_size - 1), "[PAD]", "<img>") if t not in added]
    if missing:
        raise ConversionError(f"added_tokens.json lacks {missing}")
    start = added[VQ_TOKEN % 0]
    if added[VQ_TOKEN % (codebook_size - 1)] != start + codebook_size - 1:
        raise ConversionError(f"the {codebook_size} <vq_token_i> ids are not contiguous from {start}")
    return {"image_token_start": start, "pad_token_id": added["[PAD]"], "image_start_token_id": added["<img>"]}


def convert_t2i_state_dict(original: dict) -> dict:
    return {rename_key(k, _T2I_RENAMES): v for k, v in original.items() if not _T2I_DROPPED.search(k)}


def build_t2i(folder: Path, image_tokenizer: TokenFlowModel, prompt_length: int = 128, sampling: dict | None = None):
    from .configuration_tokenflow import TokenFlowT2IConfig
    from .modeling_tokenflow import TokenFlowT2IForCausalLM

    original = load_config_file(folder / "config.json")
    state = _load_t2i_weights(folder)
    tok = image_tokenizer.config
    ids = _special_ids(folder, tok.codebook_size)
    head = _need(state, "lm_head.weight")
    mm_hidden = original.get("mm_hidden_size", tok.code_dim)
    if mm_hidden != tok.code_dim:
        raise ConversionError(f"the t2i model reads {mm_hidden}-wide codes; the tokenizer's are {tok.code_dim}-wide")
    rope = original.get("rope_theta", (original.get("rope_parameters") or {}).get("rope_theta", 10000.0))
    try:
        config = TokenFlowT2IConfig(
            vocab_size=head.shape[0], hidden_size=head.shape[1], intermediate_size=original["intermediate_size"],
            num_hidden_layers=original["num_hidden_layers"], num_attention_heads=original["num_attention_heads"],
            num_key_value_heads=original.get("num_key_value_heads", original["num_attention_heads"]),
            rms_norm_eps=original.get("rms_norm_eps", 1e-6), rope_theta=rope,
            max_position_embeddings=original.get("max_position_embeddings", 4096),
            bos_token_id=original.get("bos_token_id", 1), eos_token_id=original.get("eos_token_id", 2),
            codebook_size=tok.codebook_size, patch_nums=list(tok.patch_nums), code_dim=tok.code_dim,
            projector_type=original.get("mm_projector_type", "linear"), prompt_length=prompt_length,
            sampling_defaults=sampling, **ids)
    except (KeyError, ValueError, TypeError) as err:
        raise ConversionError(f"{folder / 'config.json'}: {err}") from err
    return load_converted(TokenFlowT2IForCausalLM, config, convert_t2i_state_dict(state), original=state)


def _text_tokenizer(folder: Path):
    """The release's text tokenizer (its ``tokenizer.model`` SentencePiece Llama tokenizer with the added tokens;
    transformers reads it with ``sentencepiece`` and ``protobuf`` and the pipeline folder then stores it as
    ``tokenizer.json``), or None (the pipeline then takes ``prompt_ids``)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # no tokenizer files, or sentencepiece / protobuf missing
        if (folder / "tokenizer.model").is_file() or (folder / "tokenizer.json").is_file():
            logger.warning("the text tokenizer of %s did not load (%s: %s); the converted pipeline has none and takes "
                           "prompt_ids", folder, type(err).__name__, err)
        return None


def convert_t2i(source: str, output: str, *, tokenizer: str, preset: str | None = None, prompt_length: int | None = None,
                overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """``vistok convert tokenflow-t2i``: a TokenFlow-t2i release folder (or repo id) and its TokenFlow tokenizer
    -> a ``TokenFlowTextToImagePipeline`` folder."""
    from ...pipelines import TokenFlowTextToImagePipeline

    release = choose_release(preset, T2I_RELEASES, "TokenFlow-t2i")
    folder = _t2i_folder(source)
    tok_path = Path(tokenizer).expanduser()
    if tok_path.is_dir() and (tok_path / "config.json").is_file():
        image_tokenizer = TokenFlowModel.from_pretrained(tok_path).eval()
    else:
        tok_release = RELEASES.get(release.tokenizer) if release else None
        image_tokenizer = build_model(read_checkpoint(tokenizer, tok_release),
                                      tok_release.settings["teacher"] if tok_release else None)
    length = prompt_length or (release.settings["prompt_length"] if release else 128)
    transformer = build_t2i(folder, image_tokenizer, length, release.sampling if release else None)
    pipe = TokenFlowTextToImagePipeline(image_tokenizer=image_tokenizer, transformer=transformer,
                                        tokenizer=_text_tokenizer(folder))
    card = render_t2i_card(transformer.config, image_tokenizer.config, release, source, card_repo_id(output, push_to_hub),
                           pipe.tokenizer is not None)
    return write_model_folder(output, pipe, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


def render_t2i_card(cfg, tok_cfg, release: Release | None, base: str, repo_id: str, has_tokenizer: bool) -> str:
    metadata = {"license": release.license if release else "apache-2.0", "library_name": "vistok",
                "pipeline_tag": "text-to-image", "tags": ["vistok", "tokenflow", "text-to-image", "next-scale-prediction"],
                "base_model": T2I_REPO if release else None}
    sampling = "\n".join(f"| `{k}` | {v} |" for k, v in cfg.sampling_defaults.items())
    return render_model_card(
        "tokenflow-t2i", metadata=metadata, model_name=Path(repo_id).name, base_model=base,
        description=release.description if release else "", layers=str(cfg.num_hidden_layers),
        hidden_size=str(cfg.hidden_size), heads=str(cfg.num_attention_heads), vocab=str(cfg.vocab_size),
        codebook_size=str(cfg.codebook_size), image_token_start=str(cfg.image_token_start),
        image_size=str(tok_cfg.image_size), num_tokens=str(cfg.num_tokens), num_scales=str(cfg.num_scales),
        prompt_length=str(cfg.prompt_length), sampling=sampling, repo_id=repo_id,
        tokenizer_note="" if has_tokenizer else ("\nThis folder has no text tokenizer (it could not be loaded at "
                                                  "conversion): pass `prompt_ids` or load the pipeline with `tokenizer=`."),
        metrics=metrics_table(release.metrics if release else []), license=metadata["license"])
