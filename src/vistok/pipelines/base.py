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

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
                    token: str | bool | None = None, revision: str | None = None, create_pr: bool = False,
                    model_card: str | None = None, tags: list[str] | None = None) -> str:
        """Upload every component (safetensors) and the card of the folder it came from; returns the commit URL."""
        from ..utils.hub import push_pipeline_to_hub

        return push_pipeline_to_hub(self, repo_id, model_card=model_card, tags=tags, commit_message=commit_message,
                                    private=private, token=token, revision=revision, create_pr=create_pr)

    def images_from_pixels(self, pixels: torch.Tensor, pixel_range, output_type: str, return_dict: bool):
        images = VistokImageProcessor(size=pixels.shape[-1], pixel_range=pixel_range).postprocess(pixels, output_type=output_type)
        if output_type == "pt":
            images = images.to(pixels.device)
        return ImagePipelineOutput(images=images) if return_dict else (images,)
