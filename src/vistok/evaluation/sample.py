"""``vistok sample``: N images from a pipeline folder, sharded over processes, for gFID/IS (``vistok eval`` on the
output) or inspection.

Image ``i`` gets class ``classes[i % len(classes)]`` (or prompt ``prompts[i % len(prompts)]``) and its own
generator seeded ``seed + i``; vistok pipelines give each image of a batch its own randomness when handed one
generator per image, so the images do not depend on the batch size or the number of processes. Batches are dealt
to the processes of an accelerate/torchrun launch round-robin; each PNG is written atomically, so ``resume=True``
after a crash redoes only missing images. The main process writes ``samples.npz`` (ADM layout: ``arr_0`` uint8
``[N, H, W, 3]``, ``arr_1`` the class ids when class-conditional) and ``manifest.json`` last.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

MANIFEST = "manifest.json"
FORMAT = "vistok-samples/1"
SAMPLING_ARGUMENTS = ("guidance_scale", "num_inference_steps", "temperature", "top_k", "top_p")


def is_samples_folder(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def _save_png(array: np.ndarray, path: Path) -> None:
    import PIL.Image

    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    PIL.Image.fromarray(array).save(scratch, format="PNG")
    os.replace(scratch, path)


@torch.no_grad()
def sample_images(pipeline: str, output: str, *, num_images: int, class_labels=None, prompts=None, seed: int = 0,
                  batch_size: int = 8, overwrite: bool = False, resume: bool = False, npz: bool = True,
                  **sampling) -> Path:
    """Write ``num_images`` samples of ``pipeline`` (a folder or cached hub id) to ``output`` (see the module)."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from ..utils.io import OutputExistsError
    from .loading import load_model

    for name, value, low in (("num_images", num_images, 1), ("batch_size", batch_size, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if overwrite and resume:
        raise ValueError("overwrite and resume exclude each other: overwrite starts again, resume keeps finished images")
    if class_labels is not None and prompts is not None:
        raise ValueError("give class labels or prompts, not both")
    kind, pipe, _ = load_model(pipeline)
    if kind != "pipeline":
        raise ValueError(f"{pipeline} is a tokenizer, not a pipeline folder (model_index.json)")
    accepted = inspect.signature(pipe.__call__).parameters
    unknown = [name for name, value in sampling.items() if value is not None and name not in accepted]
    if unknown:
        raise ValueError(f"{type(pipe).__name__} does not take {unknown}")
    sampling = {name: value for name, value in sampling.items() if value is not None}
    text = "prompt" in accepted and "class_labels" not in accepted
    if text:
        if not prompts:
            raise ValueError(f"{type(pipe).__name__} is text-conditional: give prompts (--prompts FILE, one per line)")
        conditions = list(prompts)
    else:
        if prompts is not None:
            raise ValueError(f"{type(pipe).__name__} is class-conditional: give class labels, not prompts")
        num_classes = pipe.transformer.config.num_classes
        if class_labels is None:
            conditions = list(range(num_classes))
        else:
            names = [c for c in class_labels if isinstance(c, str) and not c.isdigit()]
            ids = dict(zip(names, pipe.get_label_ids(names))) if names else {}
            conditions = [ids[c] if c in ids else int(c) for c in class_labels]
            bad = [c for c in conditions if not 0 <= c < num_classes]
            if not conditions or bad:
                raise ValueError(f"class labels must lie in [0, {num_classes - 1}], got {bad or conditions}")

    state = PartialState(cpu=not torch.cuda.is_available())
    out = Path(output).expanduser()
    if state.is_main_process:
        if out.is_dir() and any(out.iterdir()):
            if overwrite:
                shutil.rmtree(out)
            elif not resume:
                hint = "it is complete" if (out / MANIFEST).is_file() else "it holds an unfinished run: pass resume=True (--resume)"
                raise OutputExistsError(f"{out} already exists and is not empty ({hint}); pass overwrite=True (--overwrite) to replace it")
        elif out.exists() and not out.is_dir():
            raise OutputExistsError(f"{out} exists and is not a folder")
        (out / "images").mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    pipe.to(state.device)
    pipe.set_progress_bar_config(disable=True)

    condition_of = [conditions[i % len(conditions)] for i in range(num_images)]
    batches = [list(range(start, min(num_images, start + batch_size))) for start in range(0, num_images, batch_size)]
    mine = batches[state.process_index::state.num_processes]
    for batch in tqdm(mine, desc=f"vistok sample (process {state.process_index})", disable=not state.is_local_main_process):
        paths = [out / "images" / f"{i:06d}.png" for i in batch]
        if all(p.is_file() for p in paths):
            continue  # finished before an interruption
        generators = [torch.Generator().manual_seed(seed + i) for i in batch]
        chosen = [condition_of[i] for i in batch]
        condition = {"prompt": chosen} if text else {"class_labels": chosen}
        images = pipe(**condition, generator=generators, output_type="np", **sampling).images
        for array, path in zip(images, paths):
            _save_png((np.clip(array, 0, 1) * 255).round().astype(np.uint8), path)

    state.wait_for_everyone()
    if state.is_main_process:
        if npz:
            import PIL.Image

            arrays = np.stack([np.asarray(PIL.Image.open(out / "images" / f"{i:06d}.png").convert("RGB"))
                               for i in range(num_images)])
            extra = {} if text else {"arr_1": np.asarray(condition_of, dtype=np.int64)}
            scratch = out / ".samples.npz.tmp.npz"
            np.savez(scratch, arr_0=arrays, **extra)
            os.replace(scratch, out / "samples.npz")
        manifest = {"format": FORMAT, "pipeline": str(pipeline), "class": type(pipe).__name__, "num_images": num_images,
                    "seed": seed, "batch_size": batch_size, "num_processes": state.num_processes,
                    ("prompts" if text else "class_labels"): conditions, "sampling": sampling,
                    "images": "images/{index:06d}.png", "npz": "samples.npz" if npz else None}
        scratch = out / f".{MANIFEST}.tmp"
        scratch.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(scratch, out / MANIFEST)
    state.wait_for_everyone()
    return out
