"""Convert the MaskGIT generators of bytedance/1d-tokenizer (yucornetto/generator_titok_*) and
turingmotors/One-D-Piece (turing-motors/MaskGIT_One-D-Piece-*) into a complete MaskGITPipeline folder:
the converted tokenizer, the generator, and the released sampling settings.

The generator's tokenizer is a converted vistok folder, or an original tokenizer release converted on the
way by its family's converter (``--tokenizer-family``, or the preset's)."""

from __future__ import annotations

import re
import shutil
import tempfile
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
from ...hub.cards import render_model_card
from .configuration_maskgit import MaskGITConfig
from .modeling_maskgit import MaskGITTransformer

# Released sampling settings (configs/infer/TiTok/*.yaml + sample_imagenet_titok.py, which turns
# softmax-temperature annealing on; One-D-Piece configs/training/generator/*.yaml + its inference script).
SAMPLING_PRESETS = {
    "titok-l32": dict(num_inference_steps=8, guidance_scale=4.5, guidance_schedule="linear", randomize_temperature=9.5, softmax_temperature_annealing=True),
    "titok-b64": dict(num_inference_steps=8, guidance_scale=3.0, guidance_schedule="linear", randomize_temperature=11.0, softmax_temperature_annealing=True),
    "titok-s128": dict(num_inference_steps=64, guidance_scale=6.9, guidance_schedule="power-cosine", randomize_temperature=2.8, softmax_temperature_annealing=True),
    "one-d-piece-s256": dict(num_inference_steps=16, guidance_scale=12.5, guidance_schedule="power-cosine", randomize_temperature=3.0, softmax_temperature_annealing=False),
    "one-d-piece-b256": dict(num_inference_steps=16, guidance_scale=8.5, guidance_schedule="power-cosine", randomize_temperature=2.5, softmax_temperature_annealing=False),
    "one-d-piece-l256": dict(num_inference_steps=16, guidance_scale=5.5, guidance_schedule="power-cosine", randomize_temperature=3.0, softmax_temperature_annealing=False),
}
_HUB_IDS = {
    "titok-l32": "yucornetto/generator_titok_l32_imagenet", "titok-b64": "yucornetto/generator_titok_b64_imagenet",
    "titok-s128": "yucornetto/generator_titok_s128_imagenet", "one-d-piece-s256": "turing-motors/MaskGIT_One-D-Piece-S-256",
    "one-d-piece-b256": "turing-motors/MaskGIT_One-D-Piece-B-256", "one-d-piece-l256": "turing-motors/MaskGIT_One-D-Piece-L-256",
}
_PUBLISHED = {
    "titok-l32": "gFID 2.77 (bytedance/1d-tokenizer README_TiTok.md)", "titok-b64": "gFID 2.48 (README_TiTok.md)",
    "titok-s128": "gFID 1.97 (README_TiTok.md)", "one-d-piece-s256": "gFID 2.67 (turingmotors/One-D-Piece README)",
    "one-d-piece-b256": "gFID 2.70 (One-D-Piece README)", "one-d-piece-l256": "gFID 2.35 (One-D-Piece README)",
}
# The sampling scripts of the two releases differ in softmax-temperature annealing: bytedance's
# sample_imagenet_titok.py turns it on, One-D-Piece's inference script does not.
_ANNEALING_BY_TOKENIZER = {"titok": True, "one-d-piece": False}

RELEASES = {
    name: Release(_HUB_IDS[name], f"MaskGIT generator of the {name} tokenizer.", sampling=SAMPLING_PRESETS[name],
                  settings={"tokenizer_family": name.rsplit("-", 1)[0]})
    for name in _HUB_IDS
}

_UVIT_RENAMES = [
    (r"\.norm1\.", ".layer_norm1."), (r"\.norm2\.", ".layer_norm2."), (r"\.attn\.proj\.", ".self_attn.out_proj."),
]


def convert_generator_state_dict(original: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Original ImageBert / UViTBert keys -> vistok MaskGITTransformer keys; returns (state, backbone)."""
    out = {}
    if "model.embeddings.word_embeddings.weight" in original:
        for key, value in original.items():
            out["lm_head." + key[len("model.lm_head."):] if key.startswith("model.lm_head.") else re.sub(r"^model\.", "bert.", key)] = value
        return out, "bert"
    for key, value in original.items():
        match = re.match(r"^(in_blocks\.\d+|mid_block|out_blocks\.\d+)\.attn\.qkv\.weight$", key)
        if match:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{match[1]}.self_attn.{name}.weight"] = part.clone()
            continue
        out[rename_key(key, _UVIT_RENAMES)] = value
    return out, "uvit"


def infer_generator_config(state: dict, generator_cfg: dict, codebook_size: int | None) -> dict:
    """MaskGITConfig kwargs from converted keys (shapes) and the original ``model.generator`` config."""
    bert = "bert.embeddings.word_embeddings.weight" in state
    embed = state["bert.embeddings.word_embeddings.weight" if bert else "embeddings.weight"]
    if "lm_head.weight" not in state:
        raise ConversionError("missing key 'model.lm_head.weight' / 'lm_head.weight' in the generator checkpoint")
    codes = state["lm_head.weight"].shape[0]
    if codebook_size is not None and codebook_size != codes:
        raise ConversionError(f"the generator predicts {codes} codes but the tokenizer's codebook has {codebook_size}")
    positions = state["bert.embeddings.position_embeddings.weight"].shape[0] if bert else state["pos_embed"].shape[1]
    if bert:
        layers = len({m[1] for k in state if (m := re.match(r"^bert\.encoder\.layer\.(\d+)\.", k))})
        intermediate = state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0]
    else:
        layers = 2 * len({m[1] for k in state if (m := re.match(r"^in_blocks\.(\d+)\.", k))})
        intermediate = state["mid_block.mlp.fc1.weight"].shape[0]
    if "num_attention_heads" not in generator_cfg:
        raise ConversionError("the original config does not give model.generator.num_attention_heads")
    return dict(
        backbone="bert" if bert else "uvit", codebook_size=codes, num_tokens=positions - 1,
        num_classes=embed.shape[0] - codes - 2, hidden_size=embed.shape[1], num_hidden_layers=layers,
        num_attention_heads=int(generator_cfg["num_attention_heads"]), intermediate_size=intermediate,
        hidden_dropout=float(generator_cfg.get("dropout", 0.1)), attention_dropout=float(generator_cfg.get("attn_drop", 0.1)),
        class_label_dropout=float(generator_cfg.get("class_label_dropout", 0.1)),
    )


def sampling_from_config(generator_cfg: dict, release: Release | None, tokenizer_family: str | None) -> dict:
    sampling = dict(release.sampling) if release else {}
    keys = {"num_steps": "num_inference_steps", "guidance_scale": "guidance_scale", "guidance_decay": "guidance_schedule",
            "randomize_temperature": "randomize_temperature"}
    for original, ours in keys.items():
        if original in generator_cfg and ours not in sampling:
            sampling[ours] = generator_cfg[original]
    sampling.setdefault("softmax_temperature_annealing", _ANNEALING_BY_TOKENIZER.get(tokenizer_family, False))
    return sampling


def _load_tokenizer(tokenizer: str, tokenizer_family: str | None, tokenizer_config: str | None):
    """(model, family name): a converted vistok tokenizer folder, or an original release converted on the way
    by ``tokenizer_family``'s converter."""
    from transformers import AutoConfig, AutoModel

    from ...families import TOKENIZER, converter_specs, spec_for_model_type

    path = Path(tokenizer).expanduser()
    config_json = path / "config.json"
    if path.is_dir() and config_json.is_file() and '"model_type": "vistok_' in config_json.read_text():
        spec = spec_for_model_type(AutoConfig.from_pretrained(path).model_type, TOKENIZER)
        return AutoModel.from_pretrained(path), spec.name if spec else None
    converters = {name: c for name, c in converter_specs().items() if c.kind == TOKENIZER}
    if tokenizer_family not in converters:
        raise ConversionError(f"--tokenizer {tokenizer} is an original release: pass --tokenizer-family (one of "
                              f"{sorted(converters)}) or a --preset, or a converted vistok tokenizer folder")
    scratch = Path(tempfile.mkdtemp(prefix=".vistok-tokenizer-"))
    try:
        folder = converters[tokenizer_family].convert(tokenizer, str(scratch / "tokenizer"), config=tokenizer_config)
        return AutoModel.from_pretrained(folder), tokenizer_family
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def convert(source: str, output: str, *, tokenizer: str, tokenizer_family: str | None = None,
            tokenizer_config: str | None = None, config: str | None = None, preset: str | None = None,
            overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """``vistok convert maskgit``: a MaskGIT generator (+ its tokenizer) -> a MaskGITPipeline folder."""
    from ...pipelines import MaskGITPipeline

    release = choose_release(preset, RELEASES, "maskgit")
    tokenizer_family = tokenizer_family or (release.settings["tokenizer_family"] if release else None)
    original = read_original(source)
    if config is None and original.folder is not None and (original.folder / "config.json").is_file():
        config = str(original.folder / "config.json")
    original_config = load_config_file(config) if config else {}
    generator_cfg = original_config.get("model", {}).get("generator")
    if not isinstance(generator_cfg, dict):
        raise ConversionError("the generator needs its original config (model.generator section): pass --config ORIGINAL.yaml")
    state, _ = convert_generator_state_dict(original)
    image_tokenizer, tokenizer_family = _load_tokenizer(tokenizer, tokenizer_family, tokenizer_config)
    kwargs = infer_generator_config(state, generator_cfg, image_tokenizer.config.codebook_size)
    model_config = MaskGITConfig(**kwargs, sampling_defaults=sampling_from_config(generator_cfg, release, tokenizer_family))
    transformer = load_converted(MaskGITTransformer, model_config, state, original=original)
    pipeline = MaskGITPipeline(image_tokenizer=image_tokenizer.eval(), transformer=transformer)
    base = release.hub_id if release else (original.hub_id or Path(source).name)
    card = render_card(tokenizer_family or image_tokenizer.config.model_type, model_config, image_tokenizer.config, base,
                       card_repo_id(output, push_to_hub), preset)
    return write_model_folder(output, pipeline, card=card, overwrite=overwrite, push_to_hub=push_to_hub)


CLI_OPTIONS = (
    ("--tokenizer", dict(required=True, metavar="SRC", help="the generator's tokenizer: a converted vistok folder, or an "
                                                           "original release (converted on the way)")),
    ("--tokenizer-family", dict(metavar="NAME", help="the converter of an original --tokenizer release (e.g. titok, "
                                                    "one-d-piece); a preset sets it")),
    ("--tokenizer-config", dict(metavar="YAML", help="original config for a bare tokenizer checkpoint file")),
    ("--config", dict(metavar="YAML", help="the generator's original config (YAML/JSON) for a bare checkpoint file")),
)


def render_card(family, cfg: MaskGITConfig, tok_cfg, base_model: str, repo_id: str, preset: str | None) -> str:
    sampling = "\n".join(f"| `{k}` | {v} |" for k, v in cfg.sampling_defaults.items())
    metadata = {"license": "apache-2.0", "library_name": "vistok", "pipeline_tag": "unconditional-image-generation",
                "tags": ["vistok", "maskgit", "class-conditional", "image-generation", family],
                "base_model": base_model if "/" in base_model else None}
    return render_model_card(
        "maskgit", metadata=metadata, model_name=Path(repo_id).name, base_model=base_model, family=family,
        backbone="BERT encoder" if cfg.backbone == "bert" else "U-ViT with long skips",
        hidden_size=str(cfg.hidden_size), num_hidden_layers=str(cfg.num_hidden_layers), num_tokens=str(cfg.num_tokens),
        codebook_size=str(cfg.codebook_size), num_classes=str(cfg.num_classes), sampling=sampling, repo_id=repo_id,
        published=_PUBLISHED.get(preset, "No published numbers recorded for this checkpoint."),
        tokenizer_model_type=tok_cfg.model_type,
    )
