"""PNG grids of image rows (reconstructions at several token counts, samples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import torch


def save_grid(rows: list[torch.Tensor], path: str | Path, padding: int = 2) -> None:
    """Write rows of images ``[B, 3, H, W]`` in [0, 1] (clamped) as one PNG, one row per tensor."""
    columns = max(r.shape[0] for r in rows)
    height, width = rows[0].shape[-2:]
    canvas = np.full((len(rows) * (height + padding) + padding, columns * (width + padding) + padding, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        images = (row.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for j, image in enumerate(images):
            top, left = padding + i * (height + padding), padding + j * (width + padding)
            canvas[top:top + height, left:left + width] = image
    path = Path(path)
    scratch = path.with_name(f".{path.name}.partial")
    PIL.Image.fromarray(canvas).save(scratch, format="PNG")
    scratch.replace(path)
