"""CLIP text features as OpenCLIP computes them, from transformers' CLIP text models.

The bytedance/1d-tokenizer text-to-image models (TA-TiTok, MaskGen) read OpenCLIP ViT-L-14-336 (openai) text
features; that text tower is the one of ``openai/clip-vit-large-patch14-336`` in transformers. The two
differ in one detail that matters here: OpenCLIP pads every prompt to the context length with token id 0 and
its consumers read all positions (no attention mask), so :func:`open_clip_token_ids` pads with 0 too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CLIPTextFeatures:
    """``last_hidden_state`` (after the final layer norm; TA-TiTok's decoder reads it), ``penultimate_hidden_state``
    (the input of the last block, no norm; MaskGen's condition) and ``pooled`` (the projected end-of-text
    feature of a ``CLIPTextModelWithProjection``; ``None`` for a ``CLIPTextModel``)."""

    last_hidden_state: torch.Tensor
    penultimate_hidden_state: torch.Tensor
    pooled: torch.Tensor | None


def open_clip_token_ids(tokenizer, prompts, context_length: int = 77) -> torch.LongTensor:
    """``[len(prompts), context_length]`` ids as OpenCLIP's tokenizer makes them: start, tokens, end, truncated
    to ``context_length`` (keeping the end token), then zeros."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
    ids = tokenizer(list(prompts), padding=False, truncation=True, max_length=context_length)["input_ids"]
    out = torch.zeros(len(prompts), context_length, dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = torch.as_tensor(seq[:context_length], dtype=torch.long)
    return out


def clip_text_features(text_model, tokenizer, prompts, context_length: int | None = None) -> CLIPTextFeatures:
    """Run a transformers ``CLIPTextModel`` / ``CLIPTextModelWithProjection`` on ``prompts`` OpenCLIP's way."""
    length = context_length or text_model.config.max_position_embeddings
    input_ids = open_clip_token_ids(tokenizer, prompts, length).to(text_model.device)
    out = text_model(input_ids=input_ids, output_hidden_states=True)
    return CLIPTextFeatures(out.last_hidden_state, out.hidden_states[-2], getattr(out, "text_embeds", None))
