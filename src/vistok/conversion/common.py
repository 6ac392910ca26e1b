"""What every converter shares: reading original checkpoints safely, strict key mapping, and
writing the output folder atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_WRAPPER_KEYS = ("model", "state_dict", "module", "ema")


class ConversionError(ValueError):
    """A checkpoint that cannot be converted as given; the message names what was expected."""


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a pickle (``torch.load(weights_only=True)``), unwrapped from
    ``{"model": ...}``-style containers."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupted or not a checkpoint at all
        raise ConversionError(f"could not read checkpoint {path}: {type(err).__name__}: {err}") from err
    while isinstance(state, dict) and len(state) >= 1 and not any(isinstance(v, torch.Tensor) for v in state.values()):
        wrapped = [k for k in _WRAPPER_KEYS if isinstance(state.get(k), dict)]
        if not wrapped:
            break
        state = state[wrapped[0]]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} does not hold a state dict of tensors")
    return dict(state)


def load_config_file(path: str | os.PathLike) -> dict:
    """An original config (JSON, or YAML parsed as plain data; ``_target_`` strings are never instantiated)."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"config file not found: {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ConversionError(f"could not parse config {path}: {err}") from err
    if not isinstance(data, dict):
        raise ConversionError(f"config {path} must be a mapping, got {type(data).__name__}")
    return data


def resolve_source(source: str) -> Path:
    """A local file or folder, or a hub repo id fetched with huggingface_hub (its cache serves it offline)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source.count("/") == 1 and not source.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(source, allow_patterns=["*.json", "*.yaml", "*.safetensors", "*.bin", "*.md"]))
        except Exception as err:
            raise ConversionError(f"{source!r} is neither a local path nor a downloadable hub repo: {err}") from err
    raise ConversionError(f"original checkpoint not found: {source}")


def find_checkpoint(folder: Path) -> Path:
    """The weights file in an original release folder (safetensors preferred)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ConversionError(f"expected one checkpoint (model.safetensors or a .bin) in {folder}, found: {names}")
    return found[0]


def check_state_dict(converted: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], unused: set[str]) -> None:
    """Fail with the offending key names if anything is missing, unexpected or mis-shaped."""
    problems = []
    if unused:
        problems.append(f"unexpected keys in the original checkpoint: {sorted(unused)[:10]}")
    missing = sorted(set(expected) - set(converted))
    if missing:
        problems.append(f"missing keys: {missing[:10]}")
    extra = sorted(set(converted) - set(expected))
    if extra:
        problems.append(f"keys with no place in the converted model: {extra[:10]}")
    for key in sorted(set(converted) & set(expected)):
        if tuple(converted[key].shape) != tuple(expected[key].shape):
            problems.append(f"{key}: expected shape {tuple(expected[key].shape)}, got {tuple(converted[key].shape)}")
    if problems:
        raise ConversionError("checkpoint does not match the architecture: " + "; ".join(problems))


def load_converted(model_cls, config, converted: dict[str, torch.Tensor], unused=frozenset()):
    """``model_cls(config)`` holding ``converted``: keys and shapes are checked against the architecture
    (built on the meta device, so a mismatch costs no memory) before a strict load; inference mode."""
    with torch.device("meta"):
        expected = model_cls(config).state_dict()
    check_state_dict(converted, expected, set(unused))
    model = model_cls(config)
    model.load_state_dict(converted, strict=True, assign=True)
    return model.train(False)


@contextmanager
def atomic_output_dir(output: str | os.PathLike, overwrite: bool = False):
    """Yield a scratch folder beside ``output``; it becomes ``output`` only if the block succeeds."""
    output = Path(output).expanduser().resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise ConversionError(f"output {output} already exists and is not empty; pass --overwrite to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    backup = None
    if output.exists():
        backup = output.parent / f".{output.name}.old-{os.getpid()}"
        os.replace(output, backup)
    os.replace(scratch, output)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
