"""Kernels equal their reference: nearest-code search vs cdist+argmin, EMA statistics vs one-hot sums.

Triton kernels run on CPU tensors under TRITON_INTERPRET=1 (set here before triton is imported)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vistok.kernels import ema_codebook_update, kernel_backend, nearest_code, triton_available
from vistok.kernels.nearest_code import nearest_code_torch

BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.skipif(not triton_available(), reason="triton is not installed"))]


def assert_nearest(z, codebook, indices, atol=1e-4):
    """Indices equal cdist's argmin wherever the best code is not a near-tie; a tie may go either way."""
    distances = torch.cdist(z.double(), codebook.double()) ** 2
    reference = distances.argmin(dim=1)
    chosen = distances.gather(1, indices[:, None]).squeeze(1)
    best = distances.gather(1, reference[:, None]).squeeze(1)
    assert torch.all(chosen <= best + atol * (1 + best.abs()))
    top2 = distances.topk(min(2, codebook.shape[0]), dim=1, largest=False).values
    clear = (top2[:, -1] - top2[:, 0]) > atol * (1 + top2[:, 0].abs()) if codebook.shape[0] > 1 else torch.ones_like(chosen, dtype=torch.bool)
    assert torch.equal(indices[clear], reference[clear])


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=12, deadline=None)
@given(m=st.integers(0, 150), k=st.integers(1, 150), d=st.sampled_from([1, 3, 8, 12, 17, 64]),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]), seed=st.integers(0, 2**16))
def test_nearest_code_matches_cdist(backend, m, k, d, dtype, seed):
    if backend == "triton" and dtype == torch.bfloat16:
        dtype = torch.float16  # the interpreter's bf16 is unreliable; the kernel upcasts to fp32 on GPU anyway
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(m, d, generator=g).to(dtype)
    codebook = torch.randn(k, d, generator=g).to(dtype)
    indices = nearest_code(z, codebook, backend=backend)
    assert indices.dtype == torch.long and indices.shape == (m,)
    assert_nearest(z.float(), codebook.float(), indices)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_go_to_the_lowest_index(backend):
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]).repeat(40, 1)  # 160 codes, tiles of 64
    z = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    assert nearest_code(z, codebook, backend=backend).tolist() == [0, 1, 0]


def test_torch_path_is_chunked(monkeypatch):
    import sys

    module = sys.modules["vistok.kernels.nearest_code"]  # the package attribute of that name is the function
    monkeypatch.setattr(module, "TORCH_CHUNK_BYTES", 4 * 7 * 10)  # 10 rows per chunk for 7 codes
    monkeypatch.setattr(module, "TORCH_MIN_ROWS", 1)
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(95, 4, generator=g), torch.randn(7, 4, generator=g)
    assert torch.equal(nearest_code_torch(z, codebook), torch.cdist(z, codebook).argmin(1))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=8, deadline=None)
@given(m=st.integers(0, 130), k=st.integers(1, 40), d=st.sampled_from([1, 5, 16]), seed=st.integers(0, 2**16))
def test_ema_statistics_match_one_hot(backend, m, k, d, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(m, d, generator=g)
    indices = torch.randint(0, k, (m,), generator=g)
    cluster, sums = torch.rand(k, generator=g), torch.randn(k, d, generator=g)
    expected_cluster, expected_sums = cluster.clone(), sums.clone()
    one_hot = torch.nn.functional.one_hot(indices, k).float()
    expected_cluster.mul_(0.9).add_(one_hot.sum(0), alpha=0.1)
    expected_sums.mul_(0.9).add_(one_hot.T @ z, alpha=0.1)
    ema_codebook_update(cluster, sums, z, indices, 0.9, backend=backend)
    torch.testing.assert_close(cluster, expected_cluster)
    torch.testing.assert_close(sums, expected_sums, atol=1e-5, rtol=1e-5)


def test_backend_selection(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.delenv("VISTOK_KERNELS", raising=False)
    assert kernel_backend(cpu) == "torch"
    monkeypatch.setenv("VISTOK_KERNELS", "torch")
    assert kernel_backend(cpu) == "torch"
    monkeypatch.setenv("VISTOK_KERNELS", "cuda")
    with pytest.raises(ValueError, match="one of"):
        kernel_backend(cpu)
    monkeypatch.setenv("VISTOK_KERNELS", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="triton"):
        kernel_backend(cpu)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"z \[M, D\] and codebook \[K, D\]"):
        nearest_code(torch.zeros(3, 4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="empty"):
        nearest_code(torch.zeros(3, 4), torch.zeros(0, 4))


# The Triton kernels compiled for a real GPU (benchmarks/gpu_checks.sh runs these on a lent one with
# TRITON_INTERPRET=0); skipped where there is no CUDA.
CUDA = pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1" or not triton_available(),
                          reason="needs a CUDA GPU, triton and TRITON_INTERPRET=0 (benchmarks/gpu_checks.sh)")


@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m,k,d", [(0, 5, 8), (1, 1, 1), (1000, 4096, 8), (2048, 16384, 12), (777, 1000, 64), (5000, 300, 17)])
def test_triton_nearest_code_on_cuda(m, k, d, dtype):
    g = torch.Generator().manual_seed(m + k + d)
    z, codebook = torch.randn(m, d, generator=g).to(dtype), torch.randn(k, d, generator=g).to(dtype)
    assert kernel_backend(z.cuda()) == "triton"
    indices = nearest_code(z.cuda(), codebook.cuda(), backend="triton")
    assert indices.device.type == "cuda" and indices.dtype == torch.long and indices.shape == (m,)
    assert_nearest(z.float(), codebook.float(), indices.cpu())


@CUDA
def test_triton_ties_and_ema_on_cuda():
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]).repeat(40, 1).cuda()
    z = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]).cuda()
    assert nearest_code(z, codebook, backend="triton").tolist() == [0, 1, 0]
    g = torch.Generator().manual_seed(0)
    m, k, d = 3000, 500, 16
    z, indices = torch.randn(m, d, generator=g), torch.randint(0, k, (m,), generator=g)
    cluster, sums = torch.rand(k, generator=g), torch.randn(k, d, generator=g)
    one_hot = torch.nn.functional.one_hot(indices, k).double()
    expected_cluster = cluster.double() * 0.9 + 0.1 * one_hot.sum(0)
    expected_sums = sums.double() * 0.9 + 0.1 * (one_hot.T @ z.double())
    cluster, sums = cluster.cuda(), sums.cuda()
    ema_codebook_update(cluster, sums, z.cuda(), indices.cuda(), 0.9, backend="triton")
    # fp32 atomics add in any order: a sum of at most m terms of |z| <~ 5 rounds within m * 2^-24 * 5 relative
    torch.testing.assert_close(cluster.cpu().double(), expected_cluster, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(sums.cpu().double(), expected_sums, atol=m * 2**-24 * 5, rtol=1e-6)
