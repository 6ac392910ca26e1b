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
