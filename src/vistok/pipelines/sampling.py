"""Sampling helpers shared by the generator pipelines.

Each helper reproduces one upstream formulation exactly (same operations, same random draws), because
seeded samples must equal the original sampler's. Where two upstreams compute "the same" filter in
different ways, both live here under names that say which is which.
"""

from __future__ import annotations

import torch


# ``generator`` below is one torch.Generator (drawn from in the original sampler's order, for seeded parity), a
# list with one per image (image i's rows drawn from generator i, so an image of a batch equals that image
# generated alone with its generator, as in diffusers), or None (the global RNG).


def rand_per_image(shape, generator, device) -> torch.Tensor:
    """U[0, 1) of ``shape`` (leading dimension: images)."""
    if isinstance(generator, list):
        return torch.cat([torch.rand((1, *shape[1:]), generator=g, device=device) for g in generator])
    return torch.rand(shape, generator=generator, device=device)


def multinomial_per_image(probs: torch.Tensor, generator, replacement: bool = False) -> torch.Tensor:
    """One draw per row of ``probs`` (image-major rows: each image owns ``rows / images`` consecutive rows)."""
    if isinstance(generator, list):
        chunks = probs.split(probs.shape[0] // len(generator))
        return torch.cat([torch.multinomial(c, num_samples=1, replacement=replacement, generator=g) for c, g in zip(chunks, generator)])
    return torch.multinomial(probs, num_samples=1, replacement=replacement, generator=generator)


def gumbel_noise_from_uniform(shape, generator, device) -> torch.Tensor:
    """Gumbel noise as -log(-log(u)), u ~ U[0, 1), logs clamped at 1e-20 (bytedance/1d-tokenizer MaskGIT)."""
    noise = rand_per_image(shape, generator, device)
    return -torch.log((-torch.log(noise.clamp(min=1e-20))).clamp(min=1e-20))


def gumbel_noise_from_exponential(like: torch.Tensor, generator) -> torch.Tensor:
    """Gumbel noise as -log(e), e ~ Exp(1), shaped like ``like`` (torch's ``F.gumbel_softmax``; VAR's
    ``gumbel_softmax_with_rng``). With ``generator=None`` it draws from the global RNG exactly as
    ``F.gumbel_softmax`` does."""
    if isinstance(generator, list):
        return torch.cat([gumbel_noise_from_exponential(row, g) for row, g in zip(like.split(1), generator)])
    return -torch.empty_like(like, memory_format=torch.legacy_contiguous_format).exponential_(generator=generator).log()


def filter_top_k(logits: torch.Tensor, top_k: int, filter_value: float = -float("inf")) -> torch.Tensor:
    """Set every logit below the k-th largest of its row to ``filter_value`` (in place; returns ``logits``).

    ``top_k <= 0`` or ``top_k >= vocab`` leaves the logits unchanged.
    """
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1)[0][..., -1:]
        logits.masked_fill_(logits < kth, filter_value)
    return logits


def filter_top_p(logits: torch.Tensor, top_p: float, filter_value: float = -float("inf")) -> torch.Tensor:
    """Nucleus filter in the transformers/LlamaGen formulation (in place; returns ``logits``).

    Sorts descending and removes tokens whose cumulative probability exceeds ``top_p``, shifted by one so
    the token that crosses the threshold is kept. ``top_p >= 1`` leaves the logits unchanged.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_indices = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    remove = cumulative > top_p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    logits.masked_fill_(remove.scatter(-1, sorted_indices, remove), filter_value)
    return logits


def filter_top_p_ascending(logits: torch.Tensor, top_p: float, filter_value: float = -float("inf")) -> torch.Tensor:
    """Nucleus filter in the VAR formulation (in place; returns ``logits``).

    Sorts ascending and removes the low tail whose cumulative probability is ``<= 1 - top_p``, always
    keeping the most likely token. ``top_p <= 0`` leaves the logits unchanged (VAR's "off" value).
    """
    if top_p <= 0:
        return logits
    sorted_logits, sorted_indices = logits.sort(dim=-1, descending=False)
    remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
    remove[..., -1:] = False
    logits.masked_fill_(remove.scatter(-1, sorted_indices, remove), filter_value)
    return logits


def token_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """The sampling distribution over the last dimension of ``logits [..., V]`` in LlamaGen's order
    (autoregressive/models/generate.py ``sample``): divide by max(temperature, 1e-5), top-k, top-p (transformers
    formulation), softmax. ``sample_next_token`` draws from it; speculative decoding verifies drafts against it."""
    logits = logits / max(temperature, 1e-5)
    if top_k > 0:
        filter_top_k(logits, top_k)
    filter_top_p(logits, top_p)
    return torch.softmax(logits, dim=-1)


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                      generator=None, do_sample: bool = True) -> torch.LongTensor:
    """One token per row of ``logits [B, V]`` from ``token_distribution`` (LlamaGen's order: temperature, top-k,
    top-p, softmax), then ``multinomial`` (one draw from ``generator`` per row) or the argmax. Returns ``[B, 1]``."""
    probs = token_distribution(logits, temperature, top_k, top_p)
    if do_sample:
        return multinomial_per_image(probs, generator)
    return torch.topk(probs, k=1, dim=-1)[1]


# Guidance-scale schedules over the decode steps (LMforImageGeneration's, as autoregressive/models/generate.py of
# GigaTok carries them): ``ratio`` = (step + 1) / (number of decode steps), the prefill token takes the raw scale.
# Each returns the scale for that step; the 1e-4 terms are the original's (they keep the scale above 1, so the
# guided batch stays guided).
GUIDANCE_SCHEDULES = ("constant", "linear", "linear_re", "triangular", "rectangular", "step")
_SCHEDULE_KWARGS = {"constant": (), "linear": (), "linear_re": (), "triangular": (), "rectangular": ("window_start", "window_end"),
                    "step": ("window_start",)}


def check_guidance_schedule(name: str, kwargs: dict | None) -> dict:
    """The schedule's keyword arguments, checked (``step`` needs ``window_start``)."""
    if name not in GUIDANCE_SCHEDULES:
        raise ValueError(f"cfg_schedule must be one of {GUIDANCE_SCHEDULES}, got {name!r} (the original's 'cosine' and "
                         "'sigmoid' cannot run there: one is unimplemented, the other fails on its last step)")
    kwargs = dict(kwargs or {})
    unknown = sorted(set(kwargs) - set(_SCHEDULE_KWARGS[name]))
    if unknown:
        raise ValueError(f"cfg_schedule {name!r} takes {list(_SCHEDULE_KWARGS[name]) or 'no'} cfg_schedule_kwargs, got {unknown}")
    if name == "step" and "window_start" not in kwargs:
        raise ValueError("cfg_schedule 'step' needs cfg_schedule_kwargs={'window_start': ratio}")
    for key, value in kwargs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"cfg_schedule_kwargs[{key!r}] must be a ratio in [0, 1], got {value!r}")
    return kwargs


def guidance_schedule(name: str, ratio: float, scale: float, window_start: float = 0.05, window_end: float = 1.0) -> float:
    """The guidance scale at decode ratio ``ratio`` in (0, 1] under schedule ``name`` (``scale`` = the raw one)."""
    if name == "constant":
        return scale
    if name == "linear":
        return 1.0 + (scale - 1.0) * ratio + 1e-4
    if name == "linear_re":
        return 1.0 + (scale - 1.0) * (1.0 - ratio) + 1e-4
    if name == "triangular":  # peak fixed at 0.5 (the original passes no keyword arguments to it)
        return 1.0 + (scale - 1.0) * (ratio / 0.5 if ratio < 0.5 else (1.0 - ratio) / 0.5) + 1e-4
    if name == "rectangular":
        return scale if window_start <= ratio <= window_end else 1.0 + 1e-4
    if name == "step":
        return scale if scale == 1.0 or window_start <= ratio else 1.0 + 1e-4
    raise ValueError(f"cfg_schedule must be one of {GUIDANCE_SCHEDULES}, got {name!r}")
