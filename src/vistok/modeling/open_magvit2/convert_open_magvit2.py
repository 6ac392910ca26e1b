"""Convert TencentARC/SEED-Voken Open-MAGVIT2 checkpoints: the LFQ tokenizers (``imagenet_256_L.ckpt``,
``imagenet_128_L.ckpt``, ``pretrain256_*.ckpt``) to vistok tokenizer folders, and the factorized AR generators
(``AR_256_{B,L,XL}.ckpt``) to pipeline folders with their tokenizer.

The releases are Lightning ``.ckpt`` pickles read with ``torch.load(weights_only=True)``; their ``state_dict``
holds the tokenizer's ``encoder.*``/``decoder.*`` weights, the training losses' ``loss.*`` (discriminator,
LPIPS: dropped) and ``model_ema.*``, LitEma's copy of every parameter named without its dots. The original
evaluates its tokenizers inside ``ema_scope`` (``use_ema: True`` in every released config), so the EMA
weights are converted when the checkpoint has them (``--no-ema``: the raw weights). An AR checkpoint holds
``transformer.*`` and the tokenizer it decodes with as ``first_stage_model.*`` (the raw, non-EMA weights the
original loads with ``use_ema: False``); ``--tokenizer`` replaces that copy.

Shapes give every width and depth; the image size (what nothing in the files records) comes from a release
preset or ``--image-size``; the generator's head count from the original size table or ``--num-heads``.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import torch

from ...conversion import (ConversionError, Release, card_repo_id, choose_release, converted_config, count_numbered, grid_num_tokens,
                           hub_base, llama_block_renames, llama_heads, load_converted, load_model_folder, numbered, read_original,
                           release_image_size, rename_key, write_model_folder)
from ...hub.cards import metrics_table, render_model_card
from ..layers.conv_autoencoder import taming_conv_autoencoder_key
from .configuration_open_magvit2 import (AR_PRESETS, IBQ_AR_PRESETS, IBQ_DEFAULT_SAMPLING, IBQARConfig, IBQConfig, OpenMagvit2ARConfig,
                                         OpenMagvit2Config)
from .modeling_open_magvit2 import IBQARTransformer, IBQModel, OpenMagvit2ARTransformer, OpenMagvit2Model

logger = logging.getLogger(__name__)

_DOCS = "TencentARC/SEED-Voken docs/Open-MAGVIT2.md"


def _metric(name, value, setting):
    return [{"metric": name, "value": value, "setting": setting, "source": _DOCS}]


def _tok(repo, description, filename, px, metrics):
    return Release(repo, description, filename, settings={"image_size": px}, metrics=metrics)


TOKENIZER_RELEASES = {
    "in-256": _tok("TencentARC/Open-MAGVIT2-Tokenizer-256-resolution", "ImageNet tokenizer at 256 px: 16x16 tokens, 2^18 LFQ codes.",
                   "imagenet_256_L.ckpt", 256, _metric("rFID (ImageNet val)", 1.17, "256 px, 16x16 tokens")
                   + _metric("PSNR (ImageNet val)", 21.90, "256 px")),
    "in-128": _tok("TencentARC/Open-MAGVIT2-Tokenizer-128-resolution", "ImageNet tokenizer at 128 px: 16x16 tokens, 2^18 LFQ codes.",
                   "imagenet_128_L.ckpt", 128, _metric("rFID (ImageNet val)", 1.18, "128 px, 16x16 tokens")
                   + _metric("PSNR (ImageNet val)", 25.08, "128 px")),
    "pretrain-16384": _tok("TencentARC/Open-MAGVIT2-Tokenizer-16384-Pretrain", "Tokenizer pretrained on large-scale data: 2^14 LFQ codes.",
                           "pretrain256_16384.ckpt", 256, _metric("rFID (ImageNet val)", 2.55, "256 px")
                           + _metric("rFID (COCO val)", 7.93, "256 px")),
    "pretrain-262144": _tok("TencentARC/Open-MAGVIT2-Tokenizer-262144-Pretrain", "Tokenizer pretrained on large-scale data: 2^18 LFQ codes.",
                            "pretrain256_262144.ckpt", 256, _metric("rFID (ImageNet val)", 1.67, "256 px") + _metric("rFID (COCO val)", 6.76, "256 px")),
}


def _sampling(temperature, guidance):
    """scripts/evaluation/sample_gpu.sh: top-k 0, top-p 1 for both sub-tokens."""
    return {"guidance_scale": guidance, "temperature": temperature, "top_k": [0, 0], "top_p": [1.0, 1.0]}


def _ar(size, fid, inception, sampling):
    return Release(f"TencentARC/Open-MAGVIT2-AR-{size}-256-resolution", f"Open-MAGVIT2-AR-{size}, class-conditional ImageNet at 256 px.",
                   f"AR_256_{size}.ckpt", settings={"image_size": 256, "size": f"AR-{size}"}, tokenizer="in-256", sampling=sampling,
                   metrics=_metric("FID-50k (ImageNet 256)", fid, "released sampling settings")
                   + _metric("IS (ImageNet 256)", inception, "released sampling settings"))


AR_RELEASES = {
    "ar-b-256": _ar("B", 3.08, 258.26, _sampling([1.0, 1.0], [1.9, 2.0])),
    "ar-l-256": _ar("L", 2.51, 271.70, _sampling([1.1, 1.0], [1.9, 1.9])),
    "ar-xl-256": _ar("XL", 2.33, 271.77, _sampling([1.1, 1.0], [1.75, 1.85])),
}


# -- tokenizer -------------------------------------------------------------------------------------
def _need(state, key, what):
    if key not in state:
        raise ConversionError(f"missing key {key!r} in the {what} checkpoint (not an Open-MAGVIT2 model?)")
    return state[key]


def infer_tokenizer_config(state: dict, image_size: int, prefix: str = "") -> dict:
    """The tokenizer config from the raw ``encoder.*`` weights' shapes (EMA copies have the same shapes)."""
    what = "tokenizer"
    conv_in = _need(state, f"{prefix}encoder.conv_in.weight", what)
    ch = conv_in.shape[0]
    levels = numbered(state, rf"^{re.escape(prefix)}encoder\.down\.(\d+)\.")
    if not levels:
        raise ConversionError(f"no {prefix}encoder.down.* keys in the {what} checkpoint (not an Open-MAGVIT2 model?)")
    mult = [_need(state, f"{prefix}encoder.down.{i}.block.0.conv1.weight", what).shape[0] // ch for i in levels]
    blocks = count_numbered(state, rf"^{re.escape(prefix)}encoder\.down\.0\.block\.(\d+)\.")
    bits = _need(state, f"{prefix}encoder.conv_out.weight", what).shape[0]
    factorized = [6, 12] if bits == 18 else None  # the generators' view of the 2^18 tokenizers
    return dict(image_size=image_size, num_bits=bits, hidden_channels=ch, channel_mult=mult, num_res_blocks=blocks,
                factorized_bits=factorized)


def _use_ema(state: dict, ema: bool | None) -> bool:
    """Whether a tokenizer's LitEma copies (``model_ema.*``) are converted: ``ema``, by default when the checkpoint
    has them (as the original evaluates)."""
    has_ema = any(k.startswith("model_ema.") for k in state)
    if ema and not has_ema:
        raise ConversionError("the checkpoint has no EMA weights (model_ema.*): convert without --ema")
    return has_ema if ema is None else ema


def tokenizer_state_dict(state: dict, config: OpenMagvit2Config, ema: bool | None, prefix: str = "") -> tuple[dict, set]:
    """(the vistok tokenizer's weights, the original keys left over). vistok's module names are the original's, so
    a raw key is ``prefix + name`` and its EMA copy ``model_ema.`` + the name without dots."""
    with torch.device("meta"):
        names = list(OpenMagvit2Model(config).state_dict())
    use_ema = _use_ema(state, ema)
    converted, missing = {}, []
    for name in names:
        key = f"model_ema.{name.replace('.', '')}" if use_ema else f"{prefix}{name}"
        if key in state:
            converted[name] = state[key]
        else:
            missing.append(key)
    if missing:
        raise ConversionError(f"missing keys in the tokenizer checkpoint: {missing[:10]}" + (" (EMA copies; --no-ema converts the raw "
                              "weights)" if use_ema else ""))
    used = {f"{prefix}{n}" for n in names}
    ignored = ("model_ema.", "loss.", "quantize.", f"{prefix}quantize.")
    leftover = {k for k in state if k not in used and not k.startswith(ignored)}
    return converted, leftover


def build_tokenizer(state: dict, image_size: int, ema: bool | None = None, prefix: str = "", strict: bool = True) -> OpenMagvit2Model:
    config = converted_config(OpenMagvit2Config, **infer_tokenizer_config(state, image_size, prefix))
    converted, leftover = tokenizer_state_dict(state, config, ema, prefix)
    return load_converted(OpenMagvit2Model, config, converted, leftover if strict else (), original=state)


def _image_size(image_size, release, kind) -> int:
    return release_image_size(image_size, release, kind, "256 or 128")


def convert_tokenizer(source: str, output: str, *, preset: str | None = None, image_size: int | None = None,
                      ema: bool | None = None, overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """An Open-MAGVIT2 tokenizer checkpoint -> a vistok tokenizer folder (weights, config, image processor, card).
    ``ema``: None converts the EMA weights when the checkpoint has them (as the original evaluates), False the raw ones."""
    release = choose_release(preset, TOKENIZER_RELEASES, "Open-MAGVIT2 tokenizer")
    size = _image_size(image_size if image_size is not None else (None if release else 256), release, "tokenizer")
    state = read_original(source, release, several_per_repo=release is None)
    model = build_tokenizer(state, size, ema)
    base = release.hub_id if release else Path(source).name
    card = render_tokenizer_card(model.config, release, base, card_repo_id(output, push_to_hub))
    return write_model_folder(output, model, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


# -- generator -------------------------------------------------------------------------------------
_AR_RENAMES = [
    (r"^pre_emb\.", "pre_embed."),
    (r"^post_emb\.", "post_embed."),
    (r"^class_emb\.embedding_table\.", "class_embed."),
    *llama_block_renames(r"(spatial|factorized)_blocks\.(\d+)", r"\1_layers.\2"),
    (r"^head\.(\d+)\.", r"heads.\1."),
]


def convert_ar_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The AR checkpoint's ``transformer.*`` keys -> vistok OpenMagvit2ARTransformer keys (KV-cache buffers a
    checkpoint saved after sampling holds are dropped)."""
    out = {}
    for key, value in original.items():
        if not key.startswith("transformer.") or ".kv_cache." in key:
            continue
        out[rename_key(key[len("transformer."):], _AR_RENAMES)] = value
    return out


def infer_ar_config(state: dict, num_tokens: int, num_heads: int | None) -> dict:
    for key in ("pre_embed.weight", "post_embed.weight", "class_embed.weight", "spatial_layers.0.self_attn.wqkv.weight"):
        if key not in state:
            raise ConversionError("missing key 'transformer.pre_emb.weight' / 'transformer.post_emb.weight' / "
                                  "'transformer.class_emb.embedding_table.weight' / 'transformer.spatial_blocks.0.attention.wqkv.weight' "
                                  "(not an Open-MAGVIT2 AR checkpoint?)")
    pre, dim = state["pre_embed.weight"].shape
    post = state["post_embed.weight"].shape[0]
    bits = [int(pre).bit_length() - 1, int(post).bit_length() - 1]
    if 2 ** bits[0] != pre or 2 ** bits[1] != post:
        raise ConversionError(f"sub-token vocabularies must be powers of two, got {pre} and {post}")
    spatial = count_numbered(state, r"^spatial_layers\.(\d+)\.")
    factorized = count_numbered(state, r"^factorized_layers\.(\d+)\.")
    num_heads, kv_heads = llama_heads(AR_PRESETS, dim, spatial, num_heads, state["spatial_layers.0.self_attn.wqkv.weight"].shape[0])
    rows = state["class_embed.weight"].shape[0]
    # LabelEmbedder always has the null-class row (dropout_prob 0.1): num_classes = rows - 1
    return dict(factorized_bits=bits, num_tokens=num_tokens, hidden_size=dim, num_hidden_layers=spatial,
                num_factorized_layers=factorized, num_attention_heads=num_heads, num_key_value_heads=kv_heads,
                intermediate_size=state["spatial_layers.0.mlp.gate_proj.weight"].shape[0], num_classes=rows - 1)


def build_ar(state: dict, num_tokens: int, num_heads: int | None = None, sampling: dict | None = None) -> OpenMagvit2ARTransformer:
    converted = convert_ar_state_dict(state)
    config = converted_config(OpenMagvit2ARConfig, **infer_ar_config(converted, num_tokens, num_heads), sampling_defaults=sampling)
    return load_converted(OpenMagvit2ARTransformer, config, converted, original=state)


def _external_tokenizer(tokenizer: str, release: Release | None, image_size: int, ema: bool | None) -> OpenMagvit2Model:
    model = load_model_folder(tokenizer, OpenMagvit2Model, "not an Open-MAGVIT2 tokenizer")
    if model is not None:
        return model
    tok_release = TOKENIZER_RELEASES.get(release.tokenizer) if release is not None and release.tokenizer else None
    return build_tokenizer(read_original(tokenizer, tok_release), image_size, ema)


def _choose_tokenizer(given, embedded, tokenizer: str | None, source: str):
    """The tokenizer a generator is converted with: the one ``--tokenizer`` gave (a warning when its weights differ
    from the checkpoint's own copy), else the checkpoint's ``first_stage_model`` copy."""
    if given is not None:
        if embedded is not None:
            ours, theirs = given.state_dict(), embedded.state_dict()
            if ours.keys() != theirs.keys() or any(not torch.equal(ours[k], theirs[k]) for k in ours):
                logger.warning("--tokenizer %s differs from the tokenizer copy inside %s; using --tokenizer", tokenizer, source)
        return given
    if embedded is None:
        raise ConversionError(f"{source} holds no tokenizer (first_stage_model.*): pass --tokenizer")
    return embedded


def convert_ar(source: str, output: str, *, tokenizer: str | None = None, preset: str | None = None,
               image_size: int | None = None, num_heads: int | None = None, ema: bool | None = None,
               overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """An Open-MAGVIT2 AR checkpoint -> a FactorizedAutoregressiveImagePipeline folder. The tokenizer is the
    checkpoint's own ``first_stage_model`` copy (what the original decodes with) unless ``tokenizer`` (a converted
    folder or an original tokenizer checkpoint) replaces it; a replacement whose weights differ is reported."""
    from ...pipelines import FactorizedAutoregressiveImagePipeline

    release = choose_release(preset, AR_RELEASES, "Open-MAGVIT2 generator")
    size = _image_size(image_size, release, "generator")
    state = read_original(source, release, several_per_repo=True)
    embedded = None
    if any(k.startswith("first_stage_model.encoder.") for k in state):
        embedded = build_tokenizer(state, size, ema=False, prefix="first_stage_model.", strict=False)
    given = _external_tokenizer(tokenizer, release, size, ema) if tokenizer is not None else None
    tok = _choose_tokenizer(given, embedded, tokenizer, source)
    transformer = build_ar(state, grid_num_tokens(size, tok), num_heads, release.sampling if release else None)
    if transformer.config.codebook_size != tok.config.codebook_size:
        raise ConversionError(f"the generator's sub-tokens {transformer.config.factorized_bits} make {transformer.config.codebook_size} "
                              f"codes but the tokenizer has {tok.config.codebook_size}")
    tok.config.image_size = size
    tok.config.num_tokens = transformer.config.num_tokens
    tok.config.factorized_bits = list(transformer.config.factorized_bits)
    pipeline = FactorizedAutoregressiveImagePipeline(image_tokenizer=tok, transformer=transformer)
    base = release.hub_id if release else Path(source).name
    card = render_ar_card(transformer.config, tok.config, release, base, card_repo_id(output, push_to_hub))
    return write_model_folder(output, pipeline, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


_EMA_FLAG = ("--ema", dict(action=argparse.BooleanOptionalAction, default=None,
                           help="--ema requires the EMA weights (model_ema.*), --no-ema converts the raw ones; by default the EMA "
                                "weights when the checkpoint has them, as the original evaluates"))
TOKENIZER_CLI_OPTIONS = (
    ("--image-size", dict(type=int, metavar="PX", help="default image size of the tokenizer (its processor's); 256 unless the preset says otherwise")),
    _EMA_FLAG,
)
AR_CLI_OPTIONS = (
    ("--tokenizer", dict(metavar="SRC", help="replace the checkpoint's own tokenizer copy: a converted vistok folder or an original "
                                            "tokenizer .ckpt (its EMA weights unless --no-ema)")),
    ("--image-size", dict(type=int, metavar="PX", help="the image size the generator was trained at (256); the grid is size / the "
                                                      "tokenizer's downsampling")),
    ("--num-heads", dict(type=int, metavar="N", help="attention heads, for a width/depth not in the original size table")),
    _EMA_FLAG,
)


# -- IBQ tokenizer ---------------------------------------------------------------------------------
_IBQ_DOCS = "TencentARC/SEED-Voken docs/IBQ.md"


def _ibq(codes, rfid, usage):
    return Release(f"TencentARC/IBQ-Tokenizer-{codes}", f"IBQ ImageNet tokenizer at 256 px: 16x16 tokens, {codes} codes of 256 dims "
                   f"({usage} codebook usage).", f"imagenet256_{codes}.ckpt", settings={"image_size": 256},
                   metrics=[{"metric": "rFID (ImageNet val)", "value": rfid, "setting": "256 px, 16x16 tokens", "source": _IBQ_DOCS}])


IBQ_RELEASES = {
    "ibq-1024": _ibq(1024, 2.24, "99%"), "ibq-8192": _ibq(8192, 1.87, "98%"), "ibq-16384": _ibq(16384, 1.37, "96%"),
    "ibq-262144": _ibq(262144, 1.00, "84%"),
    "ibq-pretrain-16384": Release("TencentARC/IBQ-Tokenizer-16384-Pretrain", "IBQ tokenizer pretrained on large-scale data: 16384 codes.",
                                  "IBQ_pretrain_16384.ckpt", settings={"image_size": 256},
                                  metrics=[{"metric": "rFID (ImageNet val)", "value": 2.06, "setting": "256 px", "source": _IBQ_DOCS},
                                           {"metric": "rFID (COCO val)", "value": 7.67, "setting": "256 px", "source": _IBQ_DOCS}]),
    "ibq-pretrain-262144": Release("TencentARC/IBQ-Tokenizer-262144-Pretrain", "IBQ tokenizer pretrained on large-scale data: 262144 codes.",
                                   "IBQ_pretrain_262144.ckpt", settings={"image_size": 256},
                                   metrics=[{"metric": "rFID (ImageNet val)", "value": 1.53, "setting": "256 px", "source": _IBQ_DOCS},
                                            {"metric": "rFID (COCO val)", "value": 6.79, "setting": "256 px", "source": _IBQ_DOCS}]),
}
_IBQ_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.embedding.")
_IBQ_QKV = re.compile(r"^(.*\.(?:attentions\.\d+|mid\.attention))\.(q|k|v)\.(weight|bias)$")


def ibq_weights(state: dict, ema: bool | None) -> dict:
    """The tokenizer's weights under their original names: the raw ones, or their LitEma copies
    (``model_ema.<name without dots>``; the default when the checkpoint has them, as the original evaluates)."""
    names = [k for k in state if k.startswith(_IBQ_PARTS)]
    if not names:
        raise ConversionError("no encoder.* / decoder.* / quantize.embedding.* keys in the checkpoint (not an IBQ tokenizer?)")
    if not _use_ema(state, ema):
        return {k: state[k] for k in names}
    missing = [f"model_ema.{k.replace('.', '')}" for k in names if f"model_ema.{k.replace('.', '')}" not in state]
    if missing:
        raise ConversionError(f"missing EMA copies in the checkpoint: {missing[:10]} (--no-ema converts the raw weights)")
    return {k: state[f"model_ema.{k.replace('.', '')}"] for k in names}


def convert_ibq_state_dict(weights: dict, num_levels: int) -> dict:
    """Original IBQ keys -> vistok IBQModel keys; the attention blocks' separate q/k/v 1x1 convs are concatenated
    (in that order) into the fused ``qkv`` conv."""
    out, qkv = {}, {}
    for key, value in weights.items():
        if key.startswith("quantize."):
            key = "quantizer." + key[len("quantize."):]
        elif key.startswith(("encoder.", "decoder.")):
            part, rest = key.split(".", 1)
            key = f"{part}.{taming_conv_autoencoder_key(rest, num_levels)}"
        match = _IBQ_QKV.match(key)
        if match:
            qkv.setdefault((match[1], match[3]), {})[match[2]] = value
        else:
            out[key] = value
    for (prefix, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ConversionError(f"attention {prefix!r} lacks some of its q/k/v {kind} in the checkpoint")
        out[f"{prefix}.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def infer_ibq_config(weights: dict, image_size: int) -> dict:
    what = "IBQ tokenizer"
    ch = _need(weights, "encoder.conv_in.weight", what).shape[0]
    levels = numbered(weights, r"^encoder\.down\.(\d+)\.")
    mult = [_need(weights, f"encoder.down.{i}.block.0.conv1.weight", what).shape[0] // ch for i in levels]
    blocks = count_numbered(weights, r"^encoder\.down\.0\.block\.(\d+)\.")
    attention = numbered(weights, r"^encoder\.down\.(\d+)\.attn\.")
    codebook = _need(weights, "quantize.embedding.weight", what)
    return dict(image_size=image_size, codebook_size=codebook.shape[0], token_dim=codebook.shape[1],
                z_channels=_need(weights, "encoder.conv_out.weight", what).shape[0], hidden_channels=ch, channel_mult=mult,
                num_res_blocks=blocks, attention_levels=attention)


def build_ibq(state: dict, image_size: int, ema: bool | None = None) -> IBQModel:
    weights = ibq_weights(state, ema)
    config = converted_config(IBQConfig, **infer_ibq_config(weights, image_size))
    converted = convert_ibq_state_dict(weights, len(config.channel_mult))
    return load_converted(IBQModel, config, converted, original=state)


def convert_ibq(source: str, output: str, *, preset: str | None = None, image_size: int | None = None,
                ema: bool | None = None, overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """An IBQ tokenizer checkpoint (``imagenet256_*.ckpt``, ``IBQ_pretrain_*.ckpt``) -> a vistok tokenizer folder."""
    release = choose_release(preset, IBQ_RELEASES, "IBQ tokenizer")
    size = _image_size(image_size if image_size is not None else (None if release else 256), release, "tokenizer")
    state = read_original(source, release, several_per_repo=release is None)
    model = build_ibq(state, size, ema)
    base = release.hub_id if release else Path(source).name
    cfg = model.config
    grid = cfg.image_size // cfg.downsample_factor
    metadata = {"license": "apache-2.0", "library_name": "vistok", "tags": ["vistok", "image-tokenization", "ibq", "2d-tokenizer"],
                "base_model": hub_base(base)}
    repo_id = card_repo_id(output, push_to_hub)
    card = render_model_card(
        "ibq", metadata=metadata, model_name=Path(repo_id).name, base_model=base, description=release.description if release else "",
        factor=str(cfg.downsample_factor), image_size=str(cfg.image_size), grid=f"{grid}x{grid}",
        codebook=f"{cfg.codebook_size} x {cfg.token_dim}", hidden=str(cfg.hidden_channels), mult=str(cfg.channel_mult),
        z_channels=str(cfg.z_channels), repo_id=repo_id, metrics=metrics_table(release.metrics if release else []))
    return write_model_folder(output, model, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


# -- IBQ generator ---------------------------------------------------------------------------------
def _ibq_ar(size, params, fid, inception, temperature, guidance):
    return Release(f"TencentARC/IBQ-AR-{size}", f"IBQ-AR-{size} ({params}), class-conditional ImageNet at 256 px.", f"AR_256_{size}.ckpt",
                   settings={"image_size": 256}, tokenizer="ibq-16384",
                   sampling={**IBQ_DEFAULT_SAMPLING, "temperature": temperature, "guidance_scale": guidance},
                   metrics=[{"metric": "FID-50k (ImageNet 256)", "value": fid, "setting": "released sampling settings", "source": _IBQ_DOCS},
                            {"metric": "IS (ImageNet 256)", "value": inception, "setting": "released sampling settings", "source": _IBQ_DOCS}])


IBQ_AR_RELEASES = {
    "ibq-ar-b-256": _ibq_ar("B", "342M", 2.88, 254.73, 1.1, 2.25), "ibq-ar-l-256": _ibq_ar("L", "649M", 2.45, 267.48, 1.0, 2.0),
    "ibq-ar-xl-256": _ibq_ar("XL", "1.1B", 2.14, 278.99, 1.15, 2.35), "ibq-ar-xxl-256": _ibq_ar("XXL", "2.1B", 2.05, 286.73, 1.2, 2.85),
}
_IBQ_AR_RENAMES = [
    (r"^tok_emb\.", "embed_tokens."),
    (r"^class_emb\.embedding_table\.", "class_embed."),
    *llama_block_renames(r"blocks\.(\d+)", r"layers.\1"),
    (r"^blocks\.(\d+)\.ada_lin\.1\.", r"layers.\1.adaln."),
    (r"^head_nm\.rmsnorm\.", "head_norm."),
    (r"^head_nm\.ada_lin\.1\.", "head_adaln."),
    (r"^head\.", "lm_head."),
]


def convert_ibq_ar_state_dict(original: dict) -> dict:
    """The AR checkpoint's ``transformer.*`` keys -> vistok IBQARTransformer keys (KV-cache buffers dropped)."""
    out = {}
    for key, value in original.items():
        if not key.startswith("transformer.") or ".kv_cache." in key:
            continue
        key = key[len("transformer."):]
        if key.startswith(("shared_ada_lin.", "embedding_projection.")) or key.endswith(".ada_gss"):
            raise ConversionError(f"{key!r}: shared adaLN / pretrained-codebook IBQ generators are not supported (no release uses them)")
        out[rename_key(key, _IBQ_AR_RENAMES)] = value
    return out


def build_ibq_ar(state: dict, num_tokens: int, num_heads: int | None = None, sampling: dict | None = None) -> IBQARTransformer:
    converted = convert_ibq_ar_state_dict(state)
    for key in ("embed_tokens.weight", "class_embed.weight", "layers.0.self_attn.wqkv.weight"):
        if key not in converted:
            raise ConversionError("missing key 'transformer.tok_emb.weight' / 'transformer.class_emb.embedding_table.weight' / "
                                  "'transformer.blocks.0.attention.wqkv.weight' (not an IBQ AR checkpoint?)")
    codebook, dim = converted["embed_tokens.weight"].shape
    layers = count_numbered(converted, r"^layers\.(\d+)\.")
    num_heads, kv_heads = llama_heads(IBQ_AR_PRESETS, dim, layers, num_heads, converted["layers.0.self_attn.wqkv.weight"].shape[0])
    config = converted_config(IBQARConfig, codebook_size=codebook, num_tokens=num_tokens, hidden_size=dim, num_hidden_layers=layers,
                              num_attention_heads=num_heads, num_key_value_heads=kv_heads,
                              intermediate_size=converted["layers.0.mlp.gate_proj.weight"].shape[0],
                              num_classes=converted["class_embed.weight"].shape[0] - 1, sampling_defaults=sampling)
    return load_converted(IBQARTransformer, config, converted, original=state)


def convert_ibq_ar(source: str, output: str, *, tokenizer: str | None = None, preset: str | None = None, image_size: int | None = None,
                   num_heads: int | None = None, ema: bool | None = None, overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """An IBQ AR checkpoint -> an AutoregressiveImagePipeline folder, with the checkpoint's own tokenizer copy
    (``first_stage_model.*``, the weights the original decodes with) unless ``tokenizer`` replaces it."""
    from ...pipelines import AutoregressiveImagePipeline

    release = choose_release(preset, IBQ_AR_RELEASES, "IBQ generator")
    size = _image_size(image_size, release, "generator")
    state = read_original(source, release, several_per_repo=True)
    prefix = "first_stage_model."
    embedded = None
    if any(k.startswith(prefix + "encoder.") for k in state):
        embedded = build_ibq({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, size, ema=False)
    given = None
    if tokenizer is not None:
        given = load_model_folder(tokenizer, IBQModel, "not an IBQ tokenizer")
        if given is None:
            tok_release = IBQ_RELEASES.get(release.tokenizer) if release is not None else None
            given = build_ibq(read_original(tokenizer, tok_release), size, ema)
    tok = _choose_tokenizer(given, embedded, tokenizer, source)
    transformer = build_ibq_ar(state, grid_num_tokens(size, tok), num_heads, release.sampling if release else None)
    if transformer.config.codebook_size != tok.config.codebook_size:
        raise ConversionError(f"the generator predicts {transformer.config.codebook_size} codes but the tokenizer has {tok.config.codebook_size}")
    tok.config.image_size, tok.config.num_tokens = size, transformer.config.num_tokens
    pipeline = AutoregressiveImagePipeline(image_tokenizer=tok, transformer=transformer)
    base = release.hub_id if release else Path(source).name
    cfg = transformer.config
    repo_id = card_repo_id(output, push_to_hub)
    metadata = {"license": "apache-2.0", "library_name": "vistok", "pipeline_tag": "unconditional-image-generation",
                "tags": ["vistok", "ibq", "autoregressive", "class-conditional"], "base_model": hub_base(base)}
    card = render_model_card(
        "ibq-ar", metadata=metadata, model_name=Path(repo_id).name, base_model=base, description=release.description if release else "",
        hidden_size=str(cfg.hidden_size), num_hidden_layers=str(cfg.num_hidden_layers), num_heads=str(cfg.num_attention_heads),
        num_classes=str(cfg.num_classes), tokens=f"{cfg.grid_size}x{cfg.grid_size} = {cfg.num_tokens}",
        codebook_size=str(cfg.codebook_size), image_size=str(size), repo_id=repo_id,
        sampling="\n".join(f"| `{k}` | {v} |" for k, v in cfg.sampling_defaults.items()),
        metrics=metrics_table(release.metrics if release else []))
    return write_model_folder(output, pipeline, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


IBQ_AR_CLI_OPTIONS = (
    ("--tokenizer", dict(metavar="SRC", help="replace the checkpoint's own tokenizer copy: a converted vistok IBQ folder or an original "
                                            "IBQ tokenizer .ckpt (its EMA weights unless --no-ema)")),
    ("--image-size", dict(type=int, metavar="PX", help="the image size the generator was trained at (256)")),
    ("--num-heads", dict(type=int, metavar="N", help="attention heads, for a width/depth not in the original size table")),
    _EMA_FLAG,
)


# -- cards -----------------------------------------------------------------------------------------
def render_tokenizer_card(cfg: OpenMagvit2Config, release: Release | None, base: str, repo_id: str) -> str:
    grid = cfg.image_size // cfg.downsample_factor
    metadata = {"license": "apache-2.0", "library_name": "vistok", "tags": ["vistok", "image-tokenization", "open-magvit2", "lfq",
                                                                          "2d-tokenizer"], "base_model": hub_base(base)}
    return render_model_card(
        "open-magvit2", metadata=metadata, model_name=Path(repo_id).name, base_model=base,
        description=release.description if release else "", factor=str(cfg.downsample_factor), image_size=str(cfg.image_size),
        grid=f"{grid}x{grid}", bits=str(cfg.num_bits), codebook_size=str(cfg.codebook_size), hidden=str(cfg.hidden_channels),
        mult=str(cfg.channel_mult), factorized=str(cfg.factorized_bits), repo_id=repo_id,
        metrics=metrics_table(release.metrics if release else []))


def render_ar_card(cfg: OpenMagvit2ARConfig, tok: OpenMagvit2Config, release: Release | None, base: str, repo_id: str) -> str:
    sampling = "\n".join(f"| `{k}` | {v} |" for k, v in cfg.sampling_defaults.items())
    metadata = {"license": "apache-2.0", "library_name": "vistok", "pipeline_tag": "unconditional-image-generation",
                "tags": ["vistok", "open-magvit2", "autoregressive", "class-conditional"], "base_model": hub_base(base)}
    return render_model_card(
        "open-magvit2-ar", metadata=metadata, model_name=Path(repo_id).name, base_model=base,
        description=release.description if release else "", hidden_size=str(cfg.hidden_size),
        num_hidden_layers=str(cfg.num_hidden_layers), num_factorized_layers=str(cfg.num_factorized_layers),
        num_heads=str(cfg.num_attention_heads), bits=str(cfg.factorized_bits), num_classes=str(cfg.num_classes),
        tokens=f"{cfg.grid_size}x{cfg.grid_size} = {cfg.num_tokens}", codebook_size=str(cfg.codebook_size),
        image_size=str(tok.image_size), repo_id=repo_id, sampling=sampling,
        metrics=metrics_table(release.metrics if release else []))
