"""TokenFlow-t2i's training objective (the original's ``LlavaLlamaForCausalLM.forward`` with labels): next-scale
cross-entropy over every image token at once, teacher-forced with the tokenizer's chained code sums, after the
prompt (``crop_and_encode_text_and_img``: BOS + text left-padded to ``prompt_length``, then ``<img>``)."""

from __future__ import annotations


def next_scale_text_objective(model, model_config, tokenizer, tokens, text, loss_config):
    """(logits [B * L, codebook_size], targets [B * L]). ``tokens``: the tokenizer's ids ``[B, L]``; ``text``: a
    dict with ``input_ids`` ``[B, P]`` (the encoded prompts ending with ``<img>``)."""
    if not isinstance(text, dict) or "input_ids" not in text:
        raise ValueError("TokenFlow-t2i trains on text: pass {'input_ids': the encoded prompts [B, P] ending with <img>}")
    config = getattr(model, "module", model).config
    inputs = tokenizer.teacher_forcing_input(tokens)
    logits = model(input_ids=text["input_ids"], image_inputs=inputs).logits
    start = config.image_token_start
    image_logits = logits[:, -tokens.shape[1]:, start:start + config.codebook_size]
    return image_logits.flatten(0, 1), tokens.flatten()


def caption_objective(model, tokenizer, tokens, text_pipeline, captions, loss_config):
    """(logits, targets) on a caption column: the captions through the pipeline's text tokenizer and
    ``crop_and_encode`` (each replaced by the negative prompt with probability ``loss_config.text_dropout``
    in training, for guidance), then :func:`next_scale_text_objective`."""
    import torch

    captions = list(captions)
    dropout = float(getattr(loss_config, "text_dropout", 0.0) or 0.0) if loss_config is not None else 0.0
    config = getattr(model, "module", model).config
    if model.training and dropout > 0:
        drop = torch.rand(len(captions)) < dropout
        captions = [config.negative_prompt if d else c for c, d in zip(captions, drop.tolist())]
    rows = [text_pipeline.encode_prompt_ids(r) for r in text_pipeline.prompt_ids(captions)]
    input_ids = torch.tensor(rows, device=tokens.device)
    return next_scale_text_objective(model, config, tokenizer, tokens, {"input_ids": input_ids}, loss_config)
