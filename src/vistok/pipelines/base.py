"""What vistok's diffusers pipelines share: loading from a hub repo id, argument checks with the messages
diffusers users expect (class labels as ids, tensors or names; one generator or one per image; finite
sampling settings), ``num_images_per_prompt``, ``callback_on_step_end`` and output conversion."""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from ..image_processing import VistokImageProcessor

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def check_number(name: str, value, *, minimum: float | None = None, above: float | None = None,
                 maximum: float | None = None, integer: bool = False):
    """A finite int/float (an int if ``integer``) within the bounds; the error names the argument."""
    kind = "an int" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if above is not None and maximum is not None:
        expected, ok = f"in ({above}, {maximum}]", above < value <= maximum
    elif minimum is not None and maximum is not None:
        expected, ok = f"in [{minimum}, {maximum}]", minimum <= value <= maximum
    elif above is not None:
        expected, ok = f"> {above}", value > above
    elif minimum is not None:
        expected, ok = f">= {minimum}", value >= minimum
    elif maximum is not None:
        expected, ok = f"<= {maximum}", value <= maximum
    else:
        expected, ok = "a finite number", True
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {expected} (a finite number), got {value!r}")
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def with_sampling_defaults(config, **settings) -> list:
    """The values of ``settings`` in order, each left ``None`` replaced by ``config.sampling_defaults[name]`` (the
    release's sampling settings a converted transformer carries)."""
    defaults = config.sampling_defaults
    return [defaults[name] if value is None else value for name, value in settings.items()]


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

    # -- arguments shared by every pipeline ------------------------------------------------------------
    def class_label_ids(self, class_labels, num_images_per_prompt: int = 1) -> torch.LongTensor:
        """``class_labels`` (an int, a list of ints, a 1-D integer tensor, or class names looked up in the
        transformer config's ``id2label``) as ids on the transformer's device, each repeated
        ``num_images_per_prompt`` times."""
        num_classes = self.transformer.config.num_classes
        check_number("num_images_per_prompt", num_images_per_prompt, minimum=1, integer=True)
        if class_labels is None:
            raise ValueError(f"{type(self).__name__} is class-conditional: pass class_labels (class ids in "
                             f"[0, {num_classes - 1}], or class names)")
        if isinstance(class_labels, (int, str)) and not isinstance(class_labels, bool):
            class_labels = [class_labels]
        if isinstance(class_labels, (list, tuple)) and class_labels and all(isinstance(c, str) for c in class_labels):
            class_labels = self.get_label_ids(list(class_labels))
        if isinstance(class_labels, torch.Tensor):
            labels = class_labels.detach().to("cpu")
        elif isinstance(class_labels, (list, tuple)) and all(isinstance(c, int) and not isinstance(c, bool) for c in class_labels):
            labels = torch.tensor(list(class_labels), dtype=torch.long)
        else:
            labels = None
        if labels is None or labels.ndim != 1 or labels.numel() == 0 or labels.is_floating_point() or labels.is_complex() \
                or labels.dtype == torch.bool:
            raise ValueError(f"class_labels must be a non-empty list of ints in [0, {num_classes - 1}] (or class names, "
                             f"or a 1-D integer tensor), got {class_labels!r}")
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(f"class_labels must lie in [0, {num_classes - 1}], got {labels.tolist()}")
        return labels.long().repeat_interleave(num_images_per_prompt).to(self.transformer.device)

    def get_label_ids(self, label: str | list[str]) -> list[int]:
        """Class ids for class names, from the transformer config's ``id2label`` (as diffusers' DiT pipeline)."""
        names = {str(name): int(i) for i, name in (self.transformer.config.id2label or {}).items()}
        labels = [label] if isinstance(label, str) else list(label)
        unknown = [name for name in labels if name not in names]
        if unknown:
            raise ValueError(f"unknown class name(s) {unknown}; this model's classes are {sorted(names)}")
        return [names[name] for name in labels]

    @staticmethod
    def check_generator(generator, batch: int):
        """None, one ``torch.Generator``, or a list with one generator per image."""
        if generator is None or isinstance(generator, torch.Generator):
            return generator
        if isinstance(generator, (list, tuple)) and all(isinstance(g, torch.Generator) for g in generator):
            if len(generator) != batch:
                raise ValueError(f"generator is a list of {len(generator)} generators but {batch} images are generated: "
                                 "pass one generator per image, or a single generator")
            return list(generator)
        raise TypeError(f"generator must be a torch.Generator or a list of them (one per image), got {generator!r}")

    @staticmethod
    def check_output_type(output_type: str) -> str:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be 'pil', 'np', 'pt' or 'latent' (token ids), got {output_type!r}")
        return output_type

    def check_callback(self, callback_on_step_end, tensor_inputs) -> list[str]:
        """``callback_on_step_end(pipe, step, timestep, callback_kwargs) -> dict`` (diffusers' semantics: the
        returned tensors replace the pipeline's); ``tensor_inputs`` name what it receives."""
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise TypeError(f"callback_on_step_end must be callable, got {callback_on_step_end!r}")
        tensor_inputs = list(tensor_inputs or [])
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {unknown} are not available; "
                             f"choose from {self._callback_tensor_inputs}")
        return tensor_inputs

    @staticmethod
    def run_callback(pipe, callback, step: int, tensor_inputs: list[str], tensors: dict) -> dict:
        """Call the step-end callback with the requested tensors; returns the (possibly replaced) tensors."""
        if callback is None:
            return tensors
        out = callback(pipe, step, step, {name: tensors[name] for name in tensor_inputs}) or {}
        return {**tensors, **{k: v for k, v in out.items() if k in tensors}}

    def finish(self, token_ids: torch.LongTensor, output_type: str, return_dict: bool, pixels=None, generator=None):
        """The pipeline output: token ids for ``output_type="latent"``, else the decoded images (``pixels``, or
        ``image_tokenizer.decode(token_ids)``) converted by the image processor. A tokenizer whose decoding samples
        (``decode`` takes a ``generator``, e.g. a flow decoder) draws from the pipeline's ``generator`` (one, or one per image)."""
        if output_type == "latent":
            return ImagePipelineOutput(images=token_ids) if return_dict else (token_ids,)
        if pixels is None:
            kwargs = {}
            if "generator" in inspect.signature(self.image_tokenizer.decode).parameters and (
                    isinstance(generator, torch.Generator)
                    or (isinstance(generator, (list, tuple)) and len(generator) == token_ids.shape[0])):
                kwargs["generator"] = generator
            pixels = self.image_tokenizer.decode(token_ids.to(self.image_tokenizer.device), **kwargs)
        return self.images_from_pixels(pixels, self.image_tokenizer.config.pixel_range, output_type, return_dict)

    def images_from_pixels(self, pixels: torch.Tensor, pixel_range, output_type: str, return_dict: bool):
        images = VistokImageProcessor(size=pixels.shape[-1], pixel_range=pixel_range).postprocess(pixels, output_type=output_type)
        if output_type == "pt":
            images = images.to(pixels.device)
        return ImagePipelineOutput(images=images) if return_dict else (images,)
