"""Training objective of the Instella-T2I AR generator (AMD-AGI/Instella-T2I ``scripts/train_ar.py``): teacher-forced
next-token prediction of the 64 bits of each token, a binary cross-entropy per bit, conditioned on the OLMo hidden
states of the captions (each replaced by "" with probability ``caption_dropout_prob``, the original's ``uncond_prob``
0.1, for classifier-free guidance)."""

from __future__ import annotations

import torch


def class_objective_unsupported(*args, **kwargs):
    """Instella-T2I's generators are text-conditional only."""
    raise ValueError("the Instella-T2I AR generator is text-conditional: train it on data.caption_column with "
                     "loss.text_encoder (an OLMo folder) and loss.tokenizer (a binary tokenizer)")


def diffusion_training_unsupported(*args, **kwargs):
    """The diffusion generator's objective (noised bits at a random t, per-bit flip targets) is not in the trainer."""
    raise ValueError("training the Instella-T2I diffusion generator with `vistok train generator` is not supported: its "
                     "objective is per-bit flip prediction on noised bits, not next-token prediction")


def bits_as_two_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-bit logits l ``[...]`` -> ``[..., 2]`` two-class logits ``(0, l)``: softmax gives ``(1 - sigmoid(l),
    sigmoid(l))``, so the trainer's cross-entropy against the bit equals ``binary_cross_entropy_with_logits(l, bit)``
    (the original's loss) and its argmax accuracy is the original's ``(l > 0) == bit``."""
    return torch.stack([torch.zeros_like(logits), logits], dim=-1)


def caption_bit_objective(model, tokenizer, tokens, text_pipeline, captions, loss_config):
    """(logits ``[B * n * bits, 2]``, targets ``[B * n * bits]``) for ``vistok train generator`` on a caption column.

    ``tokens``: the tokenizer's bits ``[B, n, bits]`` (or the packed ``[B, n]`` integers); the model reads
    ``[split token; bits 0..n-2]`` and predicts bits 0..n-1, as ``scripts/train_ar.py``."""
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
    bits = tokens.to(states.device)
    logits = model(bits[:, :-1].float(), states, mask).logits
    return bits_as_two_class_logits(logits.float()).reshape(-1, 2), bits.reshape(-1).long()
