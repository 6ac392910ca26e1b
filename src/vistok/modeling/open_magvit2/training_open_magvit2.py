"""Open-MAGVIT2's class-conditional training objective (models/cond_transformer_gpt.py ``shared_step``): each
code id is split into its ``pre``/``post`` sub-tokens, the generator is teacher-forced on all of them, and the
loss is the cross-entropy of both heads."""

from __future__ import annotations

import torch

from ..quantizers import split_indices


def factorized_objective(model, model_config, tokenizer, tokens, labels, loss_config):
    """(logits, targets) whose cross-entropy is ``(CE(pre) + CE(post)) / 2``: the original's ``CE(pre) + CE(post)``
    halved (the trainer takes one mean over all rows; the halving is a constant scale of the loss). The pre
    head's logits are padded with ``-inf`` to the post vocabulary so both heads' rows share one tensor."""
    out = model(input_ids=tokens, class_labels=labels)
    pre_targets, post_targets = split_indices(tokens, model_config.factorized_bits)
    pre, post = out.logits_pre.flatten(0, 1), out.logits_post.flatten(0, 1)
    width = max(pre.shape[1], post.shape[1])
    pad = lambda x: torch.cat([x, x.new_full((x.shape[0], width - x.shape[1]), float("-inf"))], dim=1)  # noqa: E731
    return torch.cat([pad(pre), pad(post)]), torch.cat([pre_targets.flatten(), post_targets.flatten()])


def next_token_objective(model, model_config, tokenizer, tokens, labels, loss_config):
    """IBQ's (models/cond_transformer_llama.py): ``[class, t_0 .. t_{N-2}]`` predicts ``[t_0 .. t_{N-1}]``."""
    logits = model(input_ids=tokens[:, :-1], class_labels=labels).logits
    return logits.flatten(0, 1), tokens.flatten()
