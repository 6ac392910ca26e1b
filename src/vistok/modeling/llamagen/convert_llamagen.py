"""Convert FoundationVision/LlamaGen and peizesun/llamagen_t2i checkpoints: the VQ tokenizers
(``vq_ds16_c2i.pt``, ``vq_ds8_c2i.pt``, ``vq_ds16_t2i.pt``) to vistok tokenizer folders, and the GPT
generators (``c2i_*.pt``, ``t2i_XL_stage*.pt``) to pipeline folders with their tokenizer.

Checkpoints are pickles read with ``torch.load(weights_only=True)``: ``ckpt["model"]`` (DDP),
``["module"]``/``["state_dict"]``, or a bare state dict (FSDP-trained XXL/3B). Shapes give every
width; the GPT's head count comes from the original size table (GPT-B ... GPT-7B) matched by width
and depth, and the image size it was trained at — which nothing in the file records — from a release
preset or ``--image-size``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ...conversion import (ConversionError, Original, Release, card_repo_id, choose_release, converted_config, count_numbered,
                           grid_num_tokens, hub_base, llama_block_renames, llama_heads, load_converted, load_model_folder, numbered,
                           read_original, release_image_size, rename_key, write_model_folder)
from ...hub.cards import metrics_table, render_model_card
from .configuration_llamagen import DEFAULT_SAMPLING, GPT_PRESETS, LlamaGenConfig, LlamaGenVQConfig
from .modeling_llamagen import LlamaGenTransformer, LlamaGenVQModel

C2I_REPO, T2I_REPO = "FoundationVision/LlamaGen", "peizesun/llamagen_t2i"
_README = "FoundationVision/LlamaGen README"


def _metric(name, value, setting):
    return [{"metric": name, "value": value, "setting": setting, "source": _README}]


# sample_c2i.py's defaults are the config's DEFAULT_SAMPLING; sample_t2i.py's differ in guidance and top-k.
# FID settings are in GETTING_STARTED.md (cfg 2.0 B/L, 1.75 XL/XXL, 1.65 3B, top_k 0).
_T2I = {**DEFAULT_SAMPLING, "guidance_scale": 7.5, "top_k": 1000}

_MIT = {"license": "mit"}
_PX256 = {"image_size": 256}
VQ_RELEASES = {
    "vq-ds16-c2i": Release(C2I_REPO, "VQ-16: 16x downsampling, 16384 x 8 cosine codebook (ImageNet).", "vq_ds16_c2i.pt", **_MIT, settings=_PX256,
                           metrics=_metric("rFID (ImageNet val)", 2.19, "256 px, 16x16 tokens") + _metric("rFID (ImageNet val)", 0.94, "384 px, 24x24 tokens")),
    "vq-ds8-c2i": Release(C2I_REPO, "VQ-8: 8x downsampling, 16384 x 8 cosine codebook (ImageNet).", "vq_ds8_c2i.pt", **_MIT, settings=_PX256,
                          metrics=_metric("rFID (ImageNet val)", 0.59, "256 px, 32x32 tokens")),
    "vq-ds16-t2i": Release(T2I_REPO, "VQ-16 of the text-to-image models (LAION COCO + internal data).", "vq_ds16_t2i.pt", **_MIT,
                           settings=_PX256),
}


def _c2i(size, px, fid, fsdp=False):
    note = " (FSDP: a bare state dict)" if fsdp else ""
    return Release(C2I_REPO, f"LlamaGen-{size} class-conditional ImageNet generator at {px} px{note}.", f"c2i_{size}_{px}.pt", **_MIT,
                   settings={"image_size": px}, tokenizer="vq-ds16-c2i", sampling=DEFAULT_SAMPLING, metrics=_metric("FID-50k (ImageNet 256)", fid, f"{px} px, resized to 256"))


GPT_RELEASES = {
    "c2i-b-256": _c2i("B", 256, 5.46), "c2i-b-384": _c2i("B", 384, 6.09), "c2i-l-256": _c2i("L", 256, 3.80),
    "c2i-l-384": _c2i("L", 384, 3.07), "c2i-xl-384": _c2i("XL", 384, 2.62), "c2i-xxl-384": _c2i("XXL", 384, 2.34, True),
    "c2i-3b-384": _c2i("3B", 384, 2.18, True),
    "t2i-xl-stage1-256": Release(T2I_REPO, "LlamaGen-XL text-to-image, stage 1 (LAION COCO) at 256 px.", "t2i_XL_stage1_256.pt", **_MIT,
                                 settings={"image_size": 256},
                                 tokenizer="vq-ds16-t2i", sampling=_T2I),
    "t2i-xl-stage2-512": Release(T2I_REPO, "LlamaGen-XL text-to-image, stage 2 (internal data) at 512 px.", "t2i_XL_stage2_512.pt", **_MIT,
                                 settings={"image_size": 512},
                                 tokenizer="vq-ds16-t2i", sampling=_T2I),
}


def read_checkpoint(source: str, release: Release | None) -> dict:
    """The state dict of a .pt file, a folder holding one, or a hub repo id (with a release's file name)."""
    return read_original(source, release, several_per_repo=True)


# -- VQ --------------------------------------------------------------------------------------------
_VQ_RENAMES = [
    (r"^(encoder|decoder)\.conv_blocks\.(\d+)\.res\.(\d+)\.nin_shortcut\.", r"\1.LEVELS.\2.res_blocks.\3.shortcut."),
    (r"^(encoder|decoder)\.conv_blocks\.(\d+)\.res\.(\d+)\.", r"\1.LEVELS.\2.res_blocks.\3."),
    (r"^(encoder|decoder)\.conv_blocks\.(\d+)\.attn\.(\d+)\.", r"\1.LEVELS.\2.attentions.\3."),
    (r"^(encoder|decoder)\.conv_blocks\.(\d+)\.(?:downsample|upsample)\.", r"\1.LEVELS.\2.resample."),
    (r"^(encoder|decoder)\.mid\.0\.nin_shortcut\.", r"\1.mid.res_in.shortcut."),
    (r"^(encoder|decoder)\.mid\.0\.", r"\1.mid.res_in."),
    (r"^(encoder|decoder)\.mid\.1\.", r"\1.mid.attention."),
    (r"^(encoder|decoder)\.mid\.2\.", r"\1.mid.res_out."),
    (r"^quantize\.embedding\.", "quantizer.embedding."),
]
_VQ_DROPPED = ("quantize.codebook_used",)  # training-time usage statistics


def _rename_vq(key: str) -> str:
    return rename_key(key, _VQ_RENAMES).replace("encoder.LEVELS", "encoder.down_levels").replace("decoder.LEVELS", "decoder.up_levels")


_VQ_QKV = re.compile(r"^(.*\.(?:attn\.\d+|mid\.1))\.(q|k|v)\.(weight|bias)$")


def convert_vq_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original VQModel keys -> vistok LlamaGenVQModel keys; separate q/k/v 1x1 convs are concatenated
    (in that order) into the fused ``qkv`` conv."""
    out, qkv = {}, {}
    for key, value in original.items():
        if key in _VQ_DROPPED:
            continue
        match = _VQ_QKV.match(key)
        if match:
            qkv.setdefault((match[1], match[3]), {})[match[2]] = value
        else:
            out[_rename_vq(key)] = value
    for (prefix, kind), parts in qkv.items():
        fused = _rename_vq(f"{prefix}.qkv.{kind}")
        if set(parts) != {"q", "k", "v"}:
            absent = [f"{prefix}.{name}.{kind}" for name in "qkv" if name not in parts]
            where = f" of {original.path}" if isinstance(original, Original) else ""
            raise ConversionError(f"missing keys {absent} in the checkpoint{where} (they are fused into vistok's {fused!r})")
        out[fused] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def _need(state, key):
    if key not in state:
        raise ConversionError(f"missing key {key!r} in the VQ checkpoint (not a LlamaGen VQModel?)")
    return state[key]


def infer_vq_config(state: dict, image_size: int) -> dict:
    ch = _need(state, "encoder.conv_in.weight").shape[0]
    enc_levels = numbered(state, r"^encoder\.conv_blocks\.(\d+)\.")
    dec_levels = numbered(state, r"^decoder\.conv_blocks\.(\d+)\.")
    if not enc_levels or len(enc_levels) != len(dec_levels):
        raise ConversionError(f"encoder/decoder level counts differ or are empty: {len(enc_levels)} vs {len(dec_levels)}")
    enc_mult = [_need(state, f"encoder.conv_blocks.{i}.res.0.conv1.weight").shape[0] // ch for i in enc_levels]
    # decoder conv_blocks run from the lowest resolution up
    dec_mult = [_need(state, f"decoder.conv_blocks.{i}.res.0.conv1.weight").shape[0] // ch for i in reversed(dec_levels)]
    res_blocks = count_numbered(state, r"^encoder\.conv_blocks\.0\.res\.(\d+)\.")
    return dict(image_size=image_size, codebook_size=_need(state, "quantize.embedding.weight").shape[0],
                token_dim=_need(state, "quantize.embedding.weight").shape[1], use_l2_norm=True, hidden_channels=ch,
                encoder_channel_mult=enc_mult, decoder_channel_mult=dec_mult, num_res_blocks=res_blocks,
                z_channels=_need(state, "encoder.conv_out.weight").shape[0])


def build_vq(state: dict, image_size: int) -> LlamaGenVQModel:
    config = LlamaGenVQConfig(**infer_vq_config(state, image_size))
    converted = convert_vq_state_dict(state)
    return load_converted(LlamaGenVQModel, config, converted, original=state)


def _image_size(image_size, release, kind) -> int:
    return release_image_size(image_size, release, kind, "256 or 384")


def convert_vq(source: str, output: str, *, preset: str | None = None, image_size: int | None = None,
               overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """A LlamaGen VQ checkpoint -> a vistok tokenizer folder (weights, config, image processor, card)."""
    release = choose_release(preset, VQ_RELEASES, "LlamaGen tokenizer")
    size = _image_size(image_size if image_size is not None else (None if release else 256), release, "tokenizer")
    state = read_checkpoint(source, release)
    try:
        model = build_vq(state, size)
    except ValueError as err:  # config checks (e.g. an image size the network cannot take)
        raise ConversionError(str(err)) from err
    base = release.hub_id if release else Path(source).name
    card = render_vq_card(model.config, release, base, card_repo_id(output, push_to_hub))
    return write_model_folder(output, model, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


# -- GPT -------------------------------------------------------------------------------------------
_GPT_RENAMES = [
    (r"^cls_embedding\.embedding_table\.", "condition_embedder.embedding_table."),
    (r"^cls_embedding\.cap_proj\.(fc1|fc2)\.", r"condition_embedder.\1."),
    (r"^cls_embedding\.uncond_embedding$", "condition_embedder.uncond_embedding"),
    (r"^tok_embeddings\.", "embed_tokens."),
    *llama_block_renames(r"layers\.(\d+)", r"layers.\1"),
    (r"^output\.", "lm_head."),
]


def convert_gpt_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original Transformer keys -> vistok LlamaGenTransformer keys. Dropped: ``freqs_cis`` (old
    checkpoints; recomputed) and ``*.kv_cache.*`` buffers a state dict saved after sampling holds."""
    out = {}
    for key, value in original.items():
        key = re.sub(r"^(module|_orig_mod)\.", "", key)
        if key == "freqs_cis" or ".kv_cache." in key:
            continue
        out[rename_key(key, _GPT_RENAMES)] = value
    return out


def infer_gpt_config(state: dict, num_tokens: int, num_heads: int | None) -> dict:
    if "embed_tokens.weight" not in state or "layers.0.self_attn.wqkv.weight" not in state:
        raise ConversionError("missing key 'tok_embeddings.weight' / 'layers.0.attention.wqkv.weight' (not a LlamaGen GPT?)")
    codebook_size, dim = state["embed_tokens.weight"].shape
    layers = count_numbered(state, r"^layers\.(\d+)\.")
    num_heads, kv_heads = llama_heads(GPT_PRESETS, dim, layers, num_heads, state["layers.0.self_attn.wqkv.weight"].shape[0])
    kwargs = dict(codebook_size=codebook_size, num_tokens=num_tokens, hidden_size=dim, num_hidden_layers=layers,
                  num_attention_heads=num_heads, num_key_value_heads=kv_heads,
                  intermediate_size=state["layers.0.mlp.gate_proj.weight"].shape[0])
    if "condition_embedder.embedding_table.weight" in state:
        rows = state["condition_embedder.embedding_table.weight"].shape[0]
        # the releases were trained with class dropout, hence the null row; num_classes = rows - 1
        kwargs.update(condition_type="class", num_classes=rows - 1, num_condition_tokens=1)
    elif "condition_embedder.uncond_embedding" in state:
        tokens, caption_dim = state["condition_embedder.uncond_embedding"].shape
        kwargs.update(condition_type="text", caption_dim=caption_dim, num_condition_tokens=tokens)
    else:
        raise ConversionError("missing key 'cls_embedding.embedding_table.weight' or 'cls_embedding.uncond_embedding'")
    return kwargs


def build_gpt(state: dict, num_tokens: int, num_heads: int | None = None, sampling: dict | None = None) -> LlamaGenTransformer:
    converted = convert_gpt_state_dict(state)
    config = converted_config(LlamaGenConfig, **infer_gpt_config(converted, num_tokens, num_heads), sampling_defaults=sampling)
    return load_converted(LlamaGenTransformer, config, converted, original=state)


def _load_tokenizer(tokenizer: str, release: Release | None, image_size: int) -> LlamaGenVQModel:
    """A converted vistok LlamaGen VQ folder, or an original VQ checkpoint (file or, with a generator preset, its release)."""
    model = load_model_folder(tokenizer, LlamaGenVQModel, "not a LlamaGen VQ tokenizer")
    if model is not None:
        return model
    vq_release = VQ_RELEASES.get(release.tokenizer) if release is not None and release.tokenizer else None
    return build_vq(read_checkpoint(tokenizer, vq_release), image_size)


def convert_gpt(source: str, output: str, *, tokenizer: str, preset: str | None = None, image_size: int | None = None,
                num_heads: int | None = None, text_encoder: str | None = None, overwrite: bool = False,
                push_to_hub: str | None = None) -> Path:
    """A LlamaGen GPT checkpoint (+ its VQ tokenizer) -> an AutoregressiveImagePipeline (class) or
    TextToImageAutoregressivePipeline (text) folder. ``text_encoder``: a local T5 encoder folder (its
    tokenizer beside it) to include; without it, text pipelines take ``prompt_embeds`` or a T5 at load time."""
    from ...pipelines import AutoregressiveImagePipeline, TextToImageAutoregressivePipeline

    release = choose_release(preset, GPT_RELEASES, "LlamaGen generator")
    size = _image_size(image_size, release, "generator")
    state = read_checkpoint(source, release)
    vq = _load_tokenizer(tokenizer, release, size)
    transformer = build_gpt(state, grid_num_tokens(size, vq), num_heads, release.sampling if release else None)
    if transformer.config.codebook_size != vq.config.codebook_size:
        raise ConversionError(f"the generator predicts {transformer.config.codebook_size} codes but the tokenizer has {vq.config.codebook_size}")
    # the pipeline's tokenizer (and its image processor) work at the generator's image size
    vq.config.image_size = size
    vq.config.num_tokens = transformer.config.num_tokens
    if transformer.config.condition_type == "class":
        pipeline = AutoregressiveImagePipeline(image_tokenizer=vq, transformer=transformer)
    else:
        encoder = tok = None
        if text_encoder is not None:
            from transformers import AutoTokenizer, T5EncoderModel

            encoder, tok = T5EncoderModel.from_pretrained(text_encoder).eval(), AutoTokenizer.from_pretrained(text_encoder)
        pipeline = TextToImageAutoregressivePipeline(image_tokenizer=vq, transformer=transformer, text_encoder=encoder, tokenizer=tok)
    base = release.hub_id if release else Path(source).name
    card = render_gpt_card(transformer.config, vq.config, release, base, card_repo_id(output, push_to_hub), text_encoder is not None)
    return write_model_folder(output, pipeline, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


VQ_CLI_OPTIONS = (
    ("--image-size", dict(type=int, metavar="PX", help="default image size of the tokenizer (its processor's); 256 unless the preset says otherwise")),
)
GPT_CLI_OPTIONS = (
    ("--tokenizer", dict(required=True, metavar="SRC", help="the generator's VQ tokenizer: a converted vistok folder or an original vq_*.pt file "
                                                         "(or, with --preset, the release's hub repo id)")),
    ("--image-size", dict(type=int, metavar="PX", help="the image size the GPT was trained at (256, 384, 512); the grid is size / the tokenizer's downsampling")),
    ("--num-heads", dict(type=int, metavar="N", help="attention heads, for a width/depth not in the original size table")),
    ("--text-encoder", dict(metavar="DIR", help="text-to-image: a local T5 encoder folder (with its tokenizer) to include in the pipeline")),
)


# -- cards -----------------------------------------------------------------------------------------
def render_vq_card(cfg: LlamaGenVQConfig, release: Release | None, base: str, repo_id: str) -> str:
    grid = cfg.image_size // cfg.downsample_factor
    metadata = {"license": "mit", "library_name": "vistok", "tags": ["vistok", "image-tokenization", "llamagen", "2d-tokenizer"],
                "base_model": hub_base(base)}
    return render_model_card(
        "llamagen-vq", metadata=metadata, model_name=Path(repo_id).name, base_model=base,
        description=release.description if release else "", factor=str(cfg.downsample_factor), image_size=str(cfg.image_size),
        grid=f"{grid}x{grid}", codebook=f"{cfg.codebook_size} x {cfg.token_dim}", hidden=str(cfg.hidden_channels),
        enc_mult=str(cfg.encoder_channel_mult), z_channels=str(cfg.z_channels), repo_id=repo_id,
        metrics=metrics_table(release.metrics if release else []))


def render_gpt_card(cfg: LlamaGenConfig, vq: LlamaGenVQConfig, release: Release | None, base: str, repo_id: str, has_t5: bool) -> str:
    text = cfg.condition_type == "text"
    if text:
        usage = ("from transformers import AutoTokenizer, T5EncoderModel\n"
                 "from vistok import TextToImageAutoregressivePipeline\n\n"
                 + (f'pipe = TextToImageAutoregressivePipeline.from_pretrained("{repo_id}")\n' if has_t5 else
                    f'pipe = TextToImageAutoregressivePipeline.from_pretrained(\n    "{repo_id}",\n'
                    '    text_encoder=T5EncoderModel.from_pretrained("google/flan-t5-xl"),\n'
                    '    tokenizer=AutoTokenizer.from_pretrained("google/flan-t5-xl"),\n)\n')
                 + 'images = pipe(prompt=["A blue Porsche 356 parked in front of a yellow brick wall."],\n'
                   '              generator=torch.Generator().manual_seed(0)).images')
        condition = f"{cfg.num_condition_tokens} T5 feature tokens ({cfg.caption_dim}-d, flan-t5-xl), left-padded"
    else:
        usage = ("from vistok import AutoregressiveImagePipeline\n\n"
                 f'pipe = AutoregressiveImagePipeline.from_pretrained("{repo_id}")\n'
                 "images = pipe(class_labels=[207, 360], generator=torch.Generator().manual_seed(0)).images")
        condition = f"a class label ({cfg.num_classes} ImageNet classes + the null class for guidance)"
    sampling = "\n".join(f"| `{k}` | {v} |" for k, v in cfg.sampling_defaults.items())
    metadata = {"license": "mit", "library_name": "vistok",
                "pipeline_tag": "text-to-image" if text else "unconditional-image-generation",
                "tags": ["vistok", "llamagen", "autoregressive", "text-to-image" if text else "class-conditional"],
                "base_model": hub_base(base)}
    grid = cfg.grid_size
    return render_model_card(
        "llamagen", metadata=metadata, model_name=Path(repo_id).name, base_model=base,
        description=release.description if release else "", hidden_size=str(cfg.hidden_size),
        num_hidden_layers=str(cfg.num_hidden_layers), num_heads=str(cfg.num_attention_heads), condition=condition,
        tokens=f"{grid}x{grid} = {cfg.num_tokens}", codebook_size=str(cfg.codebook_size), image_size=str(vq.image_size),
        usage=usage, sampling=sampling, metrics=metrics_table(release.metrics if release else []),
        text_note=("The pipeline was saved without a text encoder: pass `text_encoder`/`tokenizer` at load time "
                   "or call it with `prompt_embeds` and `prompt_attention_mask`." if text and not has_t5 else ""))
