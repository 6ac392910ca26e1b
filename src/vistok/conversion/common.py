"""What every converter shares: the release record, reading original checkpoints safely, strict key
mapping, and writing the output folder (weights, image processor, card; optional push) atomically."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from ..utils.io import SourceNotFoundError, UnreadablePickleError, atomic_output_dir, is_repo_id, load_pickle, resolve_source

CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_WRAPPER_KEYS = ("model", "state_dict", "module", "ema")


class ConversionError(ValueError):
    """A checkpoint that cannot be converted as given; the message names what was expected."""


@dataclass(frozen=True)
class Release:
    """A released checkpoint: where it lives, what its file cannot say, and what was published.

    ``filename`` names the checkpoint inside a hub repo that holds several (None: the repo is one release
    folder); ``settings`` holds what the converter cannot read from the weights (the original config
    section, the image size, the scales, ...); ``sampling`` the released sampling settings of a generator;
    ``tokenizer`` the name of the release a generator decodes with.
    """

    repo: str
    description: str
    filename: str | None = None
    license: str = "apache-2.0"
    settings: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    tokenizer: str | None = None

    @property
    def hub_id(self) -> str:
        return f"{self.repo}/{self.filename}" if self.filename else self.repo


def choose_release(name: str | None, releases: dict, what: str) -> Release | None:
    """The release called ``name`` (None: none chosen); an unknown name lists the known ones."""
    if name is None:
        return None
    if name not in releases:
        raise ConversionError(f"unknown {what} preset {name!r}; choose from {sorted(releases)}")
    return releases[name]


def release_image_size(image_size: int | None, release: Release | None, kind: str, examples: str = "256") -> int:
    """The image size a conversion works at: ``--image-size``, else the release's ``settings["image_size"]`` (the
    checkpoints do not record it); ``examples`` are named in the error when neither is given."""
    if image_size is None:
        if release is None:
            raise ConversionError(f"the {kind} does not record its image size: pass --image-size (e.g. {examples}) or --preset")
        return release.settings["image_size"]
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConversionError(f"--image-size must be a positive int, got {image_size!r}")
    return image_size


class Original(dict):
    """An original checkpoint as read: its tensors (the dict itself), the file ``path``, the release ``folder``
    it came from (if any) and the hub repo id it was fetched from (``hub_id``; None for local files)."""

    def __init__(self, state: dict, path: Path, folder: Path | None = None, hub_id: str | None = None):
        super().__init__(state)
        self.path, self.folder, self.hub_id = path, folder, hub_id


def read_original(source: str, release: Release | None = None, filename: str | None = None,
                  several_per_repo: bool = False) -> Original:
    """Read an original checkpoint from a file, a release folder, or a hub repo id (served from the cache offline).

    ``filename`` (or the release's) picks the file in a folder or repo holding several; ``several_per_repo``:
    a repo id without a known file name is an error rather than a whole-repo snapshot.
    """
    filename = release.filename if release is not None and release.filename else filename
    path = Path(source).expanduser()
    if path.is_file():
        return Original(load_state_dict(path), path, None, None)
    if path.is_dir():
        checkpoint = path / filename if filename and (path / filename).is_file() else find_checkpoint(path)
        return Original(load_state_dict(checkpoint), checkpoint, path, None)
    if not is_repo_id(source):
        raise ConversionError(f"original checkpoint not found: {source}")
    if filename is None:
        if several_per_repo:
            raise ConversionError(f"{source!r} holds several checkpoints: pass --preset NAME (its file) or a local file")
        try:
            folder = resolve_source(source, "original checkpoint")
        except SourceNotFoundError as err:
            raise ConversionError(str(err)) from err
        checkpoint = find_checkpoint(folder)
        return Original(load_state_dict(checkpoint), checkpoint, folder, source)
    from huggingface_hub import hf_hub_download

    try:
        checkpoint = Path(hf_hub_download(source, filename))
    except Exception as err:
        raise ConversionError(f"could not fetch {filename} from hub repo {source!r}: {err}") from err
    return Original(load_state_dict(checkpoint), checkpoint, None, source)


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
            state = load_pickle(path)
    except UnreadablePickleError as err:
        raise ConversionError(str(err)) from None
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


def numbered(state: dict, pattern: str) -> list[int]:
    """The distinct numbers, sorted, that the keys matching ``pattern`` (a regex whose group 1 is the number) hold:
    a checkpoint's level or block indices."""
    return sorted({int(m[1]) for k in state if (m := re.match(pattern, k))})


def count_numbered(state: dict, pattern: str) -> int:
    """How many distinct numbers the keys matching ``pattern`` (a regex whose group 1 is the number) hold: a
    checkpoint's layer, level or block count."""
    return len({m[1] for k in state if (m := re.match(pattern, k))})


def rename_key(key: str, renames) -> str:
    """Apply a converter's rename table ``[(regex, replacement), ...]`` to an original key, in order."""
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def _storage(tensor) -> int | None:
    try:
        return tensor.untyped_storage().data_ptr() if tensor.numel() else None
    except (RuntimeError, AttributeError):  # meta tensors, non-tensors
        return None


def original_key_names(converted: dict, original: dict) -> dict[str, str]:
    """{vistok key: the original key it was read from}, found by shared storage (renamed and sliced tensors share
    it with the original's; tensors a converter computed anew, e.g. a cloned split, have no origin)."""
    by_storage: dict[int, list[str]] = {}
    for key, value in original.items():
        ptr = _storage(value)
        if ptr is not None:
            by_storage.setdefault(ptr, []).append(key)
    origin = {}
    for key, value in converted.items():
        ptr = _storage(value)
        if ptr is not None and len(by_storage.get(ptr, ())) == 1:
            origin[key] = by_storage[ptr][0]
    return origin


_NUMBER = re.compile(r"\d+")


def _expected_original_key(missing: str, origin: dict[str, str]) -> str | None:
    """The original key a missing vistok key would have been read from, by analogy with a present sibling that
    differs only in its indices (``layers.1.x`` <- ``blocks.1.y`` because ``layers.0.x`` <- ``blocks.0.y``)."""
    pattern = _NUMBER.sub("#", missing)
    numbers = _NUMBER.findall(missing)
    for key, source in origin.items():
        if _NUMBER.sub("#", key) != pattern:
            continue
        swap = {old: new for old, new in zip(_NUMBER.findall(key), numbers) if old != new}
        if len(set(swap.values())) != len(swap):  # ambiguous renumbering
            continue
        return _NUMBER.sub(lambda m: swap.get(m.group(), m.group()), source)
    return None


def check_state_dict(converted: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], unused: set[str],
                     original: dict | None = None) -> None:
    """Fail with the offending key names if anything is missing, unexpected or mis-shaped. With the ``original``
    state dict, each vistok key is named with the original key it maps to, and an :class:`Original`'s file."""
    origin = original_key_names(converted, original) if original is not None else {}

    def named(key: str, missing: bool = False) -> str:
        source = _expected_original_key(key, origin) if missing else origin.get(key)
        return f"{key!r} (original {source!r})" if source else repr(key)

    problems = []
    if unused:
        problems.append(f"unexpected keys in the original checkpoint (vistok has no place for them): {sorted(unused)[:10]}")
    missing = sorted(set(expected) - set(converted))
    if missing:
        problems.append(f"missing keys: {missing[:10]}, i.e. " + ", ".join(named(k, missing=True) for k in missing[:10]))
    extra = sorted(set(converted) - set(expected))
    if extra:
        problems.append("keys with no place in the converted model: " + ", ".join(named(k) for k in extra[:10]))
    for key in sorted(set(converted) & set(expected)):
        if tuple(converted[key].shape) != tuple(expected[key].shape):
            problems.append(f"{named(key)}: expected shape {tuple(expected[key].shape)}, got {tuple(converted[key].shape)}")
    if problems:
        where = f"checkpoint {original.path}" if isinstance(original, Original) else "checkpoint"
        raise ConversionError(f"{where} does not match the architecture: " + "; ".join(problems))


def load_converted(model_cls, config, converted: dict[str, torch.Tensor], unused=frozenset(), original: dict | None = None):
    """``model_cls(config)`` holding ``converted``: keys and shapes are checked against the architecture
    (built on the meta device, so a mismatch costs no memory) before a strict load; inference mode.
    ``original``: the state dict ``converted`` was made from, so that errors name its keys (and file)."""
    with torch.device("meta"):
        expected = model_cls(config).state_dict()
    check_state_dict(converted, expected, set(unused), original)
    model = model_cls(config)
    model.load_state_dict(converted, strict=True, assign=True)
    return model.eval()


def write_model_folder(output: str | os.PathLike, obj, *, card: str, overwrite: bool = False,
                       push_to_hub: str | None = None) -> Path:
    """Write a converted tokenizer (``PreTrainedModel``) or pipeline (``DiffusionPipeline``) folder with its
    image processor and model card, atomically (nothing is left behind on failure); push it if asked."""
    from ..image_processing import VistokImageProcessor

    with atomic_output_dir(output, overwrite=overwrite) as scratch:
        obj.save_pretrained(scratch)
        tokenizer = getattr(obj, "image_tokenizer", None)  # a pipeline's processor lives beside its tokenizer
        processor_folder = scratch / "image_tokenizer" if tokenizer is not None else scratch
        VistokImageProcessor.from_model_config((tokenizer or obj).config).save_pretrained(processor_folder)
        (scratch / "README.md").write_text(card)
    output = Path(output).expanduser().resolve()
    if push_to_hub:
        from ..utils.hub import push_folder

        push_folder(output, push_to_hub)
    return output


def converted_config(config_cls, **kwargs):
    """``config_cls(**kwargs)`` for a converted checkpoint; a failed config check (the checkpoint's shapes or the
    options given make no valid config) is reported as a :class:`ConversionError`."""
    try:
        return config_cls(**kwargs)
    except ValueError as err:
        raise ConversionError(str(err)) from err


def grid_num_tokens(image_size: int, tokenizer) -> int:
    """The tokens a generator trained at ``image_size`` predicts: ``tokenizer``'s square grid at that size."""
    factor = tokenizer.config.downsample_factor
    if image_size % factor:
        raise ConversionError(f"--image-size {image_size} is not a multiple of the tokenizer's downsampling factor {factor}")
    return (image_size // factor) ** 2


def card_repo_id(output: str | os.PathLike, push_to_hub: str | None) -> str:
    """The repo id a card's usage snippet shows: the push target, else a placeholder named after the folder."""
    return push_to_hub or f"<your-namespace>/{Path(output).name}"


def hub_base(base: str) -> str | None:
    """A card's ``base_model`` metadata: the hub repo id ``owner/name`` a converted checkpoint came from (``base``
    is a release's ``hub_id`` or the source given); None for a local file or folder."""
    parts = base.split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 and not Path(base).exists() else None


def load_model_folder(source: str, model_cls, refusal: str):
    """A converted vistok model folder (``config.json`` inside) given as ``--tokenizer``, which must load as a
    ``model_cls`` (``refusal`` completes the error otherwise: "not a ... tokenizer"); None when ``source`` is no
    such folder (an original checkpoint, then)."""
    path = Path(source).expanduser()
    if not (path.is_dir() and (path / "config.json").is_file()):
        return None
    from transformers import AutoModel

    import vistok  # noqa: F401  (registers the vistok model types)

    model = AutoModel.from_pretrained(path)
    if not isinstance(model, model_cls):
        raise ConversionError(f"--tokenizer {source} is a {type(model).__name__}, {refusal}")
    return model
