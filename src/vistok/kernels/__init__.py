"""Fused kernels with a torch path for CPU.

Selection is automatic per device (Triton for CUDA tensors when triton is installed, torch
otherwise) and can be forced with ``VISTOK_KERNELS=triton|torch``. Triton kernels also run on CPU
tensors under ``TRITON_INTERPRET=1`` (slowly; for correctness tests).
"""

from .dispatch import kernel_backend, triton_available
from .ema import ema_codebook_update
from .nearest_code import nearest_code

__all__ = ["nearest_code", "ema_codebook_update", "kernel_backend", "triton_available"]
from .lfq_entropy import codebook_entropy

__all__ += ["codebook_entropy"]
