"""FSQ, LFQ, BSQ and the binary quantizer: index/code round trips, straight-through gradients, edge
shapes and dtypes, bad input, sub-token factorisation, and the chunked LFQ entropy against the naive
tokens x codes computation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vistok.kernels import codebook_entropy
from vistok.kernels.lfq_entropy import per_sample_entropy
from vistok.modeling.quantizers import (BSQ, FSQ, LFQ, BinaryQuantizer, bits_to_indices, indices_to_bits,
                                        merge_indices, split_indices)
from vistok.modeling.quantizers.base import usage_statistics
from vistok.modeling.quantizers import usage_statistics

FAST = settings(max_examples=25, deadline=None)


def random_binary_indices(num_bits, shape, generator):
    """Uniform indices of ``num_bits``-bit codes (for 64 bits: any int64 bit pattern)."""
    return bits_to_indices(torch.randint(0, 2, (*shape, num_bits), generator=generator))


# -- naive references (tokens x codes matrices; small bits only) ----------------------------------
def all_sign_codes(bits, scale=1.0, dtype=torch.float64):
    return torch.where(indices_to_bits(torch.arange(2**bits), bits), scale, -scale).to(dtype)


def naive_entropies(z, temperature, scale=1.0):
    """(mean per-sample entropy, codebook entropy) with p_n(c) ∝ exp(-||z_n - c||²/T) over all codes."""
    codes = all_sign_codes(z.shape[-1], scale, z.dtype)
    logits = -((z[:, None, :] - codes[None]) ** 2).sum(-1) / temperature
    probs = logits.softmax(-1)
    sample = -(probs * logits.log_softmax(-1)).sum(-1).mean()
    q = probs.mean(0)  # (clamped inside the log: codes whose q underflows get a zero, not NaN, gradient)
    return sample, -(q * torch.log(q.clamp_min(torch.finfo(q.dtype).tiny))).sum()


# -- FSQ ---------------------------------------------------------------------------------------------
def test_fsq_codebook_size_and_mixed_radix():
    q = FSQ([8, 8, 8, 5, 5, 5])
    assert q.codebook_size == 64000 and q.dim == 6
    codes = q.indices_to_codes(torch.arange(64000))
    assert codes.min() == -1 and codes.max() == 1
    assert torch.unique(codes, dim=0).shape[0] == 64000
    assert torch.equal(q.codes_to_indices(codes), torch.arange(64000))
    # level 0 least significant: index = d0 + 3 * d1 for levels [3, 4]; digit d -> (d - L//2) / (L//2)
    small = FSQ([3, 4])
    assert torch.equal(small.indices_to_codes(torch.tensor([1, 3, 11])),
                       torch.tensor([[0.0, -1.0], [-1.0, -0.5], [1.0, 0.5]]))


@pytest.mark.parametrize("levels", [[2], [3], [4, 5], [8, 8, 8, 5, 5, 5], [7, 6]])
def test_fsq_levels_per_channel(levels):
    q = FSQ(levels)
    sweep = torch.linspace(-30, 30, 20001)[:, None].expand(-1, len(levels))
    out = q(sweep)
    for i, level in enumerate(levels):
        values = torch.unique(out.quantized[:, i])
        assert values.numel() == level and values.min() >= -1 and values.max() <= 1
    assert out.loss.ndim == 0 and out.loss == 0


@FAST
@given(levels=st.lists(st.integers(2, 9), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_fsq_round_trips(levels, seed):
    gen = torch.Generator().manual_seed(seed)
    q = FSQ(levels)
    indices = torch.randint(0, q.codebook_size, (3, 7), generator=gen)
    assert torch.equal(q.codes_to_indices(q.indices_to_codes(indices)), indices)
    z = torch.randn(5, len(levels), generator=gen) * 3
    out = q(z)
    assert torch.equal(q.indices_to_codes(out.indices), out.quantized)
    assert torch.equal(q.codes_to_indices(out.quantized), out.indices)
    assert out.indices.min() >= 0 and out.indices.max() < q.codebook_size


def test_fsq_projections_round_trip():
    torch.manual_seed(0)
    q = FSQ([8, 5, 5, 5], dim=16)
    assert hasattr(q, "project_in") and q.codebook_size == 1000
    indices = torch.arange(1000)
    assert torch.equal(q.codes_to_indices(q.indices_to_codes(indices)), indices)
    out = q(torch.randn(2, 9, 16))
    assert out.quantized.shape == (2, 9, 16)
    assert torch.equal(q.codes_to_indices(out.quantized), out.indices)


# -- LFQ / BSQ indices --------------------------------------------------------------------------------
@FAST
@given(num_bits=st.integers(1, 64), seed=st.integers(0, 2**16), spherical=st.booleans())
def test_binary_round_trips(num_bits, seed, spherical):
    gen = torch.Generator().manual_seed(seed)
    q = (BSQ if spherical else LFQ)(num_bits, entropy_weight=0.0)
    indices = random_binary_indices(num_bits, (4, 5), gen)
    codes = q.indices_to_codes(indices)
    assert torch.equal(q.codes_to_indices(codes), indices)
    scale = 1 / math.sqrt(num_bits) if spherical else 1.0
    torch.testing.assert_close(codes.abs(), torch.full_like(codes, scale))


def test_lfq_index_convention():
    q = LFQ(4)
    z = torch.tensor([[1.0, -1, -1, -1], [-1, 1, -1, -1], [-1, -1, -1, 2], [0.0, 0, 0, 0], [1, 1, 1, 1]])
    out = q(z)
    assert out.indices.tolist() == [1, 2, 8, 0, 15]  # channel 0 least significant; 0 -> -1
    assert torch.equal(out.quantized, torch.where(z > 0, 1.0, -1.0))


@FAST
@given(num_bits=st.integers(1, 20), dim=st.sampled_from([None, 24]), spherical=st.booleans(),
       seed=st.integers(0, 2**16))
def test_binary_idempotent_and_consistent(num_bits, dim, spherical, seed):
    torch.manual_seed(seed)
    q = (BSQ if spherical else LFQ)(num_bits, dim=dim)
    z = torch.randn(3, 6, q.dim)
    out = q(z)
    assert torch.equal(q.codes_to_indices(out.quantized), out.indices)
    torch.testing.assert_close(q.indices_to_codes(out.indices), out.quantized)
    if dim is None:  # in code space, quantizing a quantized output changes nothing
        again = q(out.quantized)
        assert torch.equal(again.indices, out.indices) and torch.equal(again.quantized, out.quantized)
    if spherical and dim is None:
        torch.testing.assert_close(out.quantized.norm(dim=-1), torch.ones(3, 6))


@FAST
@given(groups=st.lists(st.integers(1, 20), min_size=1, max_size=4).filter(lambda g: sum(g) <= 64),
       seed=st.integers(0, 2**16))
def test_split_merge_round_trip(groups, seed):
    gen = torch.Generator().manual_seed(seed)
    total = sum(groups)
    indices = random_binary_indices(total, (17,), gen)
    parts = split_indices(indices, groups)
    assert len(parts) == len(groups)
    for part, bits in zip(parts, groups):
        assert part.min() >= 0 and part.max() < 2**bits
    assert torch.equal(merge_indices(parts, groups), indices)


def test_open_magvit2_sub_tokens():
    """pre = channels 0-5 (64-way), post = channels 6-17 (4096-way); decoding concatenates their bits."""
    torch.manual_seed(0)
    q = LFQ(18)
    out = q(torch.randn(2, 16, 18))
    pre, post = split_indices(out.indices, [6, 12])
    assert torch.equal(pre, bits_to_indices(out.quantized[..., :6] > 0))
    assert torch.equal(post, bits_to_indices(out.quantized[..., 6:] > 0))
    assert pre.max() < 64 and post.max() < 4096
    codes = torch.cat([LFQ(6).indices_to_codes(pre), LFQ(12).indices_to_codes(post)], dim=-1)
    assert torch.equal(codes, out.quantized)
    assert torch.equal(merge_indices((pre, post), [6, 12]), out.indices)
    with pytest.raises(ValueError, match="sum to at most 64"):
        split_indices(out.indices, [40, 40])
    with pytest.raises(ValueError, match=r"\[0, 63\]"):
        merge_indices((torch.tensor([64]), torch.tensor([0])), [6, 12])


# -- entropy --------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(bits=st.integers(1, 8), tokens=st.integers(1, 40), temperature=st.sampled_from([0.01, 0.1, 1.0, 3.0]),
       scale=st.sampled_from([1.0, 0.5]), chunk_bytes=st.sampled_from([1, 3000, 2**25]), seed=st.integers(0, 2**16))
def test_chunked_entropy_matches_naive(bits, tokens, temperature, scale, chunk_bytes, seed):
    gen = torch.Generator().manual_seed(seed)
    z = (torch.randn(tokens, bits, generator=gen, dtype=torch.float64) * 0.5).requires_grad_()
    sample, codebook = naive_entropies(z, temperature, scale)
    grad_naive = torch.autograd.grad(codebook, z)[0]
    chunked = codebook_entropy(z, temperature, code_scale=scale, chunk_bytes=chunk_bytes)
    grad = torch.autograd.grad(chunked, z)[0]
    torch.testing.assert_close(chunked, codebook, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grad, grad_naive, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(per_sample_entropy(z, temperature, scale), sample, rtol=1e-9, atol=1e-10)


def test_lfq_entropy_loss_matches_naive():
    torch.manual_seed(0)
    z = (torch.randn(2, 11, 8, dtype=torch.float64) * 0.2).requires_grad_()
    for quantizer, groups in [(LFQ, None), (LFQ, [3, 5]), (BSQ, None), (BSQ, [4, 4])]:
        q = quantizer(8, entropy_weight=0.3, diversity_gamma=0.7, entropy_temperature=0.05, factorized_bits=groups)
        loss = q(z).entropy_loss
        u = z.reshape(-1, 8)
        if quantizer is BSQ:
            u = torch.nn.functional.normalize(u, dim=-1)
        sample, _ = naive_entropies(u, 0.05, q.code_scale)
        codebook, start = 0, 0
        for g in groups or [8]:  # factorised: per-group entropies summed
            codebook = codebook + naive_entropies(u[:, start:start + g], 0.05, q.code_scale)[1]
            start += g
        expected = 0.3 * (sample - 0.7 * codebook)
        torch.testing.assert_close(loss, expected.float(), rtol=1e-5, atol=1e-6)
        grad, expected_grad = torch.autograd.grad(loss, z)[0], torch.autograd.grad(expected, z)[0]
        torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-5)
        assert q.eval()(z).entropy_loss is None  # training-only term
        q.train()


def test_lfq_18_bits_entropy_forward_backward():
    torch.manual_seed(0)
    q = LFQ(18)
    z = torch.randn(4096, 18, requires_grad=True)
    sample, codebook = q.entropy_terms(z)
    assert 0 < codebook <= 18 * math.log(2) and 0 <= sample <= 18 * math.log(2)
    out = q(z)
    out.loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_entropy_bit_limit():
    with pytest.raises(ValueError, match="factorized_bits"):
        LFQ(32)
    q = LFQ(32, factorized_bits=[16, 16])
    assert q.codebook_size == 2**32
    LFQ(40, entropy_weight=0.0)  # no entropy, no limit
    with pytest.raises(ValueError, match="sum to 18"):
        LFQ(18, factorized_bits=[9, 8])


def test_usage_statistics_for_huge_codebooks():
    indices = torch.tensor([3, 3, 7, 100, 100, 100])
    small = usage_statistics(indices, 128)
    huge = usage_statistics(indices, 2**40)
    torch.testing.assert_close(huge[0], small[0])
    assert huge[1] == 3 / 2**40
    out = LFQ(64, entropy_weight=0.0)(torch.randn(5, 64))
    assert out.perplexity > 0


# -- binary quantizer ---------------------------------------------------------------------------------
@FAST
@given(num_bits=st.integers(1, 64), seed=st.integers(0, 2**16))
def test_binary_quantizer_round_trips(num_bits, seed):
    torch.manual_seed(seed)
    q = BinaryQuantizer(num_bits, dim=8, codebook_dim=num_bits + 4)
    gen = torch.Generator().manual_seed(seed)
    indices = random_binary_indices(num_bits, (3, 4), gen)
    assert torch.equal(q.codes_to_indices(q.indices_to_codes(indices)), indices)
    for mode in (q.eval(), q.train()):
        out = mode(torch.randn(2, 5, 8), generator=gen)
        assert torch.equal(q.codes_to_indices(out.quantized), out.indices)
        torch.testing.assert_close(q.indices_to_codes(out.indices), out.quantized)


def test_binary_quantizer_sampling():
    torch.manual_seed(0)
    q = BinaryQuantizer(16, dim=12, codebook_dim=20)
    z = torch.randn(64, 12)
    logits = q.proj(z)
    eval_out = q.eval()(z)
    assert torch.equal(eval_out.indices, bits_to_indices(torch.sigmoid(logits) > 0.5))
    assert torch.equal(q.train()(z, deterministic=True).indices, eval_out.indices)
    first = q(z, generator=torch.Generator().manual_seed(3)).indices
    again = q(z, generator=torch.Generator().manual_seed(3)).indices
    other = q(z, generator=torch.Generator().manual_seed(4)).indices
    assert torch.equal(first, again) and not torch.equal(first, other)
    with pytest.raises(ValueError, match="codebook_dim >= num_bits"):
        BinaryQuantizer(16, dim=12, codebook_dim=8).codes_to_indices(torch.randn(2, 8))


# -- shared contract ----------------------------------------------------------------------------------
QUANTIZERS = {
    "fsq": lambda: FSQ([8, 5, 5, 5]),
    "fsq-projected": lambda: FSQ([8, 5, 5, 5], dim=10),
    "lfq": lambda: LFQ(10),
    "lfq-projected": lambda: LFQ(10, dim=12, factorized_bits=[4, 6]),
    "bsq": lambda: BSQ(10),
    "binary": lambda: BinaryQuantizer(10, dim=12),
}


@pytest.fixture(params=sorted(QUANTIZERS))
def quantizer(request):
    torch.manual_seed(0)
    return QUANTIZERS[request.param]()


def test_gradients_reach_input(quantizer):
    z = torch.randn(4, 7, quantizer.dim, requires_grad=True)
    out = quantizer(z)
    (out.quantized * torch.randn_like(out.quantized)).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    z.grad = None
    out = quantizer(z)
    (out.quantized.sum() + out.loss).backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("shape", [(0,), (1,), (), (2, 0)])
def test_empty_and_single_token(quantizer, shape):
    z = torch.randn(*shape, quantizer.dim, requires_grad=True)
    out = quantizer(z)
    assert out.indices.shape == z.shape[:-1] and out.indices.dtype == torch.long
    assert out.quantized.shape[:-1] == z.shape[:-1]
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    (out.quantized.sum() + out.loss).backward()
    assert torch.equal(quantizer.codes_to_indices(quantizer.indices_to_codes(out.indices)), out.indices)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtypes(quantizer, dtype):
    if isinstance(quantizer, BinaryQuantizer):
        quantizer.eval()  # deterministic bits
    z = torch.randn(3, 5, quantizer.dim).to(dtype)
    out = quantizer(z)
    reference = quantizer(z.float())
    assert torch.equal(out.indices, reference.indices)  # math in fp32
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    if not getattr(quantizer, "has_projections", True):
        assert out.quantized.dtype == dtype


def test_bad_input(quantizer):
    name = type(quantizer).__name__
    with pytest.raises(ValueError, match=f"{name} expects vectors of size {quantizer.dim}"):
        quantizer(torch.randn(2, quantizer.dim + 1))
    with pytest.raises(TypeError, match=f"{name} quantizes floating-point tensors"):
        quantizer(torch.ones(2, quantizer.dim, dtype=torch.long))
    with pytest.raises(ValueError, match=str(quantizer.codebook_size - 1)):
        quantizer.indices_to_codes(torch.tensor([quantizer.codebook_size]))
    with pytest.raises(TypeError, match="integer tensor"):
        quantizer.indices_to_codes(torch.tensor([0.0]))


def test_bad_construction():
    with pytest.raises(ValueError, match="integers >= 2"):
        FSQ([8, 1])
    with pytest.raises(ValueError, match=r"\[1, 64\]"):
        LFQ(65)
    with pytest.raises(ValueError, match=r"\[1, 64\]"):
        BinaryQuantizer(0, dim=4)
    with pytest.raises(TypeError, match="floating-point"):
        codebook_entropy(torch.ones(3, 4, dtype=torch.long), 0.01)
