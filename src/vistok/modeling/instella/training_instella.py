"""Training objectives of the Instella-T2I generators, conditioned on the OLMo hidden states of the captions (each
replaced by "" with probability ``caption_dropout_prob``, the original's ``uncond_prob`` 0.1, for classifier-free
guidance), both a binary cross-entropy per bit:

- AR (``scripts/train_ar.py``): teacher-forced next-token prediction of the bits of each token;
- diffusion (``scripts/train_diff.py``, ``non_uniform_t`` and ``prediction_target='epsilon'`` as its config): t drawn
  logit-normal (``LogisticNormal(0, 1)``: sigmoid of a standard normal), the bits noised to
  ``Bernoulli(x (1 - t) + t / 2)``, the model's flip logits l turned into clean-bit logits ``z (-l) + (1 - z) l``
  against the clean bits.

The trainer's cross-entropy reads them as two-class logits (:func:`bits_as_two_class_logits`)."""

from __future__ import annotations

import torch


def class_objective_unsupported(*args, **kwargs):
    """Instella-T2I's generators are text-conditional only."""
    raise ValueError("the Instella-T2I generators are text-conditional: train them on data.caption_column with "
                     "loss.text_encoder (an OLMo folder) and loss.tokenizer (a binary tokenizer)")


def bits_as_two_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-bit logits l ``[...]`` -> ``[..., 2]`` two-class logits ``(0, l)``: softmax gives ``(1 - sigmoid(l),
    sigmoid(l))``, so the trainer's cross-entropy against the bit equals ``binary_cross_entropy_with_logits(l, bit)``
    (the original's loss) and its argmax accuracy is the original's ``(l > 0) == bit``."""
    return torch.stack([torch.zeros_like(logits), logits], dim=-1)


def _bits_and_text(model, tokens, text_pipeline, captions):
    """(config, bits ``[B, n, bits]`` long, OLMo states, mask): packed integer tokens unpacked; captions dropped to ""
    with ``caption_dropout_prob`` in training."""
    config = getattr(model, "module", model).config
    if tokens.ndim == 2:  # packed integers (a token column written from the packed view)
        shifts = torch.arange(config.num_bits, device=tokens.device)
        tokens = (tokens[..., None] >> shifts) & 1
    if tokens.ndim != 3 or tokens.shape[-1] != config.num_bits:
        raise ValueError(f"training tokens must be bits [B, n, {config.num_bits}], got {tuple(tokens.shape)}")
    captions = list(captions)
    if model.training and config.caption_dropout_prob > 0:
        drop = torch.rand(len(captions)) < config.caption_dropout_prob
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
    states, mask = text_pipeline.encode_prompt(captions)  # frozen text encoder, no gradients
    return config, tokens.to(states.device).long(), states, mask


def caption_bit_objective(model, tokenizer, tokens, text_pipeline, captions, loss_config):
    """AR: (logits ``[B * n * bits, 2]``, targets ``[B * n * bits]``) for ``vistok train generator`` on a caption
    column. ``tokens``: the tokenizer's bits ``[B, n, bits]`` (or the packed ``[B, n]`` integers); the model reads
    ``[split token; bits 0..n-2]`` and predicts bits 0..n-1, as ``scripts/train_ar.py``."""
    _, bits, states, mask = _bits_and_text(model, tokens, text_pipeline, captions)
    logits = model(bits[:, :-1].float(), states, mask).logits
    return bits_as_two_class_logits(logits.float()).reshape(-1, 2), bits.reshape(-1)


def caption_flip_objective(model, tokenizer, tokens, text_pipeline, captions, loss_config):
    """Diffusion: (clean-bit logits as two-class logits ``[B * n * bits, 2]``, clean bits ``[B * n * bits]``) at a
    logit-normal t per image, as ``scripts/train_diff.py`` (draws from the global RNG, as the original)."""
    _, bits, states, mask = _bits_and_text(model, tokens, text_pipeline, captions)
    clean = bits.float()
    t = torch.sigmoid(torch.randn(bits.shape[0])).to(clean.device)
    noisy = torch.bernoulli(clean * (1 - t[:, None, None]) + t[:, None, None] * 0.5)
    flip = model(noisy, t, states, mask).logits.float()
    clean_logits = noisy * (-flip) + (1 - noisy) * flip
    return bits_as_two_class_logits(clean_logits).reshape(-1, 2), bits.reshape(-1)
