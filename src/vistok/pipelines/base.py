"""What vistok's diffusers pipelines share: loading from a hub repo id, output conversion."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from ..image_processing import VistokImageProcessor


def check_generator(generator, batch: int):
    """``None``, one ``torch.Generator`` or a list with one per image; anything else is a TypeError."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (list, tuple)) and all(isinstance(g, torch.Generator) for g in generator):
        if len(generator) != batch:
            raise ValueError(f"generator: a list must hold one torch.Generator per image ({batch}), got {len(generator)}")
        return list(generator)
    raise TypeError(f"generator must be a torch.Generator or a list of them (one per image), got {type(generator).__name__}")


def check_number(name: str, value, *, minimum: float | None = None, exclusive: bool = False,
                 maximum: float | None = None, integer: bool = False, expected: str = "") -> None:
    """A finite number (an int when ``integer``) within the bounds; ValueError/TypeError naming ``name``;
    ``expected`` completes "<name> must be..." (e.g. " >= 0")."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value) or (minimum is not None and (value <= minimum if exclusive else value < minimum)) \
            or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be{expected}, got {value!r}")


def resolve_class_labels(class_labels, num_classes: int, id2label: dict | None, device) -> torch.LongTensor:
    """Class ids ``[B]`` from an int, a list of ints or class names (via ``id2label``), or a 1D int tensor."""
    if isinstance(class_labels, str):
        class_labels = [class_labels]
    if isinstance(class_labels, (list, tuple)) and class_labels and all(isinstance(c, str) for c in class_labels):
        names = {str(name): int(i) for i, name in (id2label or {}).items()}
        unknown = [c for c in class_labels if c not in names]
        if unknown:
            raise ValueError(f"class_labels: unknown class name {', '.join(map(repr, unknown))}; this model's classes are {sorted(names)}")
        class_labels = [names[c] for c in class_labels]
    if isinstance(class_labels, int) and not isinstance(class_labels, bool):
        class_labels = [class_labels]
    try:
        labels = torch.as_tensor(class_labels)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"class_labels must be an int, a 1D int tensor, class names, or a non-empty list of ints "
                         f"in [0, {num_classes - 1}], got {class_labels!r}") from err
    if labels.ndim != 1 or labels.numel() == 0 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"class_labels must be an int, a 1D int tensor, class names, or a non-empty list of ints "
                         f"in [0, {num_classes - 1}], got {class_labels!r}")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"class_labels must lie in [0, {num_classes - 1}], got {labels.tolist()}")
    return labels.long().to(device)


OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class VistokPipeline(DiffusionPipeline):
    """diffusers cannot resolve third-party components from a hub repo id by itself: ``from_pretrained``
    downloads the repo with huggingface_hub first (served from the cache when offline)."""

    @classmethod
    def _class_file_text(cls) -> str:
        """The ``pipeline.py`` a saved folder carries: diffusers' custom-pipeline mechanism (``_class_name`` =
        ``["pipeline", name]``) imports it to find the class, so ``DiffusionPipeline.from_pretrained(folder,
        trust_remote_code=True)`` returns this class; the file only imports vistok."""
        return (f'"""Where this folder\'s pipeline class lives (written by vistok)."""\n'
                f"from vistok.pipelines import {cls.__name__}  # noqa: F401\n")

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        folder = Path(save_directory)
        index_path = folder / "model_index.json"
        index = json.loads(index_path.read_text())
        index["_class_name"] = ["pipeline", type(self).__name__]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        (folder / "pipeline.py").write_text(self._class_file_text())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        path = Path(pretrained_model_name_or_path).expanduser()
        if not path.is_dir():
            from huggingface_hub import snapshot_download

            download_keys = ("cache_dir", "revision", "token", "local_files_only", "force_download")
            path = Path(snapshot_download(str(pretrained_model_name_or_path),
                                          **{k: kwargs.pop(k) for k in download_keys if k in kwargs}))
        class_file = path / "pipeline.py"
        if class_file.is_file() and class_file.read_text() == cls._class_file_text():
            # the folder's class file is vistok's own one-line import of this class: nothing foreign runs
            kwargs.setdefault("trust_remote_code", True)
        return super().from_pretrained(str(path), **kwargs)

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
                    token: str | bool | None = None, revision: str | None = None, create_pr: bool = False,
                    model_card: str | None = None, tags: list[str] | None = None) -> str:
        """Upload every component (safetensors) and the card of the folder it came from; returns the commit URL."""
        from ..utils.hub import push_pipeline_to_hub

        return push_pipeline_to_hub(self, repo_id, model_card=model_card, tags=tags, commit_message=commit_message,
                                    private=private, token=token, revision=revision, create_pr=create_pr)

    @staticmethod
    def check_output_type(output_type) -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be 'pil', 'np', 'pt' or 'latent' (token ids), got {output_type!r}")

    @staticmethod
    def token_output(ids: torch.Tensor, return_dict: bool):
        """``output_type="latent"``: the sampled token ids."""
        return ImagePipelineOutput(images=ids) if return_dict else (ids,)

    def images_from_pixels(self, pixels: torch.Tensor, pixel_range, output_type: str, return_dict: bool):
        images = VistokImageProcessor(size=pixels.shape[-1], pixel_range=pixel_range).postprocess(pixels, output_type=output_type)
        if output_type == "pt":
            images = images.to(pixels.device)
        return ImagePipelineOutput(images=images) if return_dict else (images,)
