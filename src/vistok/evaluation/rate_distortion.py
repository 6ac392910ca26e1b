"""Rate–distortion against JPEG and WebP, and the figures ``vistok eval`` writes.

A token sequence of length k over a codebook of size K costs ``k * log2(K) / 8`` bytes per image
(the ideal fixed-length code, as the One-D-Piece paper counts it). JPEG and WebP are encoded with
Pillow (library defaults apart from ``quality``: JPEG 4:2:0 chroma subsampling, WebP method 4,
lossy) over a fixed quality grid; each point is the mean file size and the mean metrics over the
same images the tokenizer saw. At the smallest token counts even quality 1 is usually several
times larger than the token stream; the JSON keeps every point so the gap is visible.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

GRID_IMAGES = 4  # rows of the reconstruction grid; the sample grid shows twice as many
CODECS = {"jpeg": "JPEG", "webp": "WEBP"}  # curve name -> Pillow format
CODEC_NAMES = {"jpeg": "JPEG", "webp": "WebP"}
QUALITIES = (1, 2, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def token_bytes(num_tokens: int, codebook_size: int) -> float:
    """Bytes per image of ``num_tokens`` ids over ``codebook_size`` codes: ``k * log2(K) / 8``."""
    if num_tokens < 1 or codebook_size < 2:
        raise ValueError(f"need num_tokens >= 1 and codebook_size >= 2, got {num_tokens} and {codebook_size}")
    return num_tokens * math.log2(codebook_size) / 8.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in [0, 1] -> ``[B, H, W, 3]`` uint8 (rounded)."""
    return (images.detach().float().clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).double() / 255.0


def codec_round_trip(images: np.ndarray, codec: str, quality: int) -> tuple[np.ndarray, list[int]]:
    """Encode each ``[H, W, 3]`` uint8 image with ``codec`` at ``quality``; return decoded images and byte sizes."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    decoded, sizes = [], []
    for image in images:
        buffer = io.BytesIO()
        PIL.Image.fromarray(image, "RGB").save(buffer, format=CODECS[codec], quality=int(quality))
        sizes.append(buffer.tell())
        buffer.seek(0)
        decoded.append(np.asarray(PIL.Image.open(buffer).convert("RGB")))
    return np.stack(decoded), sizes


AXIS_LABELS = {"psnr": "PSNR (dB, higher is better)", "ssim": "SSIM (1 = identical, higher is better)",
               "lpips": "LPIPS (lower is better)"}
LABELLED_QUALITIES = (1, 5, 10, 20, 40, 60, 80, 95)  # codec points whose quality is written beside them


def plot_rate_distortion(curves: dict, path: Path, title: str, distortion_keys=("psnr", "lpips")) -> Path:
    """Two panels (PSNR and LPIPS, or SSIM when LPIPS was skipped) against bytes per image, log x.

    ``curves`` maps a label to points with ``bytes_per_image`` and the distortion keys; the labels
    "jpeg" and "webp" are drawn dashed and their points at ``LABELLED_QUALITIES`` marked "q<quality>"; the
    tokenizer is drawn solid, each point marked with its token count.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(distortion_keys), figsize=(6.5 * len(distortion_keys), 4.8), squeeze=False)
    for axis, key in zip(axes[0], distortion_keys):
        for name, points in curves.items():
            points = [p for p in points if p.get(key) is not None and math.isfinite(p[key])]
            if not points:
                continue
            xs, ys = [p["bytes_per_image"] for p in points], [p[key] for p in points]
            if name in CODECS:
                line, = axis.plot(xs, ys, marker=".", linestyle="--", label=f"{CODEC_NAMES[name]} (q = quality)")
                for point, x, y in zip(points, xs, ys):
                    if point.get("quality") in LABELLED_QUALITIES:
                        axis.annotate(f"q{point['quality']}", (x, y), textcoords="offset points", xytext=(4, -9),
                                      fontsize=7, color=line.get_color())
            else:
                line, = axis.plot(xs, ys, marker="o", linewidth=2, label=f"{name} (numbers = tokens)")
                for point, x, y in zip(points, xs, ys):
                    if point.get("num_tokens") is not None:
                        axis.annotate(str(point["num_tokens"]), (x, y), textcoords="offset points", xytext=(0, 6),
                                      ha="center", fontsize=8, color=line.get_color())
        axis.set_xscale("log")
        axis.set_xlabel("bytes per image (log scale)")
        axis.set_ylabel(AXIS_LABELS.get(key, key.upper()))
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


GRID_MIN_TILE = 96  # small images are enlarged (nearest neighbour) so pixels and labels stay readable


def _tile(image: np.ndarray) -> PIL.Image.Image:
    tile = PIL.Image.fromarray(image, "RGB")
    scale = max(1, math.ceil(GRID_MIN_TILE / max(tile.size)))
    return tile.resize((tile.width * scale, tile.height * scale), PIL.Image.NEAREST) if scale > 1 else tile


def _font(size: int = 12):
    import PIL.ImageFont

    try:
        return PIL.ImageFont.load_default(size=size)
    except (TypeError, OSError):  # a Pillow without FreeType: the fixed bitmap font
        return PIL.ImageFont.load_default()


def psnr_uint8(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB, over [0, 255]) of one uint8 image against another; inf when they are equal."""
    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def token_heading(num_tokens: int, bytes_per_image: float | None = None) -> str:
    heading = f"{num_tokens} token" + ("" if num_tokens == 1 else "s")
    return heading if bytes_per_image is None else f"{heading}, {bytes_per_image:.3g} B"


def reconstruction_grid(originals: np.ndarray, reconstructions: dict[int, np.ndarray], path: Path,
                        codebook_size: int | None = None) -> Path:
    """PNG grid: one row per image, the original then the reconstruction at each token count (increasing).

    Column headings say "original" and "<k> tokens" (with the bytes per image when ``codebook_size`` is given);
    each reconstruction carries its PSNR (dB) against the original of its row."""
    counts = sorted(reconstructions)
    rows = [[_tile(originals[r])] + [_tile(reconstructions[k][r]) for k in counts] for r in range(originals.shape[0])]
    width, height = rows[0][0].size
    label_height, pad = 18, 2
    grid = PIL.Image.new("RGB", ((len(counts) + 1) * (width + pad) + pad, label_height + len(rows) * (height + pad) + pad),
                         "white")
    draw = PIL.ImageDraw.Draw(grid)
    font, small = _font(12), _font(11)
    headings = ["original"] + [token_heading(k, None if codebook_size is None else token_bytes(k, codebook_size))
                               for k in counts]
    for column, label in enumerate(headings):
        draw.text((pad + column * (width + pad), 2), label, fill="black", font=font)
    for row, tiles in enumerate(rows):
        top = label_height + pad + row * (height + pad)
        for column, tile in enumerate(tiles):
            left = pad + column * (width + pad)
            grid.paste(tile, (left, top))
            if column:
                value = psnr_uint8(reconstructions[counts[column - 1]][row], originals[row])
                text = "exact" if math.isinf(value) else f"{value:.1f} dB"
                box = draw.textbbox((left + 2, top + height - 15), text, font=small)
                draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill="black")
                draw.text((left + 2, top + height - 15), text, fill="white", font=small)
    grid.save(path)
    return path


def sample_grid(samples: np.ndarray, path: Path, columns: int = 4, captions: list[str] | None = None) -> Path:
    """PNG grid of generated samples ``[N, H, W, 3]`` uint8, ``columns`` per row, each captioned below with
    ``captions[i]`` (e.g. its class name) when given."""
    if captions is not None and len(captions) < len(samples):
        raise ValueError(f"need a caption per sample: {len(captions)} captions for {len(samples)} samples")
    tiles = [_tile(image) for image in samples]
    (width, height), pad = tiles[0].size, 2
    caption_height = 16 if captions is not None else 0
    rows = math.ceil(len(tiles) / columns)
    grid = PIL.Image.new("RGB", (min(len(tiles), columns) * (width + pad) + pad,
                                 rows * (height + caption_height + pad) + pad), "white")
    draw, font = PIL.ImageDraw.Draw(grid), _font(11)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        left, top = pad + column * (width + pad), pad + row * (height + caption_height + pad)
        grid.paste(tile, (left, top))
        if captions is not None:
            text = str(captions[index])
            while len(text) > 2 and draw.textlength(text, font=font) > width - 2:  # shortened to fit its tile
                text = text[:-2] + "…"
            draw.text((left + 1, top + height + 1), text, fill="black", font=font)
    grid.save(path)
    return path


MATCH_TOLERANCE = 1.25


def matched_sizes(curves: dict) -> list[dict]:
    """For each tokenizer point, the JPEG/WebP quality whose mean size is nearest (in ratio), or None when
    no quality comes within a factor ``MATCH_TOLERANCE`` (typical at small token counts: the codecs cannot
    get that small)."""
    out = []
    for point in curves["tokenizer"]:
        row = {"num_tokens": point["num_tokens"], "bytes_per_image": point["bytes_per_image"]}
        for codec in CODECS:
            nearest = min(curves[codec], key=lambda p: abs(math.log(p["bytes_per_image"] / point["bytes_per_image"])))
            ratio = nearest["bytes_per_image"] / point["bytes_per_image"]
            row[codec] = nearest if 1 / MATCH_TOLERANCE <= ratio <= MATCH_TOLERANCE else None
        out.append(row)
    return out


def codec_dominance(curves: dict, key: str = "psnr") -> dict:
    """Which codec settings the tokenizer beats outright: a tokenizer point with no more bytes per image and a
    higher ``key`` (higher is better). Unlike ``matched_sizes`` this needs no size match, so it also speaks
    for the smallest settings, where the token stream is far smaller than any file the codec can write.

    Per codec: ``beaten_qualities`` (ascending) and, per quality, the token counts that beat it."""
    out = {"metric": key}
    for codec in CODECS:
        points = []
        for point in curves[codec]:
            winners = [t["num_tokens"] for t in curves["tokenizer"]
                       if t["bytes_per_image"] <= point["bytes_per_image"] and t.get(key) is not None
                       and point.get(key) is not None and t[key] > point[key]]
            points.append({"quality": point["quality"], "bytes_per_image": point["bytes_per_image"], key: point.get(key),
                           "beaten_by_num_tokens": winners})
        out[codec] = {"beaten_qualities": [p["quality"] for p in points if p["beaten_by_num_tokens"]], "points": points}
    return out
