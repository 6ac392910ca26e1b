"""Decoding strategies for the autoregressive pipelines: fewer model forwards per image than one per token.

``decoding=`` on :class:`AutoregressiveImagePipeline` and :class:`TextToImageAutoregressivePipeline` picks one:

* ``"standard"``: one cached forward per token (LlamaGen's ``generate``; the pipelines' seeded parity with the
  original holds only here).
* ``"sjd"`` -- speculative Jacobi decoding (Teng et al., "Accelerating Auto-regressive Text-to-Image Generation with
  Training-free Speculative Jacobi Decoding", ICLR 2025). **Exact**: samples have the standard sampler's distribution.
  Each forward verifies a window of ``draft_length`` draft tokens after the last accepted one (and predicts the one
  after them): draft ``x`` at a position, drawn from a proposal ``q``, is accepted with probability
  ``min(1, p(x) / q(x))`` where ``p`` is the model's distribution there given the accepted prefix; the first
  rejected position is redrawn from the residual ``norm(max(0, p - q))`` and the drafts after it are redrawn from
  this forward's distributions (the Jacobi update; they become their own ``q``); the window is refilled with
  uniformly random tokens (``q`` = a point mass, accepted with probability ``p(x)``). ``p`` and ``q`` are both the
  distribution the standard sampler draws from (guidance, temperature, top-k, top-p applied), so the speculative
  sampling argument gives exactly that distribution. Knob: ``draft_length`` (16, the paper's window).
* ``"gsd"`` -- grouped speculative decoding (So et al., "Grouped Speculative Decoding for Autoregressive Image
  Generation", ICCV 2025). **An approximation** (opt-in): SJD whose acceptance test compares the probability of a
  group of tokens around the draft instead of the draft alone -- ``min(1, p(G) / q(G))`` with ``G`` the tokens ranked
  within ``group_radius`` places of the draft under ``p`` whose probability differs from the draft's by less than
  ``probability_threshold`` (and, when ``embedding_threshold`` is set, whose input embedding lies within that squared
  L2 distance of the draft's), as the authors' code does (its window is ranks r-7 .. r+6 of the sorted logits, cut
  off at the ends of the vocabulary here rather than wrapped around). Accepting for a group changes the distribution (towards
  tokens whose neighbours are likely); that is the speed/quality trade the paper makes. Knobs: ``draft_length`` (16),
  ``group_radius`` (7), ``probability_threshold`` (0.15), ``embedding_threshold`` (None: off -- the official 0.5 is a
  distance on Lumina-mGPT's embeddings, whose scale does not transfer to other models).
* ``"zipar"`` -- ZipAR (He et al., "ZipAR: Parallel Autoregressive Image Generation through Spatial Locality", ICML
  2025). **An approximation** (opt-in), 2D token grids only: rows are decoded in parallel, next-set prediction. Row
  ``r + 1`` starts once row ``r`` has ``window`` tokens, and every forward predicts the next token of every started,
  unfinished row: a token sees the rows above only up to where they have been generated, not the whole row the
  model was trained to see. A row's first token is predicted from the last generated token of the row above fed at
  the end-of-row position (the authors' placeholder); a finished row's last token is fed once more in the next
  forward so later rows see it. Two differences from the authors' LlamaGen code: positions not generated yet are
  masked out of attention (theirs attend to the cache's zero or stale entries there), and the rule applies from the
  first row on (theirs decodes the whole first row before starting the second). ``window >= grid_size`` is standard
  decoding, token for token. Knob: ``window`` (8, the authors' LlamaGen default).

All strategies use the static KV cache: a forward writes the keys and values of its tokens at their positions;
rejected drafts are rolled back by not counting them -- attention is causal by position, so later forwards never see
them, and the next forward overwrites them in place (no re-allocation, no copies). Guidance (``guidance_scale``,
``cfg_interval``, ``cfg_schedule``), ``temperature``, ``top_k``, ``top_p`` and ``do_sample=False`` (greedy) work with
each strategy and apply per predicted token exactly as in standard decoding. With several images, SJD/GSD forwards
cover the window of the image that is furthest behind; images ahead feed their accepted tokens again and wait.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import check_number
from .sampling import guidance_schedule, multinomial_per_image, rand_per_image, token_distribution

DECODING_STRATEGIES = ("standard", "sjd", "gsd", "zipar")
EXACT_STRATEGIES = ("standard", "sjd")
_KNOBS = {
    "standard": {},
    "sjd": {"draft_length": 16},
    "gsd": {"draft_length": 16, "group_radius": 7, "probability_threshold": 0.15, "embedding_threshold": None},
    "zipar": {"window": 8},
}


def check_decoding(decoding, decoding_kwargs) -> tuple[str, dict]:
    """The strategy's name and its knobs (defaults filled in), checked."""
    if not isinstance(decoding, str) or decoding not in DECODING_STRATEGIES:
        raise ValueError(f"decoding must be one of {DECODING_STRATEGIES}, got {decoding!r}")
    if decoding_kwargs is not None and not isinstance(decoding_kwargs, dict):
        raise TypeError(f"decoding_kwargs must be a dict, got {type(decoding_kwargs).__name__}")
    given = dict(decoding_kwargs or {})
    unknown = sorted(set(given) - set(_KNOBS[decoding]))
    if unknown:
        raise ValueError(f"decoding {decoding!r} takes {list(_KNOBS[decoding]) or 'no'} decoding_kwargs, got {unknown}")
    knobs = {**_KNOBS[decoding], **given}
    if "draft_length" in knobs:
        check_number("decoding_kwargs['draft_length']", knobs["draft_length"], minimum=1, integer=True)
    if "group_radius" in knobs:
        check_number("decoding_kwargs['group_radius']", knobs["group_radius"], minimum=0, integer=True)
    if "probability_threshold" in knobs:
        check_number("decoding_kwargs['probability_threshold']", knobs["probability_threshold"], above=0, maximum=1)
    if knobs.get("embedding_threshold") is not None:
        check_number("decoding_kwargs['embedding_threshold']", knobs["embedding_threshold"], above=0)
    if "window" in knobs:
        check_number("decoding_kwargs['window']", knobs["window"], minimum=1, integer=True)
    return decoding, knobs


class TokenSampler:
    """What every strategy needs from the pipeline's sampler: one cached forward of the transformer over image tokens
    at given positions, giving the distribution each next token is drawn from (guided per predicted token, then
    temperature -> top-k -> top-p -> softmax, a point mass on the argmax when greedy), and draws from it.

    ``cache`` already holds the condition (the prefill ran); ``key_valid [rows, prefix + num_tokens]`` marks the keys
    that may be attended (padded condition tokens off); ``guidance`` maps a token index to (use guidance, scale).
    Counts its forwards in ``forwards``."""

    def __init__(self, model, cache, key_valid, batch: int, guided: bool, guidance, settings: dict, generator,
                 do_sample: bool):
        self.model, self.cache, self.key_valid = model, cache, key_valid
        self.prefix = model.config.num_condition_tokens
        self.batch, self.guided, self.settings = batch, guided, settings
        self.generator, self.do_sample = generator, do_sample
        self.device = key_valid.device
        total = model.config.num_tokens
        use, scale = zip(*(guidance(j) for j in range(total))) if guided else ((), ())
        self.use_guidance = torch.tensor(use, dtype=torch.bool, device=self.device)
        self.scale = torch.tensor(scale, dtype=torch.float32, device=self.device)
        self.forwards = 0

    def distribution(self, tokens: torch.LongTensor, positions: torch.LongTensor,
                     attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens [B, T]`` fed at image indices ``positions [T]`` -> ``[B, T, V]``: the distribution of the token
        after each (image index ``positions + 1``). ``attention_mask [rows, K]``: default all keys up to the last."""
        ids = torch.cat([tokens, tokens]) if self.guided else tokens
        cache_position = positions + self.prefix
        if attention_mask is None:
            attention_mask = self.key_valid[:, : int(cache_position.max()) + 1]
        logits = self.model._decode_step(ids, attention_mask, self.cache, cache_position)
        self.forwards += 1
        if self.guided:
            cond, uncond = logits.split(self.batch)
            predicted = positions + 1
            use = self.use_guidance[predicted][None, :, None]
            scale = self.scale[predicted][None, :, None]
            logits = torch.where(use, uncond + (cond - uncond) * scale, cond)
        s = self.settings
        probs = token_distribution(logits, s["temperature"], s["top_k"], s["top_p"])
        if not self.do_sample:  # greedy: a point mass on the argmax (topk, as the standard sampler picks it)
            probs = torch.zeros_like(probs).scatter_(-1, torch.topk(probs, k=1, dim=-1)[1], 1.0)
        return probs

    def draw(self, probs: torch.Tensor) -> torch.LongTensor:
        """One token per row of ``probs [B, T, V]`` (image-major: image i draws from generator i) -> ``[B, T]``."""
        batch, length, vocab = probs.shape
        if not self.do_sample:
            return probs.argmax(dim=-1)
        return multinomial_per_image(probs.reshape(batch * length, vocab), self.generator).view(batch, length)

    def uniform(self, shape) -> torch.Tensor:
        return rand_per_image(shape, self.generator, self.device)

    def random_tokens(self, shape) -> torch.LongTensor:
        vocab = self.model.config.codebook_size
        return (self.uniform(shape) * vocab).long().clamp_(max=vocab - 1)


def _group_ratio(p, q, drafts, radius: int, threshold: float, embeddings, embedding_threshold):
    """GSD's acceptance ratio p(G) / q(G) per slot: G = tokens ranked within ``radius`` of the draft under ``p`` whose
    probability is within ``threshold`` of the draft's (and whose embedding is within ``embedding_threshold``)."""
    vocab = p.shape[-1]
    order = p.argsort(dim=-1)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(vocab, device=p.device).expand_as(order))
    index = rank.gather(-1, drafts[..., None]) + torch.arange(-radius, radius + 1, device=p.device)
    inside = (index >= 0) & (index < vocab)
    members = order.gather(-1, index.clamp(0, vocab - 1))
    p_members, q_members = p.gather(-1, members), q.gather(-1, members)
    keep = inside & ((p_members - p.gather(-1, drafts[..., None])).abs() < threshold)
    if embedding_threshold is not None:
        distance = (embeddings[members] - embeddings[drafts][..., None, :]).pow(2).sum(-1)
        keep &= distance < embedding_threshold
    return (p_members * keep).sum(-1) / (q_members * keep).sum(-1)


def _residual(p, q):
    """Speculative sampling's correction after a rejected draft: max(0, p - q), unnormalised."""
    return (p - q).clamp(min=0)


def speculative_decode(sampler: TokenSampler, first: torch.LongTensor, length: int, knobs: dict, grouped: bool,
                       progress=None) -> tuple[torch.LongTensor, dict]:
    """SJD (``grouped=False``) or GSD: token ids ``[B, length]`` after ``first [B, 1]`` (the prefill's draw)."""
    batch, device = first.shape[0], first.device
    vocab = sampler.model.config.codebook_size
    window = knobs["draft_length"]
    tokens = torch.zeros(batch, length + window, dtype=torch.long, device=device)
    tokens[:, 0] = first[:, 0]
    accepted = torch.ones(batch, dtype=torch.long, device=device)  # tokens[:, :accepted] are final
    tokens[:, 1:1 + window] = sampler.random_tokens((batch, window))
    # proposal[b, k]: the distribution draft tokens[b, accepted[b] + k] was drawn from
    proposal = F.one_hot(tokens[:, 1:1 + window], vocab).float()
    embeddings = sampler.model.get_input_embeddings().weight.float() if knobs.get("embedding_threshold") else None
    slots_k = torch.arange(window, device=device)
    tested_total = accepted_total = 0
    while True:
        start = int(accepted.min())
        if start >= length:
            break
        end = min(start + window, length - 1)  # feed tokens start-1 .. end-1; predict tokens start .. end
        width = end - start + 1
        p = sampler.distribution(tokens[:, start - 1:end], torch.arange(start - 1, end, device=device))
        slot = torch.arange(width, device=device)
        k = slot[None, :] - (accepted - start)[:, None]  # slot -> the row's window index
        tested = (k >= 0) & (slot[None, :] < width - 1)  # drafts that were fed: verifiable this forward
        q = proposal.gather(1, k.clamp(0, window - 1)[..., None].expand(batch, width, vocab))
        drafts = tokens[:, start:end + 1]
        if grouped:
            ratio = _group_ratio(p, q, drafts, knobs["group_radius"], knobs["probability_threshold"], embeddings,
                                 knobs["embedding_threshold"])
        else:
            ratio = p.gather(-1, drafts[..., None])[..., 0] / q.gather(-1, drafts[..., None])[..., 0]
        accept = (tested & (sampler.uniform((batch, width)) < ratio.nan_to_num(0.0))) | (k < 0)
        active = (accepted <= end)  # rows with a token to decide in this forward
        first_open = (~accept).float().argmax(dim=1)  # the first undecided slot (the last slot is never accepted)
        verified = tested & (slot[None, :] <= first_open[:, None])  # up to and including the first rejection
        tested_total += int(verified[active].sum())
        accepted_total += int((verified & accept)[active].sum())
        # draw the first undecided slot from the residual of a rejected draft (p itself after the last draft), and
        # the slots after it from p: new drafts whose proposal is p
        rows = torch.arange(batch, device=device)
        p_open, q_open = p[rows, first_open], q[rows, first_open]
        residual = _residual(p_open, q_open)
        mass = residual.sum(-1, keepdim=True)
        rejected = tested[rows, first_open][:, None] & (mass > 0)
        dist = p.clone()
        dist[rows, first_open] = torch.where(rejected, residual / mass.clamp(min=torch.finfo(mass.dtype).tiny), p_open)
        draws = sampler.draw(dist)
        write = active[:, None] & (slot[None, :] >= first_open[:, None])
        tokens[:, start:end + 1] = torch.where(write, draws, drafts)
        new_accepted = torch.where(active, start + first_open + 1, accepted)
        # the next window: drafts drawn in this forward (proposal p), older drafts kept (their proposal), or fresh
        # uniformly random tokens (a point mass)
        fresh_tokens = sampler.random_tokens((batch, window))
        position = new_accepted[:, None] + slots_k
        from_p = position <= end
        old_k = position - accepted[:, None]
        from_old = ~from_p & (old_k < window)
        fresh = active[:, None] & ~from_p & ~from_old
        new_proposal = torch.where(
            from_p[..., None], p.gather(1, (position - start).clamp(0, width - 1)[..., None].expand(batch, window, vocab)),
            torch.where(from_old[..., None], proposal.gather(1, old_k.clamp(0, window - 1)[..., None].expand(batch, window, vocab)),
                        F.one_hot(fresh_tokens, vocab).float()))
        proposal = torch.where(active[:, None, None], new_proposal, proposal)
        current = tokens.gather(1, position.clamp(max=tokens.shape[1] - 1))
        tokens.scatter_(1, position.clamp(max=tokens.shape[1] - 1), torch.where(fresh, fresh_tokens, current))
        if progress is not None:
            progress(int(new_accepted.min()) - start)
        accepted = new_accepted
    stats = {"draft_tokens_verified": tested_total, "draft_tokens_accepted": accepted_total,
             "acceptance_rate": round(accepted_total / tested_total, 4) if tested_total else None}
    return tokens[:, :length], stats


def zipar_decode(sampler: TokenSampler, first: torch.LongTensor, length: int, grid_size: int, knobs: dict,
                 progress=None) -> tuple[torch.LongTensor, dict]:
    """ZipAR: token ids ``[B, length]`` (``length`` a multiple of ``grid_size``) after ``first [B, 1]``."""
    batch, device = first.shape[0], first.device
    prefix, grid = sampler.prefix, grid_size
    rows = length // grid
    window = min(knobs["window"], grid)
    tokens = torch.zeros(batch, length, dtype=torch.long, device=device)
    tokens[:, 0] = first[:, 0]
    count = [1] + [0] * (rows - 1)  # generated tokens per row
    written = torch.zeros(length, dtype=torch.bool, device=device)  # the cache holds this position's final token
    most_rows = 0
    while min(count) < grid:
        feeds = []  # (image index fed, token ids [B], a real token (not a placeholder), row it predicts for or None)
        for r in range(rows):
            c = count[r]
            if c >= grid:
                continue
            if c >= 1:
                feeds.append((r * grid + c - 1, tokens[:, r * grid + c - 1], True, r))
            elif count[r - 1] >= window:  # start row r: predicted from the end-of-row position of row r - 1
                above = count[r - 1]
                if above == grid:
                    feeds.append((r * grid - 1, tokens[:, r * grid - 1], True, r))
                else:  # placeholder: the latest token of the row above, seen only by itself
                    feeds.append((r * grid - 1, tokens[:, (r - 1) * grid + above - 1], False, r))
        fed = {f[0] for f in feeds}
        for r in range(rows - 1):  # a finished row's last token: written once so later rows see it
            position = r * grid + grid - 1
            if count[r] == grid and not written[position] and position not in fed:
                feeds.append((position, tokens[:, position], True, None))
        feeds.sort(key=lambda f: f[0])
        positions = torch.tensor([f[0] for f in feeds], device=device)
        visible = written.clone()
        visible[[f[0] for f in feeds if f[2]]] = True
        keys = prefix + int(positions.max()) + 1
        mask = sampler.key_valid[:, :keys].clone()
        mask[:, prefix:] &= visible[: keys - prefix]
        p = sampler.distribution(torch.stack([f[1] for f in feeds], dim=1), positions, mask)
        draws = sampler.draw(p)
        most_rows = max(most_rows, sum(f[3] is not None for f in feeds))
        for i, (position, _, real, row) in enumerate(feeds):
            if real:
                written[position] = True
            if row is not None:
                tokens[:, row * grid + count[row]] = draws[:, i]
                count[row] += 1
        if progress is not None:
            progress(sum(f[3] is not None for f in feeds))
    return tokens, {"rows_in_parallel": most_rows}
