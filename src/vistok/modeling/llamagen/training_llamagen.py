"""LlamaGen's class-conditional training objective (FoundationVision/LlamaGen): next-token cross-entropy
over the raster-order tokens after the class token (the original's ``idx=z[:, :-1], targets=z``)."""

from __future__ import annotations


def next_token_objective(model, model_config, tokenizer, tokens, labels, loss_config):
    """(logits, targets): ``[class, t_0 .. t_{N-2}]`` predicts ``[t_0 .. t_{N-1}]``."""
    logits = model(input_ids=tokens[:, :-1], class_labels=labels).logits
    return logits.flatten(0, 1), tokens.flatten()
