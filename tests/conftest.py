import os
import sys

# Triton kernels run on CPU tensors in the interpreter; it must be set before anything imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest


@pytest.fixture
def hub_server(tmp_path, monkeypatch):
    """A loopback Hub (tests/hub_server.py) that huggingface_hub uploads go to; ``.endpoint``, ``.root``."""
    import huggingface_hub.constants as hf_constants

    from hub_server import LoopbackHub

    with LoopbackHub(tmp_path / "hub") as server:
        # HF_ENDPOINT is read when huggingface_hub (and diffusers) are imported: patch the copies
        # already made, and set the variable for anything imported later.
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        for module, name in (("huggingface_hub.utils._git_credential", "ENDPOINT"),
                             ("huggingface_hub.cli.auth", "ENDPOINT"),
                             ("diffusers.utils.constants", "HUGGINGFACE_CO_RESOLVE_ENDPOINT"),
                             ("diffusers.utils", "HUGGINGFACE_CO_RESOLVE_ENDPOINT")):
            if hasattr(sys.modules.get(module), name):
                monkeypatch.setattr(sys.modules[module], name, server.endpoint)
        # CI sets HF_HUB_OFFLINE=1, and then huggingface_hub refuses *every* request, loopback ones
        # included (its httpx event hook checks constants.HF_HUB_OFFLINE, read at import time). Lift
        # it for this test only: the endpoint now points at 127.0.0.1, so nothing can leave the machine.
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
        monkeypatch.setenv("HF_TOKEN", "hf_loopback_dummy_token")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        yield server


def pytest_configure(config):
    # markers used by transformers' common model tests (tests/_transformers_suite.py)
    for marker in ("flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test"):
        config.addinivalue_line("markers", f"{marker}: transformers' test marker")
