"""A tiny captioned imagefolder (random RGB images + metadata.jsonl with a "text" column) for the text-to-image
training tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image

CAPTIONS = ("a red car", "a dog", "a cat", "a red dog")


def captioned_image_folder(path: Path, size: int, captions=CAPTIONS) -> Path:
    """``path`` filled with one random ``size`` x ``size`` image per caption (numpy seed 0) and its metadata.jsonl."""
    rng = np.random.default_rng(0)
    path.mkdir()
    lines = []
    for i, caption in enumerate(captions):
        PIL.Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": caption}))
    (path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return path
