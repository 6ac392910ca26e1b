"""The FlexTok parity fixture (tests/fixtures/flextok, made by make_flextok_fixtures.py) and its release layout:
the weights rebuilt from the stored seed, written as the original hub folder (config.json + model.safetensors)
beside a diffusers folder for the tiny VAE."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from _random_weights import random_state_dict

FIXTURES = Path(__file__).parent / "fixtures" / "flextok"


def load_fixture() -> tuple[dict, dict]:
    meta = json.loads((FIXTURES / "flextok.json").read_text())
    return meta, load_file(str(FIXTURES / "flextok.safetensors"))


def write_release(meta: dict, root: Path, config: dict | None = None) -> tuple[Path, Path]:
    """(original release folder, VAE diffusers folder) under ``root``."""
    release, vae = root / "release", root / "vae"
    release.mkdir(parents=True)
    vae.mkdir(parents=True)
    save_file(random_state_dict(meta["shapes"], meta["seed"]), str(release / "model.safetensors"))
    (release / "config.json").write_text(json.dumps(meta["config"] if config is None else config))
    vae_config = {"_class_name": "AutoencoderKL", "act_fn": "silu", "in_channels": 3, "out_channels": 3,
                  "latent_channels": meta["config"]["vae"]["latent_channels"], "sample_size": meta["image_size"],
                  **meta["tiny_vae"]}
    (vae / "config.json").write_text(json.dumps(vae_config))
    return release, vae
