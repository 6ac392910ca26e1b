"""Model construction for training, exponential moving averages and the PatchGAN discriminator."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

def model_spec(section, kind: str):
    """The family descriptor's TokenizerSpec/GeneratorSpec of a model section: ``section.family``, or the
    model type of ``section.pretrained``."""
    import vistok  # noqa: F401  (registers the Auto classes)

    from ..families import TOKENIZER, generator_specs, spec_for_model_type, tokenizer_specs

    specs = tokenizer_specs() if kind == TOKENIZER else generator_specs()
    if section.pretrained:
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(section.pretrained).model_type
        spec = spec_for_model_type(model_type, kind)
        if spec is None:
            raise ValueError(f"model.pretrained={section.pretrained!r} is a {model_type}; a {kind} run takes one of "
                             f"{sorted(s.config_class.model_type for s in specs.values())}")
        return spec
    if section.family not in specs:
        raise ValueError(f"model.family={section.family!r} is not a {kind}; choose one of {sorted(specs)}")
    return specs[section.family]


def build_model(section, kind: str, **config_overrides):
    """A fresh model of ``section.family`` from ``section.config``, or ``section.pretrained`` to fine-tune."""
    from transformers import AutoModel

    spec = model_spec(section, kind)  # registers the Auto classes too
    if section.pretrained:
        model = AutoModel.from_pretrained(section.pretrained)
    else:
        model = AutoModel.from_config(spec.config_class(**{**section.config, **config_overrides}))
    freeze_parameters(model, section.freeze)
    return model


def freeze_parameters(model: nn.Module, names: list[str]) -> None:
    """Turn off gradients under each of ``names`` (a submodule path such as ``encoder`` or a parameter's name); the
    optimizer then skips them. A name that is neither, or freezing every parameter, is an error."""
    parameters = dict(model.named_parameters())
    for name in names:
        if name not in parameters:
            try:
                model.get_submodule(name)
            except AttributeError:
                top = sorted({n.split(".")[0] for n in parameters})
                raise ValueError(f"model.freeze: {name!r} is no module or parameter of {type(model).__name__} "
                                 f"(its top-level modules: {top})") from None
    frozen = [p for n, p in parameters.items() if any(n == name or n.startswith(name + ".") for name in names)]
    if names and len(frozen) == len(parameters):
        raise ValueError(f"model.freeze={names} freezes every parameter: nothing would train")
    for p in frozen:
        p.requires_grad_(False)


class EMAWeights:
    """fp32 exponential moving average of a module's floating-point parameters."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().float().clone() for name, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for name, p in module.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for name, p in module.named_parameters():
            p.copy_(self.shadow[name].to(p.dtype))

    def save(self, path: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.shadow.items()}, str(path))

    def load(self, path: Path) -> None:
        loaded = load_file(str(path))
        if set(loaded) != set(self.shadow):
            raise ValueError(f"{path} holds EMA weights of a different model")
        self.shadow = {k: v.float() for k, v in loaded.items()}


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix/taming-transformers layout) giving one logit per image patch."""

    def __init__(self, channels: int = 64, num_layers: int = 3, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, num_layers + 1):
            out = channels * min(2**n, 8)
            stride = 2 if n < num_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride, 1, bias=False), nn.GroupNorm(32 if out % 32 == 0 else 1, out),
                       nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.layers = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.layers(pixels)


def last_decoder_weight(model: nn.Module) -> torch.Tensor:
    """The weight the adaptive GAN weight is balanced on: the tokenizer's own choice, else its last matrix/conv."""
    if hasattr(model, "last_decoder_layer_weight"):
        return model.last_decoder_layer_weight()
    return [p for p in model.parameters() if p.ndim >= 2 and p.requires_grad][-1]
