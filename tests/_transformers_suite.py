"""transformers' own common model tests (``ModelTesterMixin``, ``ConfigTester``), taken from the sdist of the
installed transformers version at test-setup time and imported as the package ``transformers_tests``.

The sdist carries ``tests/test_modeling_common.py`` and ``tests/test_configuration_common.py`` but not three
modules they import relatively; this file writes stand-ins for them (our code, not transformers'):

- ``exporters/test_export.py``: ``ExportTesterMixin`` (torch.export / ONNX tests) -> an empty mixin. Those
  tests are not in the sdist, so they are not run (the README's conformance table says so).
- ``generation/test_utils.py``: ``GenerationTesterMixin`` -> an empty class. Only referenced by an
  ``issubclass`` check for models that ``can_generate()``; vistok generators sample in pipelines.
- ``utils/test_configuration_utils.py``: ``config_common_kwargs``, one non-default value for every argument of
  the installed ``PreTrainedConfig.__init__`` (what transformers' own dict holds), built from its signature so
  a new transformers version with a new argument is an error here rather than a silently smaller test.

Nothing of transformers is committed. ``python tests/_transformers_suite.py`` fetches ahead of time (CI does);
the cache folder is ``$VISTOK_TRANSFORMERS_TESTS`` or ``~/.cache/vistok/transformers-tests``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

PACKAGE = "transformers_tests"
NEEDED = ("test_modeling_common.py", "test_configuration_common.py")


def cache_root() -> Path:
    base = os.environ.get("VISTOK_TRANSFORMERS_TESTS") or Path.home() / ".cache" / "vistok" / "transformers-tests"
    return Path(base) / f"transformers-{transformers.__version__}"


def _config_common_kwargs_source() -> str:
    """``config_common_kwargs`` for the installed PreTrainedConfig: a non-default value per argument."""
    values = {
        "architectures": ["BertModel"],
        "output_hidden_states": True,
        "return_dict": False,
        "dtype": "float16",
        "chunk_size_feed_forward": 5,
        "is_encoder_decoder": True,
        "id2label": {0: "label"},
        "label2id": {"label": "0"},
        "problem_type": "regression",
    }
    skip = {"self", "transformers_version", "kwargs"}
    params = [p for p in inspect.signature(transformers.PreTrainedConfig.__init__).parameters if p not in skip]
    unknown = [p for p in params if p not in values]
    if unknown:
        raise RuntimeError(f"PreTrainedConfig {transformers.__version__} takes {unknown}: give them non-default "
                           "values in tests/_transformers_suite.py")
    return "config_common_kwargs = " + repr({p: values[p] for p in params}) + "\n"


STAND_INS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    \"\"\"Stand-in: export tests are not in the sdist.\"\"\"\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    \"\"\"Stand-in: only used by an issubclass check.\"\"\"\n",
}


def fetch(root: Path | None = None) -> Path:
    """Download the installed version's sdist from the package index (once) and unpack the tests we need."""
    root = root or cache_root()
    package = root / PACKAGE
    if all((package / name).exists() for name in NEEDED):
        return root
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        version = transformers.__version__
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", tmp,
               f"transformers=={version}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("transformers-*.tar.gz"))
        if result.returncode or not sdists:
            raise RuntimeError(f"could not download the transformers {version} sdist: {result.stderr.strip()[-500:]}")
        staging = Path(tmp) / PACKAGE
        with tarfile.open(sdists[0]) as archive:
            for member in archive.getmembers():
                parts = Path(member.name).parts
                if len(parts) == 3 and parts[1] == "tests" and parts[2] in NEEDED:
                    member.name = parts[2]
                    archive.extract(member, staging, filter="data")
        missing = [n for n in NEEDED if not (staging / n).exists()]
        if missing:
            raise RuntimeError(f"the transformers {version} sdist has no tests/{missing}")
        for relative, text in {**STAND_INS, "utils/test_configuration_utils.py": _config_common_kwargs_source()}.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / "__init__.py").touch()
            path.write_text(text)
        (staging / "__init__.py").touch()
        if package.exists():  # a partial earlier unpack
            import shutil
            shutil.rmtree(package)
        staging.rename(package)  # atomic: a reader never sees a half-unpacked package
    return root


def load():
    """``(ModelTesterMixin, ConfigTester, test_modeling_common module)`` of the installed transformers."""
    root = str(fetch())
    if root not in sys.path:
        sys.path.insert(0, root)
    modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    return modeling.ModelTesterMixin, configuration.ConfigTester, modeling


if __name__ == "__main__":
    print(fetch())
