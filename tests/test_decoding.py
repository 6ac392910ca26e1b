"""Decoding strategies of the autoregressive pipelines (vistok.pipelines.decoding): SJD keeps the standard sampler's
distribution; GSD and ZipAR (approximations) are deterministic under a seed, make fewer forwards and refuse bad knobs.

Tiny random LlamaGen generators (the VQ tokenizers are never called: ``sample_tokens`` returns ids)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vistok import (AutoregressiveImagePipeline, LlamaGenConfig, LlamaGenTransformer, LlamaGenVQConfig, LlamaGenVQModel,
                    TextToImageAutoregressivePipeline)
from vistok.pipelines import decoding as decoding_module


def _tokenizer(codebook: int, grid: int) -> LlamaGenVQModel:
    levels = {2: 2, 4: 1, 8: 0}[grid]  # 8 px images, downsampled 2^levels -> grid x grid tokens
    config = LlamaGenVQConfig(image_size=8, codebook_size=codebook, hidden_channels=32, encoder_channel_mult=[1] * (levels + 1),
                              z_channels=32, token_dim=4)
    return LlamaGenVQModel(config).eval()


def _pipeline(codebook: int, grid: int, head_std: float, seed: int = 0, condition_type: str = "class", **sampling):
    torch.manual_seed(seed)
    defaults = {**dict(guidance_scale=1.0, cfg_interval=-1, temperature=1.0, top_k=0, top_p=1.0), **sampling}
    extra = {"caption_dim": 16, "num_condition_tokens": 3} if condition_type == "text" else {"num_classes": 4}
    transformer = LlamaGenTransformer(LlamaGenConfig(condition_type=condition_type, codebook_size=codebook,
                                                     num_tokens=grid * grid, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, sampling_defaults=defaults, **extra)).eval()
    with torch.no_grad():  # the released init zeroes the head (uniform logits): give it scale for peaked, context-dependent ones
        transformer.lm_head.weight.normal_(std=head_std)
    cls = TextToImageAutoregressivePipeline if condition_type == "text" else AutoregressiveImagePipeline
    pipe = cls(image_tokenizer=_tokenizer(codebook, grid), transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _reference_filter(logits, temperature, top_k, top_p):
    """temperature -> top-k -> top-p (keep the most likely tokens until their mass reaches top_p) -> softmax, written out
    independently of the pipeline's helpers."""
    logits = logits / temperature
    if top_k:
        kth = logits.sort(dim=-1, descending=True).values[..., top_k - 1:top_k]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p < 1:
        probs = logits.softmax(-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the tokens ranked above
        drop_sorted = before > top_p
        logits = logits.masked_fill(torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted), -math.inf)
    return logits.softmax(-1)


@torch.no_grad()
def _exact_distribution(pipe, label: int, guidance: float, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """P(sequence) for every sequence of the tiny grid: the product of the filtered, guided next-token distributions,
    from one uncached teacher-forced forward per sequence (not the cached path the strategies use)."""
    model = pipe.transformer
    codebook, length = model.config.codebook_size, model.config.num_tokens
    sequences = torch.tensor(list(itertools.product(range(codebook), repeat=length)))
    labels = torch.full((len(sequences),), label)
    logits = model(input_ids=sequences[:, :-1], class_labels=labels).logits
    if guidance > 1:
        uncond = model(input_ids=sequences[:, :-1], class_labels=labels,
                       drop_condition=torch.ones(len(sequences), dtype=torch.bool)).logits
        logits = uncond + (logits - uncond) * guidance
    probs = _reference_filter(logits, temperature, top_k, top_p)
    return probs.gather(-1, sequences[..., None])[..., 0].prod(-1)


def _histogram(ids: torch.Tensor, codebook: int) -> torch.Tensor:
    flat = ids.reshape(ids.shape[0], -1)
    index = (flat * codebook ** torch.arange(flat.shape[1] - 1, -1, -1)).sum(-1)  # itertools.product order
    return torch.bincount(index, minlength=codebook ** flat.shape[1]).double() / flat.shape[0]


def _tv_bound(exact: torch.Tensor, n: int, delta: float = 1e-6) -> float:
    """A total-variation distance that n independent draws from ``exact`` exceed with probability < delta:
    E[TV] <= 1/2 sum_i sqrt(p_i (1 - p_i) / n) (Jensen), plus McDiarmid's deviation sqrt(ln(1/delta) / (2n)) (one draw
    moves the TV by at most 1/n)."""
    p = exact.double()
    return 0.5 * float((p * (1 - p) / n).sqrt().sum()) + math.sqrt(math.log(1 / delta) / (2 * n))


DISTRIBUTION_CASES = {  # (guidance, temperature, top_k, top_p, draft_length)
    "guided-topk": (2.0, 1.3, 2, 1.0, 16),
    "topp-short-window": (1.0, 1.0, 0, 0.7, 2),
}
SAMPLES = 40000


@pytest.fixture(scope="module")
def tiny3():
    """Codebook 3, a 2x2 grid: 81 possible images, so the exact distribution is enumerable."""
    return _pipeline(codebook=3, grid=2, head_std=0.35, seed=1)


def _sample(pipe, decoding, case, seed, **knobs):
    guidance, temperature, top_k, top_p, draft_length = DISTRIBUTION_CASES[case]
    kwargs = {"draft_length": draft_length} if decoding in ("sjd", "gsd") else None
    ids = pipe.sample_tokens([1] * SAMPLES, guidance_scale=guidance, temperature=temperature, top_k=top_k, top_p=top_p,
                             generator=torch.Generator().manual_seed(seed), decoding=decoding, decoding_kwargs=kwargs)
    return ids, dict(pipe.decoding_stats)


@pytest.mark.parametrize("case", sorted(DISTRIBUTION_CASES))
def test_sjd_keeps_the_sampling_distribution(tiny3, case):
    """SJD's and standard decoding's image histograms over 40000 seeded samples are both within the TV bound of the
    exact distribution (a bound a correct sampler exceeds with probability < 1e-6; the seeds are fixed, so the test is
    deterministic), and SJD accepted drafts (it was not standard decoding in disguise)."""
    guidance, temperature, top_k, top_p, _ = DISTRIBUTION_CASES[case]
    exact = _exact_distribution(tiny3, 1, guidance, temperature, top_k, top_p)
    assert abs(float(exact.sum()) - 1) < 1e-5
    bound = _tv_bound(exact, SAMPLES)
    standard, _ = _sample(tiny3, "standard", case, seed=0)
    sjd, stats = _sample(tiny3, "sjd", case, seed=1)
    tv_standard = 0.5 * float((_histogram(standard, 3) - exact).abs().sum())
    tv_sjd = 0.5 * float((_histogram(sjd, 3) - exact).abs().sum())
    assert tv_standard < bound, (tv_standard, bound)
    assert tv_sjd < bound, (tv_sjd, bound)
    assert stats["draft_tokens_accepted"] > 0.1 * stats["draft_tokens_verified"] > 0


@pytest.mark.parametrize("case", sorted(DISTRIBUTION_CASES))
def test_the_distribution_test_detects_a_wrong_correction(tiny3, monkeypatch, case):
    """The same test fails for a classic speculative-sampling bug: redrawing a rejected position from p instead of the
    residual max(0, p - q). (Shows the bound is tight enough to matter on this model.)"""
    exact = _exact_distribution(tiny3, 1, *DISTRIBUTION_CASES[case][:4])
    monkeypatch.setattr(decoding_module, "_residual", lambda p, q: p)
    wrong, _ = _sample(tiny3, "sjd", case, seed=1)
    assert 0.5 * float((_histogram(wrong, 3) - exact).abs().sum()) > _tv_bound(exact, SAMPLES)


def test_the_tiny_model_is_context_dependent(tiny3):
    """The conditionals depend on the tokens before them (else stale Jacobi drafts would be exact by accident)."""
    model = tiny3.transformer
    contexts = torch.tensor(list(itertools.product(range(3), repeat=3)))
    with torch.no_grad():
        probs = model(input_ids=contexts, class_labels=torch.ones(len(contexts), dtype=torch.long)).logits[:, -1].softmax(-1)
    assert float((probs[:, None] - probs[None]).abs().sum(-1).max()) / 2 > 0.3


@pytest.fixture(scope="module")
def tiny64():
    """Codebook 64 on an 8x8 grid (64 tokens): guidance, top-k as the defaults."""
    return _pipeline(codebook=64, grid=8, head_std=1.0, seed=0, guidance_scale=2.0, top_k=20)


def _count_forwards(pipe, **kwargs):
    """Token ids and the transformer calls counted by a hook on its final norm (independent of decoding_stats)."""
    calls = []
    handle = pipe.transformer.norm.register_forward_hook(lambda *args: calls.append(1))
    try:
        ids = pipe.sample_tokens(**kwargs)
    finally:
        handle.remove()
    assert pipe.decoding_stats["model_forwards"] == len(calls)
    return ids, len(calls)


@pytest.mark.parametrize("decoding", ["sjd", "gsd"])
def test_greedy_speculative_decoding_equals_standard_greedy(tiny64, decoding):
    """do_sample=False: verification against the argmax reproduces greedy decoding token for token (a wrong cache
    rollback or position would change the ids), in fewer forwards."""
    standard, standard_forwards = _count_forwards(tiny64, class_labels=[0, 3], do_sample=False)
    ids, forwards = _count_forwards(tiny64, class_labels=[0, 3], do_sample=False, decoding=decoding,
                                    decoding_kwargs={"draft_length": 5})
    assert torch.equal(ids, standard)
    assert standard_forwards == 64 and forwards < standard_forwards


def test_greedy_sjd_text_to_image_with_padded_captions():
    """Text conditions with left-padded captions (masked condition keys) and guidance: greedy SJD equals greedy standard."""
    pipe = _pipeline(codebook=64, grid=4, head_std=1.0, seed=1, condition_type="text", guidance_scale=3.0)
    torch.manual_seed(5)
    embeds = torch.randn(2, 3, 16)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    standard = pipe.sample_tokens(prompt_embeds=embeds, prompt_attention_mask=mask, do_sample=False)
    ids = pipe.sample_tokens(prompt_embeds=embeds, prompt_attention_mask=mask, do_sample=False, decoding="sjd",
                             decoding_kwargs={"draft_length": 4})
    assert torch.equal(ids, standard)
    sampled = pipe.sample_tokens(prompt_embeds=embeds, prompt_attention_mask=mask, decoding="sjd",
                                 generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (2, 4, 4)


def test_zipar_with_a_full_row_window_is_standard_decoding(tiny64):
    """window >= grid width: each row starts after the one above is done, so ZipAR is raster order, one token per
    forward -- and its ids equal standard decoding's under the same seed (guidance, top-k, sampling)."""
    standard = tiny64.sample_tokens([1, 2], generator=torch.Generator().manual_seed(7))
    zipar = tiny64.sample_tokens([1, 2], generator=torch.Generator().manual_seed(7), decoding="zipar",
                                 decoding_kwargs={"window": 8})
    assert torch.equal(zipar, standard)


@pytest.mark.parametrize("window", [1, 2, 5])
def test_zipar_schedule_and_forwards(tiny64, window):
    """Row r starts when row r - 1 has ``window`` tokens: (grid - 1) * window + grid forwards (prefill included)."""
    ids, forwards = _count_forwards(tiny64, class_labels=[1, 2], generator=torch.Generator().manual_seed(0),
                                    decoding="zipar", decoding_kwargs={"window": window})
    assert ids.shape == (2, 8, 8) and 0 <= int(ids.min()) and int(ids.max()) < 64
    assert forwards == 7 * window + 8 < 64


@pytest.mark.parametrize("decoding,knobs", [("sjd", None), ("gsd", None), ("gsd", {"embedding_threshold": 0.5}),
                                            ("zipar", {"window": 3})])
def test_strategies_are_seeded_and_make_fewer_forwards(tiny64, decoding, knobs):
    kwargs = dict(class_labels=[0, 1, 2], decoding=decoding, decoding_kwargs=knobs)
    a, forwards = _count_forwards(tiny64, generator=torch.Generator().manual_seed(0), **kwargs)
    b = tiny64.sample_tokens(generator=torch.Generator().manual_seed(0), **kwargs)
    c = tiny64.sample_tokens(generator=torch.Generator().manual_seed(1), **kwargs)
    per_image = tiny64.sample_tokens(generator=[torch.Generator().manual_seed(i) for i in range(3)], **kwargs)
    assert a.shape == (3, 8, 8) and per_image.shape == (3, 8, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert forwards < 64


def test_sjd_accepts_drafts_drawn_from_the_target():
    """Uniform logits (the released zero-initialised head): every draft drawn from the previous forward's p has
    q = p and is accepted. A forward whose window was refilled with random tokens advances at least one token and
    redraws the rest from p; the next one then accepts all draft_length drafts and draws one more: at least
    draft_length + 2 tokens per two forwards."""
    pipe = _pipeline(codebook=64, grid=8, head_std=0.0)
    ids, forwards = _count_forwards(pipe, class_labels=[0], generator=torch.Generator().manual_seed(0), decoding="sjd",
                                    decoding_kwargs={"draft_length": 8})
    assert ids.shape == (1, 8, 8)
    assert forwards <= 1 + 2 * math.ceil(63 / 10)


def test_bad_decoding_arguments(tiny64):
    labels = [0]
    with pytest.raises(ValueError, match="decoding must be one of"):
        tiny64.sample_tokens(labels, decoding="medusa")
    with pytest.raises(ValueError, match=r"takes \['window'\]"):
        tiny64.sample_tokens(labels, decoding="zipar", decoding_kwargs={"draft_length": 4})
    with pytest.raises(ValueError, match="takes no decoding_kwargs"):
        tiny64.sample_tokens(labels, decoding_kwargs={"window": 4})
    with pytest.raises(TypeError, match="decoding_kwargs must be a dict"):
        tiny64.sample_tokens(labels, decoding="sjd", decoding_kwargs=[4])
    with pytest.raises(ValueError, match="draft_length"):
        tiny64.sample_tokens(labels, decoding="sjd", decoding_kwargs={"draft_length": 0})
    with pytest.raises(TypeError, match="draft_length"):
        tiny64.sample_tokens(labels, decoding="sjd", decoding_kwargs={"draft_length": 2.5})
    with pytest.raises(ValueError, match="window"):
        tiny64.sample_tokens(labels, decoding="zipar", decoding_kwargs={"window": 0})
    with pytest.raises(ValueError, match="probability_threshold"):
        tiny64.sample_tokens(labels, decoding="gsd", decoding_kwargs={"probability_threshold": 0})
    with pytest.raises(ValueError, match="embedding_threshold"):
        tiny64.sample_tokens(labels, decoding="gsd", decoding_kwargs={"embedding_threshold": -1.0})
    with pytest.raises(ValueError, match="compile=True"):
        tiny64.sample_tokens(labels, decoding="sjd", compile=True)
    with pytest.raises(ValueError, match="callback_on_step_end"):
        tiny64.sample_tokens(labels, decoding="gsd", callback_on_step_end=lambda pipe, i, t, kw: kw)
    with pytest.raises(ValueError, match="decode_feeds_condition"):
        tiny64.sample_tokens(labels, decoding="sjd", decode_feeds_condition=True)
    with pytest.raises(ValueError, match="whole rows"):
        tiny64._generate({"class_labels": torch.tensor([0])}, 1, None, tiny64._settings(None, None, None, None, None),
                         None, True, False, num_tokens=12, decoding="zipar")


def test_zipar_needs_a_2d_grid(tiny64):
    flat = _tokenizer(64, 8)
    flat.config.token_layout = "1d"
    pipe = AutoregressiveImagePipeline(image_tokenizer=flat, transformer=tiny64.transformer)
    with pytest.raises(ValueError, match="2D token grid"):
        pipe.sample_tokens([0], decoding="zipar")
    assert pipe.sample_tokens([0], decoding="sjd", generator=torch.Generator().manual_seed(0)).shape == (1, 64)


def test_call_with_a_strategy_decodes_images(tiny64):
    out = tiny64([0, 1], generator=torch.Generator().manual_seed(0), decoding="sjd", output_type="pt")
    assert out.images.shape[0] == 2
    assert tiny64.decoding_stats["decoding"] == "sjd" and tiny64.decoding_stats["images"] == 2
