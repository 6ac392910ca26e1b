"""LPIPS (Zhang et al. 2018, v0.1) with AlexNet or VGG16 backbones from local files only.

No wheel ships ImageNet AlexNet/VGG16 weights, so the backbone comes from a local torchvision-format
state dict (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``: ``features.N.weight`` keys, read with
``torch.load(weights_only=True)`` or safetensors). The backbones are re-implemented here in plain torch
(torchvision does not import beside torch 2.13) with torchvision's layer indices so those files load
as they are. The linear heads (``lin0..lin4``, a few KB) come from the ``lpips`` package's
``weights/v0.1/{alex,vgg}.pth`` — found inside an installed ``lpips`` without importing it (it imports
torchvision) — or from an explicit path.

Distance: inputs in [0, 1] -> [-1, 1] -> LPIPS scaling layer -> per-layer features, unit-normalised
over channels -> squared difference weighted by the head -> spatial mean -> sum over layers.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

# (torchvision `features` index of each layer, its kind and arguments); LPIPS taps the ReLUs listed in TAPS.
_ALEXNET = [(0, "conv", (3, 64, 11, 4, 2)), (1, "relu", ()), (2, "pool", (3, 2)), (3, "conv", (64, 192, 5, 1, 2)),
            (4, "relu", ()), (5, "pool", (3, 2)), (6, "conv", (192, 384, 3, 1, 1)), (7, "relu", ()),
            (8, "conv", (384, 256, 3, 1, 1)), (9, "relu", ()), (10, "conv", (256, 256, 3, 1, 1)), (11, "relu", ())]
_VGG16_WIDTHS = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512]
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# The LPIPS scaling layer (ImageNet statistics expressed in [-1, 1]).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _vgg16_layers():
    layers, index, in_channels = [], 0, 3
    for width in _VGG16_WIDTHS:
        if width == "P":
            layers.append((index, "pool", (2, 2)))
            index += 1
        else:
            layers += [(index, "conv", (in_channels, width, 3, 1, 1)), (index + 1, "relu", ())]
            index, in_channels = index + 2, width
    return [layer for layer in layers if layer[0] <= TAPS["vgg"][-1]]


def _build(spec) -> nn.Sequential:
    modules = []
    for _, kind, args in spec:
        if kind == "conv":
            cin, cout, kernel, stride, padding = args
            modules.append(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding))
        elif kind == "relu":
            modules.append(nn.ReLU())
        else:
            modules.append(nn.MaxPool2d(args[0], stride=args[1]))
    return nn.Sequential(*modules)


def packaged_lpips_heads(net: str) -> Path | None:
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / "v0.1" / f"{net}.pth"
        if path.is_file():
            return path
    return None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from ..utils.io import load_pickle

    state = load_pickle(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state


class LPIPS(nn.Module):
    """``LPIPS.load(backbone_path)`` then ``lpips(x, y)`` -> ``[B]`` distances for images in [0, 1]."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in TAPS:
            raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
        self.net = net
        self.features = _build(_ALEXNET if net == "alex" else _vgg16_layers())
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS[net])
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    @classmethod
    def load(cls, backbone: str | os.PathLike, heads: str | os.PathLike | None = None) -> "LPIPS":
        """Backbone from a torchvision AlexNet/VGG16 state dict (the net is read off its first conv);
        heads from ``heads`` or the installed lpips package. Raises FileNotFoundError / ValueError."""
        backbone = Path(backbone).expanduser()
        if not backbone.is_file():
            raise FileNotFoundError(f"LPIPS backbone weights {str(backbone)!r} do not exist")
        state = _read_state_dict(backbone)
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")} or state
        first = state.get("0.weight")
        if first is None or first.ndim != 4:
            raise ValueError(f"{backbone} is not a torchvision AlexNet/VGG16 state dict: no 'features.0.weight' conv")
        net = {11: "alex", 3: "vgg"}.get(int(first.shape[-1]))
        if net is None:
            raise ValueError(f"{backbone}: first conv has kernel {tuple(first.shape[-2:])}; expected 11x11 (AlexNet) or 3x3 (VGG16)")
        model = cls(net)
        expected = model.features.state_dict()
        keys = {f"{i}.{p}" for i, kind, _ in (_ALEXNET if net == "alex" else _vgg16_layers()) if kind == "conv"
                for p in ("weight", "bias")}
        missing = sorted(keys - set(state))
        if missing:
            raise ValueError(f"{backbone} lacks {net} backbone keys: features.{missing[0]} (and {len(missing) - 1} more)")
        renamed = {}
        for key in sorted(keys):
            if tuple(state[key].shape) != tuple(expected[key].shape):
                raise ValueError(f"{backbone}: features.{key} has shape {tuple(state[key].shape)}, "
                                 f"expected {tuple(expected[key].shape)}")
            renamed[key] = state[key].float()
        model.features.load_state_dict(renamed)

        heads_path = Path(heads).expanduser() if heads is not None else packaged_lpips_heads(net)
        if heads_path is None or not heads_path.is_file():
            raise FileNotFoundError(f"no LPIPS linear heads for {net!r}: pass the lpips package's weights/v0.1/{net}.pth "
                                    "or install lpips (`pip install --no-deps lpips==0.1.4`; only its weight files are used)")
        head_state = _read_state_dict(heads_path)
        for layer, head in enumerate(model.heads):
            key = f"lin{layer}.model.1.weight"
            if key not in head_state:
                raise ValueError(f"{heads_path} is not an LPIPS v0.1 head file: missing {key!r}")
            if tuple(head_state[key].shape) != tuple(head.weight.shape):
                raise ValueError(f"{heads_path}: {key} has shape {tuple(head_state[key].shape)}, expected "
                                 f"{tuple(head.weight.shape)} for the {net} backbone")
            head.weight.data.copy_(head_state[key].float())
        return model

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        # Modules sit at torchvision's `features` indices, so TAPS index them directly.
        out = []
        for index, module in enumerate(self.features):
            x = module(x)
            if index in TAPS[self.net]:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``[B]`` distances on the module's device. Differentiable in ``x`` and ``y`` (the training loss
        uses it); the weights are frozen."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS takes two image batches [B, 3, H, W] of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        device = self.shift.device
        x = ((x.float().to(device) * 2 - 1) - self.shift) / self.scale
        y = ((y.float().to(device) * 2 - 1) - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=device)
        for head, fx, fy in zip(self.heads, self._taps(x), self._taps(y)):
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total
