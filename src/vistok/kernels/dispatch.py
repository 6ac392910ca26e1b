"""Which implementation a kernel call uses."""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

BACKENDS = ("torch", "triton")


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def kernel_backend(tensor: torch.Tensor, backend: str | None = None) -> str:
    """``backend`` argument > ``VISTOK_KERNELS`` > Triton for CUDA tensors when installed > torch."""
    choice = backend or os.environ.get("VISTOK_KERNELS") or None
    if choice is not None:
        if choice not in BACKENDS:
            raise ValueError(f"kernel backend must be one of {BACKENDS}, got {choice!r} (VISTOK_KERNELS?)")
        if choice == "triton":
            if not triton_available():
                raise ValueError("the triton kernel backend was requested but triton is not installed")
            if not tensor.is_cuda and not interpreting():
                raise ValueError("triton kernels need CUDA tensors (or TRITON_INTERPRET=1 for CPU correctness runs)")
        return choice
    return "triton" if tensor.is_cuda and triton_available() else "torch"
