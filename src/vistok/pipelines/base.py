"""What vistok's diffusers pipelines share: loading from a hub repo id, output conversion."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from ..image_processing import VistokImageProcessor


class VistokPipeline(DiffusionPipeline):
    """diffusers cannot resolve third-party components from a hub repo id by itself: ``from_pretrained``
    downloads the repo with huggingface_hub first (served from the cache when offline)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        path = Path(pretrained_model_name_or_path).expanduser()
        if not path.is_dir():
            from huggingface_hub import snapshot_download

            download_keys = ("cache_dir", "revision", "token", "local_files_only", "force_download")
            path = Path(snapshot_download(str(pretrained_model_name_or_path),
                                          **{k: kwargs.pop(k) for k in download_keys if k in kwargs}))
        return super().from_pretrained(str(path), **kwargs)

    def images_from_pixels(self, pixels: torch.Tensor, pixel_range, output_type: str, return_dict: bool):
        images = VistokImageProcessor(size=pixels.shape[-1], pixel_range=pixel_range).postprocess(pixels, output_type=output_type)
        if output_type == "pt":
            images = images.to(pixels.device)
        return ImagePipelineOutput(images=images) if return_dict else (images,)
