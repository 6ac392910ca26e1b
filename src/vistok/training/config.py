"""Training configs: a YAML file, overridden key by key from the command line, checked into dataclasses.

Every key can be overridden as ``--section.key=value`` or ``--section.key value``; values are parsed as
YAML scalars/lists (``--data.crop_scale=[0.5,1.0]``). An unknown section or key is an error naming the
valid ones. Configs are plain data: model families are looked up in a fixed table, never imported
from strings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class ModelSection:
    family: str | None = None  # a tokenizer/generator name of a family descriptor (vistok.families); required unless pretrained
    config: dict = field(default_factory=dict)  # keyword arguments of the family's config class
    pretrained: str | None = None  # a vistok folder or hub id to fine-tune instead of a fresh model
    # modules (or parameters) kept fixed, by name: [encoder, quantizer] trains only the decoder of a pretrained
    # tokenizer (the second stage of 1D-tokenizer training), so its token ids, and generators trained on them, stay valid
    freeze: list = field(default_factory=list)


@dataclass
class DataSection:
    dataset: str | None = None  # hub id, imagefolder, save_to_disk folder
    split: str = "train"
    streaming: bool = False
    image_column: str | None = "image"
    label_column: str | None = None
    caption_column: str | None = None
    token_column: str | None = None  # generator training on pre-tokenized data (`vistok tokenize`)
    crop_scale: list = field(default_factory=lambda: [0.8, 1.0])
    crop_ratio: list = field(default_factory=lambda: [0.75, 4 / 3])
    random_flip: bool = True
    num_workers: int = 0


@dataclass
class TrainingSection:
    output_dir: str = "runs/vistok"
    seed: int = 0
    max_steps: int = 1000  # optimizer steps
    batch_size: int = 8  # per process
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    adam_betas: list = field(default_factory=lambda: [0.9, 0.99])
    lr_schedule: str = "constant"  # constant | cosine
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"  # no | fp16 | bf16
    gradient_checkpointing: bool = False
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint folder
    log_every: int = 10
    image_every: int = 500  # reconstruction / sample grids
    report_to: list = field(default_factory=lambda: ["jsonl"])  # jsonl, tensorboard
    ema_decay: float = 0.0  # 0 = no EMA weights
    export: bool = True  # save_pretrained (+ processor, card) into output_dir/final at the end


@dataclass
class TokenizerLossSection:
    reconstruction: str = "l1"  # l1 | l2
    reconstruction_weight: float = 1.0
    quantizer_weight: float = 1.0
    perceptual_weight: float = 0.0
    lpips_backbone: str | None = None  # local torchvision AlexNet/VGG16 state dict; required when perceptual_weight > 0
    lpips_heads: str | None = None  # LPIPS v0.1 linear heads; default: the installed lpips package's
    discriminator_weight: float = 0.0  # 0 = no GAN
    discriminator_start: int = 0  # optimizer step at which the GAN terms switch on
    discriminator_learning_rate: float | None = None  # default: training.learning_rate
    discriminator_channels: int = 64
    discriminator_layers: int = 3
    adaptive_weight: bool = True  # VQGAN's balance of GAN against reconstruction gradients
    # semantic regularisation (REPA-style): -cos between the tokenizer's semantic_features() and a frozen
    # teacher's patch features; needs a model with a semantic head
    semantic_weight: float = 0.0
    semantic_teacher: str | None = None  # a local transformers vision model folder (DINOv2); required when semantic_weight > 0
    semantic_image_size: int = 224  # the teacher's input size (ImageNet-normalised, bicubic), its patch grid = the head's


@dataclass
class GeneratorLossSection:
    mask_schedule: str = "arccos"  # arccos | cosine (MaskGIT)
    label_smoothing: float | None = None  # None: the family's original recipe (its descriptor's label_smoothing)
    tokenizer: str | None = None  # the frozen tokenizer (folder or hub id) that turns images into tokens
    text_encoder: str | None = None  # text-conditional LlamaGen: a folder (or hub id) with a T5 encoder and its tokenizer


@dataclass
class TokenizerTrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    loss: TokenizerLossSection = field(default_factory=TokenizerLossSection)


@dataclass
class GeneratorTrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=lambda: DataSection(label_column="label"))
    training: TrainingSection = field(default_factory=TrainingSection)
    loss: GeneratorLossSection = field(default_factory=GeneratorLossSection)


def _parse_value(text: str):
    value = yaml.safe_load(text)
    if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_overrides(args: list[str]) -> dict:
    """``["--training.max_steps=10", "--data.dataset", "x"]`` -> ``{"training": {"max_steps": 10}, ...}``."""
    overrides: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise ValueError(f"expected an override like --section.key=value, got {arg!r}")
        if "=" in arg:
            key, text = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ValueError(f"override {arg} has no value")
            key, text = arg[2:], args[i + 1]
            i += 2
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _parse_value(text)
    return overrides


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where or 'config'}; valid keys are {sorted(fields)}")
    values = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, f"{where}.{name}".lstrip("."))
        else:
            values[name] = value
    return cls(**values)


def load_train_config(kind: str, path: str | Path | None = None, overrides: list[str] | dict | None = None):
    """Read ``path`` (YAML), apply ``overrides`` and return a checked Tokenizer/GeneratorTrainConfig."""
    cls = {"tokenizer": TokenizerTrainConfig, "generator": GeneratorTrainConfig}[kind]
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
    if overrides:
        data = _merge(data, overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    config = _build(cls, data, "")
    _check(config)
    return config


def _check(config) -> None:
    t = config.training
    for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "checkpointing_steps", "log_every", "image_every"):
        if not isinstance(getattr(t, name), int) or getattr(t, name) < 1:
            raise ValueError(f"training.{name} must be a positive integer, got {getattr(t, name)!r}")
    if t.mixed_precision is False:  # YAML reads a bare `no` (the documented value) as a boolean
        t.mixed_precision = "no"
    if t.mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"training.mixed_precision must be 'no', 'fp16' or 'bf16', got {t.mixed_precision!r}")
    if t.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"training.lr_schedule must be 'constant' or 'cosine', got {t.lr_schedule!r}")
    if not 0 <= t.ema_decay < 1:
        raise ValueError(f"training.ema_decay must be in [0, 1), got {t.ema_decay!r}")
    unknown = sorted(set(t.report_to) - {"jsonl", "tensorboard"})
    if unknown:
        raise ValueError(f"training.report_to takes 'jsonl' and/or 'tensorboard', got {unknown}")
    if config.data.dataset is None:
        raise ValueError("data.dataset is required: a hub dataset id, an imagefolder or a save_to_disk folder")
    loss = config.loss
    if isinstance(loss, TokenizerLossSection):
        if loss.reconstruction not in ("l1", "l2"):
            raise ValueError(f"loss.reconstruction must be 'l1' or 'l2', got {loss.reconstruction!r}")
        if loss.perceptual_weight > 0 and not loss.lpips_backbone:
            raise ValueError("loss.perceptual_weight > 0 needs loss.lpips_backbone: a local AlexNet/VGG16 weights file "
                             "(torchvision format); LPIPS is off otherwise")
    else:
        if loss.mask_schedule not in ("arccos", "cosine"):
            raise ValueError(f"loss.mask_schedule must be 'arccos' or 'cosine', got {loss.mask_schedule!r}")
        if config.data.token_column is None and loss.tokenizer is None:
            raise ValueError("generator training needs loss.tokenizer (to tokenize images) or data.token_column "
                             "(a dataset written by `vistok tokenize`)")
