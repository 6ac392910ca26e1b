"""Files in and out: atomic output folders and resolving a local path or a hub repo id.

Used by the converters, training, ``vistok tokenize``, ``vistok eval`` and the demo, so it depends on
nothing else in vistok.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

# what a hub snapshot of a vistok or original release folder needs (no pickled optimizer states, no images)
SNAPSHOT_PATTERNS = ["*.json", "*.yaml", "*.safetensors", "*.bin", "*.md"]


class UnreadablePickleError(ValueError):
    """A pickle that ``torch.load(weights_only=True)`` refuses: it needs code to load, or is no torch file."""


def load_pickle(path: str | os.PathLike, safe_globals=None):
    """``torch.load(path, weights_only=True)`` (with ``safe_globals`` allowed), never executing code from the file.

    A refusal is an :class:`UnreadablePickleError` naming the file and saying vistok will not execute code from
    it; torch's advice to pass ``weights_only=False`` is not passed on."""
    import contextlib

    import torch

    allowed = torch.serialization.safe_globals(safe_globals) if safe_globals else contextlib.nullcontext()
    try:
        with allowed:
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        text = str(err)
        if "weights_only" not in text:
            raise UnreadablePickleError(f"could not read {path}: {type(err).__name__}: {text}") from err
        reason = " ".join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith(
            ("Weights only load failed", "Please file an issue", "Check the documentation")) and "weights_only=False" not in line)
        if "GLOBAL" in reason:
            raise UnreadablePickleError(
                f"{path} is a pickle that needs code to load ({reason}); vistok loads pickles with "
                "torch.load(weights_only=True) and will not execute code from them. Re-save the tensors alone "
                "(a state dict, or safetensors) where the file's source is trusted") from None
        raise UnreadablePickleError(f"could not read {path}: not a torch or safetensors file ({reason})") from None


class OutputExistsError(ValueError):
    """The output folder exists and is not empty, and overwriting was not asked for."""


class SourceNotFoundError(ValueError):
    """Neither a local path nor a hub repo id that could be fetched (or found in the cache offline)."""


def is_repo_id(source: str) -> bool:
    """``owner/name`` that is not a local path."""
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and not Path(source).expanduser().exists()


def resolve_source(source: str | os.PathLike, what: str = "source") -> Path:
    """A local file or folder, or a hub repo id fetched with huggingface_hub (its cache serves it offline)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if is_repo_id(str(source)):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(str(source), allow_patterns=SNAPSHOT_PATTERNS))
        except Exception as err:
            raise SourceNotFoundError(f"{what} {str(source)!r} is neither a local path nor a downloadable hub repo: {err}") from err
    raise SourceNotFoundError(f"{what} not found: {source}")


@contextmanager
def atomic_output_dir(output: str | os.PathLike, overwrite: bool = False):
    """Yield a scratch folder beside ``output``; it becomes ``output`` only if the block succeeds."""
    output = Path(output).expanduser().resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise OutputExistsError(f"output {output} already exists and is not empty; pass --overwrite to replace it")
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
