"""VAR's training objective (FoundationVision/VAR): next-scale cross-entropy over every scale's tokens at
once, teacher-forced with the tokenizer quantizer's running reconstruction (VAR's ``idxBl_to_var_input``)."""

from __future__ import annotations


def next_scale_objective(model, model_config, tokenizer, tokens, labels, loss_config):
    """(logits, targets): ``[class start, f_hat of scales < k upsampled to k]`` predicts every scale's tokens."""
    inputs = tokenizer.teacher_forcing_input(tokens)
    return model(class_labels=labels, inputs=inputs).logits.flatten(0, 1), tokens.flatten()
