"""Convert SilentView/GigaTok tokenizer checkpoints (``VQVitModelPlus`` 1D and ``VQVitModel2DPlus`` 2D,
Google Drive ``.pt`` files) to vistok tokenizer folders, and its class-conditional GPTs to pipeline folders of
:class:`LlamaGenTransformer` and the tokenizer: the 1D-token GPT (``autoregressive/models/gpt_1d.py``: LlamaGen's
transformer with a learned absolute position embedding instead of 2D RoPE, ``position_embedding="learned"``) and the
2D-token GPT (``autoregressive/models/gpt.py``: LlamaGen's GPT unchanged, 2D RoPE over the tokenizer's grid). The
checkpoint tells them apart (only the 1D one has ``positional_embedding``); the tokenizer must have the same layout.

GigaTok's ``generate`` hands the class to the 2D GPT at every cached decode step, and ``gpt.py`` then embeds the class
instead of the previous token, so the original's 2D samples do not depend on the sampled tokens. The converted 2D
generator keeps that as its sampling default (``decode_feeds_condition``), as the original samples; pass
``decode_feeds_condition=False`` to the pipeline for LlamaGen's decoding (the previous token fed back).

Checkpoints are pickles read with ``torch.load(weights_only=True)``. The original evaluates tokenizers
with the ``"ema"`` weights when the file has them (``utils/model_init.py``), so they are preferred over
``"model"``. Every width, depth and the token count come from the tensor shapes; the head counts from the
original size table (matched by width and depth) or ``--encoder-heads`` / ``--decoder-heads``. The image
size (256 in every release) is not recorded: ``--image-size`` or a preset.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ...conversion import (ConversionError, Original, Release, card_repo_id, choose_release, converted_config, count_numbered,
                           load_converted, load_model_folder, numbered, read_original, rename_key, write_model_folder)
from ...hub.cards import metrics_table, render_model_card
from ...utils.io import load_pickle
from ..llamagen.configuration_llamagen import DEFAULT_SAMPLING, LlamaGenConfig
from ..llamagen.convert_llamagen import convert_gpt_state_dict, infer_gpt_config
from ..llamagen.modeling_llamagen import LlamaGenTransformer
from .configuration_gigatok import VIT_SIZES, GigaTokConfig
from .modeling_gigatok import GigaTokModel

REPO = "SilentView/GigaTok"
_README = "SilentView/GigaTok README"


def _metrics(rfid, gfid=None, lpips=None):
    out = [{"metric": "rFID (ImageNet val 50k)", "value": rfid, "setting": "256 px", "source": _README}]
    if lpips is not None:
        out.append({"metric": "LPIPS (ImageNet val)", "value": lpips, "setting": "256 px", "source": _README})
    if gfid is not None:
        out.append({"metric": "gFID (GPT-B, ImageNet 256)", "value": gfid, "setting": "class-conditional", "source": _README})
    return out


def _release(name, desc, layout, rfid, gfid=None, lpips=None):
    # released as Google Drive .pt files (no hub repo): convert a downloaded file with --preset for its card
    return Release(REPO, f"GigaTok {name} ({layout.upper()} tokens): {desc}", None, license="mit",
                   settings={"image_size": 256, "token_layout": layout}, metrics=_metrics(rfid, gfid, lpips))


RELEASES = {
    "s-s": _release("S-S", "small encoder, small decoder, 136M parameters.", "1d", 1.01, 4.05, 0.2226),
    "s-b": _release("S-B", "small encoder, base decoder, 232M parameters.", "1d", 0.89, 3.83),
    "b-l": _release("B-L", "base encoder, large decoder, 622M parameters.", "1d", 0.81, 3.26),
    "xl-xxl": _release("XL-XXL", "XL encoder, XXL decoder, 2.9B parameters.", "1d", 0.79, 3.15, 0.1947),
    "s-s-2d": _release("S-S", "small encoder, small decoder.", "2d", 1.22),
    "s-b-2d": _release("S-B", "small encoder, base decoder.", "2d", 0.97),
    "b-l-2d": _release("B-L", "base encoder, large decoder.", "2d", 0.86),
}


def read_checkpoint(source: str, release: Release | None) -> Original:
    """The tokenizer state dict: a ``.pt`` file's ``"ema"`` weights when present (the original evaluates
    with them), else ``"model"`` / a bare state dict; folders and hub ids through ``read_original``."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix != ".safetensors":
        try:
            raw = load_pickle(path)
        except Exception as err:
            raise ConversionError(f"could not read checkpoint {path}: {type(err).__name__}: {err}") from err
        if isinstance(raw, dict) and isinstance(raw.get("ema"), dict) and raw["ema"]:
            state = raw["ema"]
            if all(isinstance(v, torch.Tensor) for v in state.values()):
                return Original(state, path)
    return read_original(source, release, several_per_repo=True)


# -- keys ------------------------------------------------------------------------------------------
_RENAMES = [
    (r"^(encoder|decoder)\.conv_blocks\.(\d+)\.res\.(\d+)\.nin_shortcut\.", r"\1.LEVELS.\2.res_blocks.\3.shortcut."),
    (r"^(encoder|decoder)\.conv_blocks\.(\d+)\.res\.(\d+)\.", r"\1.LEVELS.\2.res_blocks.\3."),
    (r"^encoder\.conv_blocks\.(\d+)\.downsample\.", r"encoder.LEVELS.\1.resample."),
    (r"^decoder\.conv_blocks\.(\d+)\.upsample\.conv1\.", r"decoder.LEVELS.\1.resample.conv."),
    (r"^(encoder|decoder)\.mid\.0\.nin_shortcut\.", r"\1.mid.res_in.shortcut."),
    (r"^(encoder|decoder)\.mid\.0\.", r"\1.mid.res_in."),
    (r"^(encoder|decoder)\.mid\.1\.", r"\1.mid.res_out."),
    (r"^decoder\.adaptive\.(\d+)\.", r"decoder.adaptive_norms.\1."),
    (r"^(?:s2to1encoder|s2dencoder)\.", "token_encoder."),
    (r"^(?:s1to2decoder|s2ddecoder)\.", "token_decoder."),
    (r"^token_(encoder|decoder)\.(?:encoder_embed|decoder_embed)\.", r"token_\1.embed."),
    (r"^token_(encoder|decoder)\.positional_embedding$", r"token_\1.position_embedding"),
    (r"^token_(encoder|decoder)\.latent_token_positional_embedding$", r"token_\1.latent_position_embedding"),
    (r"^token_encoder\.global_proj\.", "token_encoder.query_proj."),
    (r"^token_encoder\.conv_out\.", "token_encoder.proj_out."),
    (r"^token_(encoder|decoder)\.transformer\.(\d+)\.multihead_attn\.", r"token_\1.layers.\2.cross_attn."),
    (r"^token_(encoder|decoder)\.transformer\.(\d+)\.linear1\.", r"token_\1.layers.\2.mlp.fc1."),
    (r"^token_(encoder|decoder)\.transformer\.(\d+)\.linear2\.", r"token_\1.layers.\2.mlp.fc2."),
    (r"^token_(encoder|decoder)\.transformer\.(\d+)\.", r"token_\1.layers.\2."),
    (r"^quant_conv\.", "quant_proj."),
    (r"^post_quant_conv\.", "post_quant_proj."),
    (r"^quantize\.embedding\.", "quantizer.embedding."),
]
_DROPPED = ("quantize.codebook_used",)  # training-time usage statistics
_IN_PROJ = re.compile(r"^(.*)\.in_proj_(weight|bias)$")
_LINEAR_FROM_CONV = ("token_encoder.proj_out.weight", "quant_proj.weight", "post_quant_proj.weight")


def convert_state_dict(original: dict[str, torch.Tensor], token_layout: str) -> dict[str, torch.Tensor]:
    """Original keys -> vistok GigaTokModel keys: fused ``in_proj`` split into q/k/v, 1x1 convs applied per
    token become linear maps, positional embeddings ``[L, 1, W]`` squeezed to ``[L, W]``; 2D transformer
    blocks' ``norm1/norm2`` are the shared block's ``layer_norm1/layer_norm2``."""
    out = {}
    for key, value in original.items():
        key = re.sub(r"^(module|_orig_mod)\.", "", key)
        if key in _DROPPED:
            continue
        new = rename_key(key, _RENAMES).replace("encoder.LEVELS", "encoder.down_levels").replace("decoder.LEVELS", "decoder.up_levels")
        if token_layout == "2d":
            new = re.sub(r"^(token_(?:encoder|decoder)\.layers\.\d+)\.norm([12])\.", r"\1.layer_norm\2.", new)
        if new.endswith("position_embedding") and value.ndim == 3:
            value = value[:, 0]
        if new in _LINEAR_FROM_CONV and value.ndim == 4:
            value = value[:, :, 0, 0]
        match = _IN_PROJ.match(new)
        if match:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{match[1]}.{name}.{match[2]}"] = part.contiguous()
        else:
            out[new] = value
    return out


def _need(state, key):
    if key not in state:
        raise ConversionError(f"missing key {key!r} in the checkpoint (not a GigaTok VQVitModelPlus / VQVitModel2DPlus?)")
    return state[key]


def _heads(width: int, layers: int, given: int | None, which: str) -> int:
    if given is not None:
        if width % given:
            raise ConversionError(f"--{which}-heads {given} does not divide the {which} width {width}")
        return given
    for w, n, h in VIT_SIZES.values():
        if (w, n) == (width, layers):
            return h
    raise ConversionError(f"{which} width {width} x {layers} layers is none of the original sizes {sorted(VIT_SIZES)}: "
                          f"pass --{which}-heads")


def infer_config(state: dict, image_size: int, encoder_heads: int | None = None, decoder_heads: int | None = None) -> dict:
    """GigaTokConfig kwargs from an original state dict's shapes."""
    if any(k.startswith("s2to1encoder.") for k in state):
        layout, enc, dec = "1d", "s2to1encoder", "s1to2decoder"
    elif any(k.startswith("s2dencoder.") for k in state):
        layout, enc, dec = "2d", "s2dencoder", "s2ddecoder"
    else:
        raise ConversionError("the checkpoint has neither 's2to1encoder.*' (1D) nor 's2dencoder.*' (2D) keys: not a GigaTok tokenizer")
    if "distill_mlp.0.weight" in state:
        raise ConversionError("encoder_2d_distill checkpoints (a distill_mlp on the CNN encoder) are not supported")
    if layout == "2d" and f"{enc}.transformer.0.multihead_attn.in_proj_weight" in state:
        raise ConversionError("2D GigaTok with transformer_layer_type TransformerDecoderLayer is not supported "
                              "(the releases use TransformerLayer)")
    if layout == "1d" and f"{enc}.global_proj.weight" not in state:
        raise ConversionError("1D GigaTok without multi-level query initialisation (no s2to1encoder.global_proj) is not supported")
    ch = _need(state, "encoder.conv_in.weight").shape[0]
    enc_levels = numbered(state, r"^encoder\.conv_blocks\.(\d+)\.")
    dec_levels = numbered(state, r"^decoder\.conv_blocks\.(\d+)\.")
    if not enc_levels or len(enc_levels) != len(dec_levels):
        raise ConversionError(f"encoder/decoder level counts differ or are empty: {len(enc_levels)} vs {len(dec_levels)}")
    if "decoder.adaptive.0.gamma.weight" not in state or "decoder.conv_blocks.0.upsample.conv1.weight" not in state:
        raise ConversionError("only GigaTok decoders with adaptive_gn and d2s_up (all releases) are supported")
    enc_mult = [_need(state, f"encoder.conv_blocks.{i}.res.0.conv1.weight").shape[0] // ch for i in enc_levels]
    dec_mult = [_need(state, f"decoder.conv_blocks.{i}.res.0.conv1.weight").shape[0] // ch for i in reversed(dec_levels)]
    res_blocks = count_numbered(state, r"^encoder\.conv_blocks\.0\.res\.(\d+)\.")
    ew = _need(state, f"{enc}.encoder_embed.weight").shape[0]
    dw = _need(state, f"{dec}.decoder_embed.weight").shape[0]
    el = count_numbered(state, rf"^{enc}\.transformer\.(\d+)\.")
    dl = count_numbered(state, rf"^{dec}\.transformer\.(\d+)\.")
    codebook = _need(state, "quantize.embedding.weight")
    kwargs = dict(token_layout=layout, image_size=image_size, codebook_size=codebook.shape[0], token_dim=codebook.shape[1],
                  hidden_channels=ch, encoder_channel_mult=enc_mult, decoder_channel_mult=dec_mult, num_res_blocks=res_blocks,
                  z_channels=_need(state, "encoder.conv_out.weight").shape[0], encoder_hidden_size=ew, encoder_num_layers=el,
                  encoder_num_heads=_heads(ew, el, encoder_heads, "encoder"), decoder_hidden_size=dw, decoder_num_layers=dl,
                  decoder_num_heads=_heads(dw, dl, decoder_heads, "decoder"))
    grid = _need(state, f"{enc}.positional_embedding").shape[0]
    if layout == "1d":
        kwargs["num_latent_tokens"] = _need(state, f"{enc}.latent_token_positional_embedding").shape[0]
    if f"{dec}.distill_mlp.0.weight" in state:
        kwargs["distill_dim"] = state[f"{dec}.distill_mlp.4.weight"].shape[0]
        # the head's depth is not in the weights: every release aligns after decoder layer 3
        kwargs["distill_depth"] = min(3, dl)
    else:
        kwargs["distill_depth"] = None
    factor = 2 ** (len(enc_mult) - 1)
    if (image_size // factor) ** 2 != grid:
        raise ConversionError(f"the checkpoint's positional embedding covers {grid} positions, but image size {image_size} "
                              f"with downsampling {factor} gives {(image_size // factor) ** 2}: pass the right --image-size")
    return kwargs


def build_tokenizer(state: dict, image_size: int, encoder_heads: int | None = None, decoder_heads: int | None = None,
                    distill_depth: int | None = None) -> GigaTokModel:
    kwargs = infer_config(state, image_size, encoder_heads, decoder_heads)
    if distill_depth is not None and kwargs["distill_depth"] is not None:
        kwargs["distill_depth"] = distill_depth
    config = converted_config(GigaTokConfig, **kwargs)
    converted = convert_state_dict(state, config.token_layout)
    return load_converted(GigaTokModel, config, converted, original=state)


def convert(source: str, output: str, *, preset: str | None = None, image_size: int | None = None,
            encoder_heads: int | None = None, decoder_heads: int | None = None, distill_depth: int | None = None,
            overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """A GigaTok tokenizer checkpoint (1D or 2D) -> a vistok tokenizer folder (weights, config, image processor, card)."""
    release = choose_release(preset, RELEASES, "GigaTok tokenizer")
    if image_size is None:
        image_size = release.settings["image_size"] if release else 256
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConversionError(f"--image-size must be a positive int, got {image_size!r}")
    state = read_checkpoint(source, release)
    model = build_tokenizer(state, image_size, encoder_heads, decoder_heads, distill_depth)
    if release is not None and release.settings["token_layout"] != model.config.token_layout:
        raise ConversionError(f"preset {preset!r} is a {release.settings['token_layout'].upper()} tokenizer but the checkpoint "
                              f"is {model.config.token_layout.upper()}")
    base = release.hub_id if release else Path(source).name
    card = render_card(model.config, release, base, card_repo_id(output, push_to_hub))
    return write_model_folder(output, model, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


CLI_OPTIONS = (
    ("--image-size", dict(type=int, metavar="PX", help="the image size the tokenizer was trained at (256 for every release)")),
    ("--encoder-heads", dict(type=int, metavar="N", help="encoder attention heads, for a width/depth not in the original size table")),
    ("--decoder-heads", dict(type=int, metavar="N", help="decoder attention heads, for a width/depth not in the original size table")),
    ("--distill-depth", dict(type=int, metavar="L", help="decoder layer the semantic head reads (3 in every release)")),
)


def render_card(cfg: GigaTokConfig, release: Release | None, base: str, repo_id: str) -> str:
    grid = cfg.grid_size
    tokens = f"{cfg.num_tokens} (1D)" if cfg.token_layout == "1d" else f"{grid}x{grid} (2D)"
    metadata = {"license": "mit", "library_name": "vistok",
                "tags": ["vistok", "image-tokenization", "gigatok", f"{cfg.token_layout}-tokenizer"]}
    return render_model_card(
        "gigatok", metadata=metadata, model_name=Path(repo_id).name, base_model=base,
        description=release.description if release else "", layout=cfg.token_layout.upper(), tokens=tokens,
        image_size=str(cfg.image_size), codebook=f"{cfg.codebook_size} x {cfg.token_dim}",
        encoder=f"{cfg.encoder_hidden_size} wide, {cfg.encoder_num_layers} layers, {cfg.encoder_num_heads} heads",
        decoder=f"{cfg.decoder_hidden_size} wide, {cfg.decoder_num_layers} layers, {cfg.decoder_num_heads} heads",
        repo_id=repo_id, metrics=metrics_table(release.metrics if release else []))


# -- GPT -------------------------------------------------------------------------------------------
# The README's qualitative sampling (constant guidance 4.0); its FID numbers use the "step" guidance schedule
# (guidance 1.75 from 18% of the decode steps on: cfg_schedule="step", cfg_schedule_kwargs={"window_start": 0.18}).
SAMPLING = {**DEFAULT_SAMPLING, "guidance_scale": 4.0}
# the 2D GPT as GigaTok's generate runs it (the class embedded at every decode step; see the module docstring)
SAMPLING_2D = {**SAMPLING, "decode_feeds_condition": True}


def _gpt(size, tokenizer, gfid):
    return Release(REPO, f"GigaTok GPT-{size} class-conditional ImageNet generator on the {tokenizer.upper()} 1D tokenizer.",
                   None, license="mit", tokenizer=tokenizer, sampling=SAMPLING,
                   metrics=[{"metric": "gFID (ImageNet 256)", "value": gfid, "setting": "cfg step schedule", "source": _README}])


GPT_RELEASES = {
    "gpt-b-s-s": _gpt("B", "s-s", 4.05), "gpt-b-s-b": _gpt("B", "s-b", 3.83), "gpt-b-b-l": _gpt("B", "b-l", 3.26),
    "gpt-b-xl-xxl": _gpt("B", "xl-xxl", 3.15), "gpt-xl-b-l": _gpt("XL", "b-l", 2.13), "gpt-xxl-b-l": _gpt("XXL", "b-l", 2.03),
    "gpt-xxl-xl-xxl": _gpt("XXL", "xl-xxl", 1.98),
}


def read_gpt_checkpoint(source: str) -> Original:
    """The GPT's weights: GigaTok evaluates generators with ``"model"`` (not ``"ema"``), as read_original unwraps."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix != ".safetensors":
        try:
            raw = load_pickle(path)
        except Exception as err:
            raise ConversionError(f"could not read checkpoint {path}: {type(err).__name__}: {err}") from err
        for key in ("model", "module", "state_dict"):
            if isinstance(raw, dict) and isinstance(raw.get(key), dict):
                return Original(raw[key], path)
    return read_original(source, None)


def gpt_layout(state: dict) -> str:
    """"1d" for a gpt_1d.py GPT (learned ``positional_embedding``), "2d" for a gpt.py GPT (2D RoPE, no position table)."""
    return "1d" if "positional_embedding" in state else "2d"


def build_gpt(state: dict, num_heads: int | None = None, sampling: dict | None = None,
              num_tokens: int | None = None) -> LlamaGenTransformer:
    """A gpt_1d.py ``Transformer`` state dict -> LlamaGenTransformer with learned positions; a gpt.py one (2D RoPE)
    -> LlamaGenTransformer with ``position_embedding="rope_2d"`` over ``num_tokens`` (the tokenizer's grid)."""
    if gpt_layout(state) == "2d":
        if num_tokens is None:
            raise ConversionError("missing key 'positional_embedding': a 2D GigaTok GPT (gpt.py) needs the token count "
                                  "of its tokenizer")
        converted = convert_gpt_state_dict(state)
        if "condition_embedder.embedding_table.weight" not in converted:
            raise ConversionError("missing key 'cls_embedding.embedding_table.weight' (GigaTok GPTs are class-conditional)")
        config = converted_config(LlamaGenConfig, **infer_gpt_config(converted, num_tokens, num_heads), sampling_defaults=sampling)
        return load_converted(LlamaGenTransformer, config, converted, original=state)
    if any(".adaLN" in k or k.startswith(("adaLN.", "final_adaLN.")) for k in state) or any(".q_norm." in k or ".k_norm." in k for k in state):
        raise ConversionError("GigaTok GPTs with adaLN or QK-norm are not supported (the released ones use neither)")
    converted = convert_gpt_state_dict({k: v for k, v in state.items() if k != "positional_embedding"})
    positions = state["positional_embedding"]
    converted["position_embedding"] = positions
    rows = converted.get("condition_embedder.embedding_table.weight")
    if rows is None:
        raise ConversionError("missing key 'cls_embedding.embedding_table.weight' (GigaTok GPTs are class-conditional)")
    kwargs = infer_gpt_config(converted, positions.shape[0] - 1, num_heads)
    config = converted_config(LlamaGenConfig, **kwargs, position_embedding="learned", sampling_defaults=sampling)
    return load_converted(LlamaGenTransformer, config, converted, original=state)


def _load_tokenizer(tokenizer: str, image_size: int) -> GigaTokModel:
    model = load_model_folder(tokenizer, GigaTokModel, "not a GigaTok tokenizer")
    if model is not None:
        return model
    return build_tokenizer(read_checkpoint(tokenizer, None), image_size)


def convert_gpt(source: str, output: str, *, tokenizer: str, preset: str | None = None, image_size: int | None = None,
                num_heads: int | None = None, overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """A GigaTok GPT checkpoint (+ its tokenizer: a converted folder or the original .pt) -> an
    AutoregressiveImagePipeline folder."""
    from ...pipelines import AutoregressiveImagePipeline

    release = choose_release(preset, GPT_RELEASES, "GigaTok generator")
    state = read_gpt_checkpoint(source)
    tok = _load_tokenizer(tokenizer, 256 if image_size is None else image_size)
    layout = gpt_layout(state)
    if layout != tok.config.token_layout:
        raise ConversionError(f"the generator is a {layout.upper()}-token GPT but the tokenizer makes "
                              f"{tok.config.token_layout.upper()} tokens")
    if release is not None and layout != "1d":
        raise ConversionError(f"preset {preset!r} is a 1D-token GPT but the checkpoint is a 2D-token GPT (gpt.py)")
    sampling = release.sampling if release else (SAMPLING if layout == "1d" else SAMPLING_2D)
    transformer = build_gpt(state, num_heads, sampling, tok.config.num_tokens)
    if transformer.config.codebook_size != tok.config.codebook_size:
        raise ConversionError(f"the generator predicts {transformer.config.codebook_size} codes but the tokenizer has {tok.config.codebook_size}")
    if transformer.config.num_tokens != tok.config.num_tokens:
        raise ConversionError(f"the generator makes {transformer.config.num_tokens} tokens but the tokenizer decodes {tok.config.num_tokens}")
    pipeline = AutoregressiveImagePipeline(image_tokenizer=tok, transformer=transformer)
    base = release.hub_id if release else Path(source).name
    card = render_gpt_card(transformer.config, tok.config, release, base, card_repo_id(output, push_to_hub))
    return write_model_folder(output, pipeline, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


GPT_CLI_OPTIONS = (
    ("--tokenizer", dict(required=True, metavar="SRC", help="the generator's GigaTok tokenizer: a converted vistok folder or the original .pt")),
    ("--image-size", dict(type=int, metavar="PX", help="image size of an original tokenizer .pt (256 for every release)")),
    ("--num-heads", dict(type=int, metavar="N", help="attention heads, for a width/depth not in the original size table")),
)


def render_gpt_card(cfg: LlamaGenConfig, tok: GigaTokConfig, release: Release | None, base: str, repo_id: str) -> str:
    sampling = "\n".join(f"| `{k}` | {v} |" for k, v in cfg.sampling_defaults.items())
    metadata = {"license": "mit", "library_name": "vistok", "pipeline_tag": "unconditional-image-generation",
                "tags": ["vistok", "gigatok", "autoregressive", "class-conditional"]}
    return render_model_card(
        "gigatok-gpt", metadata=metadata, model_name=Path(repo_id).name, base_model=base,
        description=release.description if release else "", hidden_size=str(cfg.hidden_size),
        num_hidden_layers=str(cfg.num_hidden_layers), num_heads=str(cfg.num_attention_heads),
        tokens=f"{cfg.num_tokens} ({tok.token_layout.upper()})", codebook_size=str(cfg.codebook_size),
        num_classes=str(cfg.num_classes), image_size=str(tok.image_size), repo_id=repo_id, sampling=sampling,
        positions="learned absolute positions (no RoPE)" if cfg.position_embedding == "learned" else "2D RoPE over the token grid",
        decode_note="; `decode_feeds_condition`: GigaTok's generate embeds the class, not the previous token, at every "
                    "decode step of the 2D GPT, so its samples do not depend on the sampled tokens; pass "
                    "`decode_feeds_condition=False` for LlamaGen's decoding" if cfg.sampling_defaults.get("decode_feeds_condition") else "",
        metrics=metrics_table(release.metrics if release else []))
