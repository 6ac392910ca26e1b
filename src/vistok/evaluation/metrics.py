"""Image-quality and token statistics in plain torch / numpy.

Conventions (papers differ; these are stated in every JSON ``vistok eval`` writes):

* Images are ``[B, 3, H, W]`` floats in ``[0, 1]`` (data range 1.0). Values on a uint8 scale give the
  same PSNR/SSIM with ``data_range=255``.
* PSNR is computed per image over all pixels and channels, then averaged over images.
* SSIM is Wang et al. (2004): an 11-tap Gaussian window with sigma 1.5 applied as a *valid*
  convolution (no padding), K1 = 0.01, K2 = 0.03, population (not sample) covariances, per channel,
  averaged over pixels, channels and images. This equals scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1.0, channel_axis=-1)``. LlamaGen calls skimage with ``data_range=2.0`` on [0, 1] images,
  which gives higher numbers; they are not comparable with ours.
* FID is the Fréchet distance between Gaussians fitted to Inception pool features, in float64. The
  matrix square root term ``tr sqrt(S1 S2)`` is the nuclear norm of ``S1^1/2 S2^1/2`` (symmetric
  eigendecompositions), which needs no scipy, stays real and gives 0 for identical statistics.
* IS is ``exp(E_x KL(p(y|x) || p(y)))`` over ``splits`` consecutive chunks, mean and std over chunks
  (torch-fidelity's chunking with ``samples_shuffle=False``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check_pair(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    for arg, value in (("x", x), ("y", y)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"{name}: {arg} must be a floating-point torch.Tensor [B, C, H, W], got {type(value).__name__}")
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"{name}: x and y must have the same shape [B, C, H, W], got {tuple(x.shape)} and {tuple(y.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, ``[B]`` float64; identical images give ``inf``."""
    _check_pair(x, y, "psnr")
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW_SIZE, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1D Gaussian taps centred on the middle tap."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return taps / taps.sum()


def _band(taps: torch.Tensor, length: int) -> torch.Tensor:
    """``[length - size + 1, length]`` matrix whose rows apply ``taps`` at every valid position."""
    size = taps.shape[0]
    band = torch.zeros(length - size + 1, length, dtype=taps.dtype, device=taps.device)
    for offset in range(size):
        band.diagonal(offset).copy_(taps[offset].expand(length - size + 1))
    return band


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM, ``[B]`` float64 (see the module docstring for the exact definition)."""
    _check_pair(x, y, "ssim")
    if min(x.shape[-2:]) < SSIM_WINDOW_SIZE:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW_SIZE}x{SSIM_WINDOW_SIZE}, got {tuple(x.shape[-2:])}")
    taps = gaussian_window().to(x.device)
    # Separable valid filtering as two banded matrix products (fast in float64, unlike float64 conv2d on CPU).
    rows, cols = _band(taps, x.shape[-2]), _band(taps, x.shape[-1])

    def blur(t):
        return rows @ t @ cols.T

    x, y = x.double(), y.double()
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)


# -- Inception statistics -----------------------------------------------------------------------------
def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, N-1) covariance of ``[N, D]`` features, float64, as pytorch-fid and ADM store them."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"features must have shape [N, D] with N >= 2, got {feats.shape}")
    return feats.mean(0), np.cov(feats, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance; tiny negative eigenvalues are rounding noise."""
    evals, evecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)`` in float64."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    dim = mu1.shape[0]
    if mu2.shape != (dim,) or s1.shape != (dim, dim) or s2.shape != (dim, dim):
        raise ValueError(f"FID statistics disagree: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}; "
                         f"expected mu ({dim},) and sigma ({dim}, {dim}) for both (same feature extractor)")
    for name, value in (("mu1", mu1), ("mu2", mu2), ("sigma1", s1), ("sigma2", s2)):
        if not np.isfinite(value).all():
            raise ValueError(f"FID statistics {name} contain NaN or inf")
    # tr sqrt(S1 S2) = nuclear norm of S1^1/2 S2^1/2 (its singular values are the square roots of the
    # eigenvalues of S1^1/2 S2 S1^1/2). Unlike square-rooting those eigenvalues, this stays exact for
    # the near-zero ones of rank-deficient covariances, so identical sets give 0 to rounding.
    trace_sqrt = np.linalg.svd(_psd_sqrt(s1) @ _psd_sqrt(s2), compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
    """Inception score from classifier logits ``[N, C]``: mean and std over ``splits`` consecutive chunks.

    Chunk ``i`` holds samples ``[i*N//splits, (i+1)*N//splits)`` in order, as torch-fidelity without shuffling.
    """
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits must have shape [N, C] with N >= 1, got {tuple(logits.shape)}")
    if not isinstance(splits, int) or not 1 <= splits <= logits.shape[0]:
        raise ValueError(f"splits must be an int in 1..{logits.shape[0]} (the number of samples), got {splits!r}")
    log_p = torch.log_softmax(logits, dim=1)
    scores = []
    n = logits.shape[0]
    for i in range(splits):
        part = log_p[i * n // splits:(i + 1) * n // splits]
        log_marginal = torch.logsumexp(part, dim=0) - math.log(part.shape[0])
        kl = (part.exp() * (part - log_marginal)).sum(1).mean()
        scores.append(math.exp(float(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def _kth_neighbour_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # k + 1: each point is its own nearest neighbour


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of ``points`` inside at least one ball (``centres``, ``radii``)."""
    inside = (torch.cdist(points, centres) <= radii[None, :]).any(dim=1)
    return float(inside.double().mean())


def precision_recall(real_features, fake_features, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls, k = 3 as in the ADM evaluator.

    Precision: the fraction of fake samples inside the union of the real samples' k-NN balls; recall the
    reverse. O(N^2) memory: meant for up to ~10k samples per side.
    """
    real = torch.as_tensor(np.asarray(real_features), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake_features), dtype=torch.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [N, D] with the same D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if not isinstance(k, int) or not 1 <= k < min(len(real), len(fake)):
        raise ValueError(f"k must be an int in 1..{min(len(real), len(fake)) - 1} (fewer than the samples per side), got {k!r}")
    precision = _coverage(fake, real, _kth_neighbour_radii(real, k))
    recall = _coverage(real, fake, _kth_neighbour_radii(fake, k))
    return precision, recall


# -- token statistics ---------------------------------------------------------------------------------
def codebook_statistics(token_ids: torch.Tensor, codebook_size: int) -> dict:
    """Usage (fraction of the codebook used at least once) and entropy of the code histogram.

    ``entropy_bits`` is the Shannon entropy (base 2) of the empirical code distribution;
    ``normalized_entropy`` divides it by ``log2(codebook_size)`` (1.0 = uniform over all codes).
    """
    ids = torch.as_tensor(token_ids).reshape(-1).long()
    if ids.numel() == 0:
        raise ValueError("token_ids is empty: expected at least one token")
    if int(ids.min()) < 0 or int(ids.max()) >= codebook_size:
        raise ValueError(f"token_ids must lie in [0, {codebook_size - 1}], got [{int(ids.min())}, {int(ids.max())}]")
    counts = torch.bincount(ids, minlength=codebook_size).double()
    p = counts[counts > 0] / ids.numel()
    entropy = float(-(p * torch.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 (a single code) into 0.0
    return {
        "codebook_usage": float((counts > 0).sum()) / codebook_size,
        "codes_used": int((counts > 0).sum()),
        "entropy_bits": entropy,
        "normalized_entropy": entropy / math.log2(codebook_size) if codebook_size > 1 else 0.0,
    }


# the conventions every results.json repeats
CONVENTIONS = {
    "pixels": "images scored in [0, 1] after rounding to 8 bits (data range 1.0, equal to 255 on uint8)",
    "psnr": "per image over all pixels and channels, mean over images, dB",
    "ssim": "Gaussian window 11 taps sigma 1.5, valid filtering, K1=0.01 K2=0.03, per channel, data range 1.0 "
            "(= skimage structural_similarity gaussian_weights=True, use_sample_covariance=False)",
    "fid": "Frechet distance of Inception pool3 features (TF inception-2015-12-05 TorchScript, 299x299 "
           "TF-style bilinear resize); covariance with N-1",
    "inception_score": "10 consecutive splits, no shuffling (torch-fidelity order)",
    "bytes_per_image": "tokens: k*log2(codebook_size)/8; jpeg/webp: mean Pillow file size",
    "continuous_tokenizers": "decoded from the posterior mean (no sampling)",
}
