"""STAR's training objective (Davinci-XLab/STAR-T2I ``trainer.py``): VAR's next-scale cross-entropy over every
scale's tokens at once, teacher-forced with the VQVAE's running reconstruction, conditioned on text features."""

from __future__ import annotations


def next_scale_text_objective(model, model_config, tokenizer, tokens, text, loss_config):
    """(logits, targets). ``text``: a dict with ``encoder_hidden_states``, ``encoder_attention_mask`` and
    ``pooled_text_embeds`` (CLIP features of the captions, "" for the rows dropped for guidance)."""
    if not isinstance(text, dict) or "encoder_hidden_states" not in text or "pooled_text_embeds" not in text:
        raise ValueError("STAR trains on text: pass the captions' CLIP features (encoder_hidden_states, "
                         "encoder_attention_mask, pooled_text_embeds), not class labels")
    inputs = tokenizer.teacher_forcing_input(tokens)
    logits = model(text["encoder_hidden_states"], text["pooled_text_embeds"], inputs,
                   encoder_attention_mask=text.get("encoder_attention_mask")).logits
    return logits.flatten(0, 1), tokens.flatten()


def caption_objective(model, tokenizer, tokens, text_pipeline, captions, loss_config):
    """(logits, targets) for ``vistok train generator`` on a caption column: the captions' CLIP features (each
    replaced by "" with probability ``config.text_dropout`` in training, for classifier-free guidance, as the
    original's data pipeline feeds empty prompts) through the next-scale objective."""
    import torch

    config = getattr(model, "module", model).config
    captions = list(captions)
    if model.training and config.text_dropout > 0:
        drop = torch.rand(len(captions)) < config.text_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
    with torch.no_grad():
        states, mask, pooled = text_pipeline.encode_prompt(captions)
    text = {"encoder_hidden_states": states, "encoder_attention_mask": mask, "pooled_text_embeds": pooled}
    return next_scale_text_objective(model, config, tokenizer, tokens, text, loss_config)
