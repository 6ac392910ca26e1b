"""VistokImageProcessor: images <-> the pixel tensors a vistok tokenizer reads and writes."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

OUTPUT_TYPES = ("pil", "np", "pt")
_RESAMPLE = {"bicubic": PIL.Image.BICUBIC, "bilinear": PIL.Image.BILINEAR, "lanczos": PIL.Image.LANCZOS, "nearest": PIL.Image.NEAREST}


class VistokImageProcessor(BaseImageProcessor):
    """Resize the shorter edge to ``size``, center-crop ``size`` x ``size``, rescale to ``pixel_range``.

    An image already ``size`` x ``size`` is only rescaled. ``postprocess`` maps model outputs back
    (clamped) to PIL images, numpy ``[B, H, W, 3]`` or torch ``[B, 3, H, W]`` in [0, 1].
    """

    model_input_names = ["pixel_values"]

    def __init__(self, size: int = 256, pixel_range=(0.0, 1.0), resample: str = "bicubic", do_resize: bool = True,
                 do_center_crop: bool = True, **kwargs):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
        try:
            low, high = (float(v) for v in pixel_range)
        except (TypeError, ValueError):
            raise ValueError(f"pixel_range must be two numbers (low, high), got {pixel_range!r}") from None
        if not low < high:
            raise ValueError(f"pixel_range must be (low, high) with low < high, got {pixel_range!r}")
        # BaseImageProcessor's kwargs machinery belongs to its torchvision/PIL backends; we keep plain attributes.
        super(BaseImageProcessor, self).__init__(**kwargs)
        self.size, self.pixel_range, self.resample = size, [low, high], resample
        self.do_resize, self.do_center_crop = do_resize, do_center_crop

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> "VistokImageProcessor":
        """As transformers' ``from_pretrained``; a file that is JSON but not a valid processor names the file."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except (ValueError, TypeError, AttributeError) as err:  # AttributeError: JSON that is not an object
            raise ValueError(f"{pretrained_model_name_or_path}: preprocessor_config.json is not a valid "
                             f"VistokImageProcessor config: {err}") from err

    @classmethod
    def from_model_config(cls, config, size: int | None = None) -> "VistokImageProcessor":
        """The processor a tokenizer config expects: its ``image_size`` (or ``size``) and ``pixel_range``."""
        return cls(size=size if size is not None else config.image_size, pixel_range=config.pixel_range)

    def to_dict(self):
        out = super(BaseImageProcessor, self).to_dict()
        out.pop("_valid_kwargs_names", None)
        return out

    # -- preprocessing ------------------------------------------------------------------------
    def _to_pil(self, image) -> PIL.Image.Image:
        if isinstance(image, PIL.Image.Image):
            return image.convert("RGB")
        if isinstance(image, torch.Tensor):
            if image.ndim != 3 or image.shape[0] not in (1, 3):
                raise ValueError(f"a tensor image must have shape [3, H, W] or [1, H, W], got {tuple(image.shape)}")
            image = image.detach().cpu().permute(1, 2, 0).numpy()
        if isinstance(image, np.ndarray):
            if image.ndim == 2:
                image = image[..., None]
            if image.ndim != 3 or image.shape[-1] not in (1, 3):
                raise ValueError(f"an array image must have shape [H, W, 3] or [H, W], got {image.shape}")
            if image.dtype != np.uint8:
                if not np.isfinite(image).all():
                    raise ValueError("image contains NaN or inf values")
                image = np.clip(np.rint(image.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
            if image.shape[-1] == 1:
                image = np.repeat(image, 3, axis=-1)
            return PIL.Image.fromarray(image, "RGB")
        raise TypeError(f"images must be PIL images, numpy arrays or torch tensors, got {type(image).__name__}")

    def _resize_and_crop(self, image: PIL.Image.Image) -> PIL.Image.Image:
        size = self.size
        if image.size == (size, size):
            return image
        width, height = image.size
        if self.do_resize:
            scale = size / min(width, height)
            new = (max(size, round(width * scale)), max(size, round(height * scale)))
            image = image.resize(new, _RESAMPLE[self.resample])
            width, height = image.size
        if self.do_center_crop:
            if width < size or height < size:
                raise ValueError(f"image of {width}x{height} is smaller than the crop size {size}; enable do_resize")
            left, top = (width - size) // 2, (height - size) // 2
            image = image.crop((left, top, left + size, top + size))
        return image

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            images = list(images)
        elif isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ValueError("images is empty: expected at least one image")
        arrays = [np.asarray(self._resize_and_crop(self._to_pil(img)), dtype=np.float32) / 255.0 for img in images]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"images have different sizes after processing {sorted(shapes)}; enable do_resize/do_center_crop")
        low, high = self.pixel_range
        batch = np.stack(arrays).transpose(0, 3, 1, 2) * (high - low) + low
        if return_tensors == "pt":
            batch = torch.from_numpy(np.ascontiguousarray(batch))
        elif return_tensors not in (None, "np"):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        return BatchFeature({"pixel_values": batch})

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    # -- postprocessing -----------------------------------------------------------------------
    def postprocess(self, pixel_values: torch.Tensor, output_type: str = "pil"):
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(f"pixel_values must be a tensor of shape [B, 3, H, W], got {shape}")
        low, high = self.pixel_range
        images = ((pixel_values.detach().float().cpu() - low) / (high - low)).clamp(0.0, 1.0)
        if output_type == "pt":
            return images
        array = images.permute(0, 2, 3, 1).numpy()
        if output_type == "np":
            return array
        return [PIL.Image.fromarray(np.rint(a * 255.0).astype(np.uint8)) for a in array]
