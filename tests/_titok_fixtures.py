"""Helpers to rebuild the original-layout TiTok / One-D-Piece checkpoints the parity fixtures describe."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from _random_weights import random_state_dict

FIXTURES = Path(__file__).parent / "fixtures" / "titok"
VARIANTS = ("titok_legacy", "titok_vq", "titok_vae", "one_d_piece")


def load_fixture(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    return meta, load_file(str(FIXTURES / f"{name}.safetensors"))


def original_state_dict(meta: dict) -> dict[str, torch.Tensor]:
    return random_state_dict(meta["state_dict_shapes"], meta["weights_seed"])


def write_release_folder(meta: dict, folder: Path) -> Path:
    """The PyTorchModelHubMixin layout of the yucornetto/* releases: config.json + model.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(original_state_dict(meta), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(meta["original_config"], indent=2))
    return folder


def write_pickle_release(meta: dict, folder: Path) -> tuple[Path, Path]:
    """The pickle mirrors: a bare state dict ``.bin`` beside the original inference YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint, config = folder / "tokenizer.bin", folder / "tokenizer.yaml"
    torch.save(original_state_dict(meta), checkpoint)
    config.write_text(yaml.safe_dump(meta["original_config"]))
    return checkpoint, config
