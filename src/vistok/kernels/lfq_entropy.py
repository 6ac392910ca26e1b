"""Entropy terms of lookup-free (LFQ) and binary spherical (BSQ) quantization without the
tokens x codes matrix.

MAGVIT-v2 style soft assignment of token ``n`` to a code ``c`` in ``{-s, +s}^b``::

    p_n(c) ∝ exp(-||z_n - c||² / T)

Every code has the same norm, so this is a softmax of ``2 z_n·c / T`` over the product space of
signs, which is a product of independent per-bit Bernoullis with
``p_{n,i}(+1) = sigmoid(ℓ_{n,i})``, ``ℓ_{n,i} = 4 s z_{n,i} / T`` (the *bit logits*). Hence:

* the per-sample entropy ``mean_n H(p_n) = mean_n Σ_i H_b(sigmoid(ℓ_{n,i}))`` costs O(N·b)
  (:func:`per_sample_entropy`, plain autograd);
* the codebook entropy ``H(q)``, ``q = mean_n p_n``, does not factorise. :func:`codebook_entropy`
  computes it exactly: the bits are split into a low half (b1 bits) and a high half (b2 bits), each
  token's distribution over a half is built as a ``[2^b1]`` / ``[2^b2]`` vector of products of bit
  probabilities, and ``q`` viewed as a ``[2^b1, 2^b2]`` matrix is ``P1ᵀ P2 / N`` — one GEMM per
  chunk of tokens. A custom autograd function recomputes the chunks in backward:
  ``dH/dP1 = P2 Gᵀ``, ``dH/dP2 = P1 G`` with ``G(c) = -(log q(c) + 1)/N``, then
  ``dH/dℓ_{n,i} = Σ_{c: c_i=+1} W_n(c) σ(-ℓ_{n,i}) - Σ_{c: c_i=-1} W_n(c) σ(ℓ_{n,i})`` with
  ``W_n(c) = p_n(c) dH/dp_n(c)`` (a ``[M, 2^h] @ [2^h, 2h]`` matmul per half).

Memory is O(2^b) for ``q`` plus O(M·(2^b1 + 2^b2)) for a token chunk of M rows, bounded by
``chunk_bytes``; time is dominated by 2·N·2^b multiply-adds in GEMMs (forward) and twice that in
backward. The same code runs on any device (cuBLAS GEMMs on CUDA), so there is no Triton variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Bytes of per-chunk work arrays (probabilities and their gradients) held at once.
CHUNK_BYTES = 32 * 2**20
# q has 2^bits entries: beyond this, split the bits into groups (LFQ(factorized_bits=...)).
MAX_ENTROPY_BITS = 30


def bit_logits(z: torch.Tensor, temperature: float, code_scale: float = 1.0) -> torch.Tensor:
    """``4 s z / T``: logits of ``p(bit_i = +1)`` under ``p(c) ∝ exp(-||z - c||²/T)`` with codes ``±s``."""
    if temperature <= 0:
        raise ValueError(f"the entropy temperature must be positive, got {temperature}")
    return z * (4.0 * code_scale / temperature)


def _as_logits(x: torch.Tensor, temperature: float | None, code_scale: float, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} expects a floating-point tensor [..., bits]")
    if x.ndim == 0:
        raise ValueError(f"{name} expects a tensor [..., bits], got a 0-dim tensor")
    x = x.reshape(-1, x.shape[-1])
    x = x.double() if x.dtype == torch.float64 else x.float()
    return x if temperature is None else bit_logits(x, temperature, code_scale)


def per_sample_entropy(x: torch.Tensor, temperature: float | None = None, code_scale: float = 1.0) -> torch.Tensor:
    """``mean_n H(p_n)`` in nats, O(N·bits). ``x`` are bit logits ``[..., bits]`` when ``temperature``
    is None, else inputs ``z`` turned into logits by :func:`bit_logits`. Zero for no tokens."""
    logits = _as_logits(x, temperature, code_scale, "per_sample_entropy")
    if logits.shape[0] == 0:
        return logits.sum() * 0
    p = torch.sigmoid(logits)
    bit_entropy = -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits))
    return bit_entropy.sum(-1).mean()


def _product_probs(logits: torch.Tensor) -> torch.Tensor:
    """``[M, h]`` bit logits -> ``[M, 2^h]``: column c holds Π_i p_i(bit i of c), bit 0 least significant."""
    m, h = logits.shape
    if h <= 2:
        p1, p0 = torch.sigmoid(logits), torch.sigmoid(-logits)
        out = logits.new_ones(m, 1)
        for i in range(h):
            out = torch.cat((out * p0[:, i : i + 1], out * p1[:, i : i + 1]), dim=1)
        return out
    # outer product of the halves: index = low + 2^(h/2) * high
    low = _product_probs(logits[:, : h // 2])
    high = _product_probs(logits[:, h // 2 :])
    return (high[:, :, None] * low[:, None, :]).reshape(m, -1)


def _bit_table(bits: int, like: torch.Tensor) -> torch.Tensor:
    """``[2^bits, 2·bits]``: columns ``[bit_i(c) == 1 | bit_i(c) == 0]`` as 0/1 floats."""
    codes = torch.arange(2**bits, device=like.device)
    ones = ((codes[:, None] >> torch.arange(bits, device=like.device)) & 1).to(like.dtype)
    return torch.cat((ones, 1 - ones), dim=1)


def _logit_grad(weights: torch.Tensor, logits: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``Σ_c W(c) d log p(c)/dℓ_i`` with ``d log p(c)/dℓ_i = σ(-ℓ_i)`` if bit i of c is 1, else ``-σ(ℓ_i)``;
    written without ``1 - tanh`` cancellation."""
    h = logits.shape[1]
    sums = weights @ table  # [M, 2h]: per bit, Σ W over codes with the bit set | unset
    return torch.sigmoid(-logits) * sums[:, :h] - torch.sigmoid(logits) * sums[:, h:]


def _token_chunk(n_low: int, n_high: int, element_size: int, chunk_bytes: int) -> int:
    # per token: P1, P2 and, in backward, dP1, dP2 and their products — about 3 arrays per half
    return max(1, chunk_bytes // (3 * element_size * (n_low + n_high)))


class _CodebookEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, chunk_bytes: int) -> torch.Tensor:
        n, bits = logits.shape
        low = bits // 2
        n_low, n_high = 2**low, 2 ** (bits - low)
        rows = _token_chunk(n_low, n_high, logits.element_size(), chunk_bytes)
        q = logits.new_zeros(n_low, n_high)
        for start in range(0, n, rows):
            chunk = logits[start : start + rows]
            q.addmm_(_product_probs(chunk[:, :low]).T, _product_probs(chunk[:, low:]))
        q /= n
        ctx.save_for_backward(logits, q)
        ctx.rows = rows
        return -torch.special.xlogy(q, q).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        logits, q = ctx.saved_tensors
        n, bits = logits.shape
        low = bits // 2
        # dH/dp_n(c); where q underflows to 0 every p_n(c) is 0 too, so any finite value will do
        g = (torch.log(q.clamp_min(torch.finfo(q.dtype).tiny)) + 1) * (-grad_output / n)
        table_low, table_high = _bit_table(low, logits), _bit_table(bits - low, logits)
        grad = torch.empty_like(logits)
        for start in range(0, n, ctx.rows):
            chunk = logits[start : start + ctx.rows]
            l_low, l_high = chunk[:, :low], chunk[:, low:]
            p_low, p_high = _product_probs(l_low), _product_probs(l_high)
            w_low = (p_high @ g.T).mul_(p_low)
            w_high = (p_low @ g).mul_(p_high)
            grad[start : start + ctx.rows, :low] = _logit_grad(w_low, l_low, table_low)
            grad[start : start + ctx.rows, low:] = _logit_grad(w_high, l_high, table_high)
        return grad, None


def codebook_entropy(x: torch.Tensor, temperature: float | None = None, code_scale: float = 1.0,
                     chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """Exact entropy (nats) of the batch-mean code distribution ``q = mean_n p_n`` over all ``2^bits``
    codes, differentiable, without the ``N x 2^bits`` matrix.

    Args:
        x: bit logits ``[..., bits]`` (``p(bit_i = +1) = sigmoid(x_i)``) when ``temperature`` is None;
            otherwise the vectors ``z`` of ``p(c) ∝ exp(-||z - c||²/T)`` over codes ``{-s, +s}^bits``.
        temperature, code_scale: ``T`` and ``s`` (1 for LFQ, ``1/sqrt(bits)`` for BSQ).
        chunk_bytes: bound on the per-chunk work arrays.
    Math in fp32 (fp64 for fp64 input). Zero for no tokens.
    """
    logits = _as_logits(x, temperature, code_scale, "codebook_entropy")
    bits = logits.shape[1]
    if bits > MAX_ENTROPY_BITS:
        raise ValueError(f"exact codebook entropy holds 2^bits probabilities: at most {MAX_ENTROPY_BITS} bits, "
                         f"got {bits}; split the bits into groups (LFQ factorized_bits)")
    if logits.shape[0] == 0 or bits == 0:
        return logits.sum() * 0
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    return _CodebookEntropy.apply(logits, int(chunk_bytes))
