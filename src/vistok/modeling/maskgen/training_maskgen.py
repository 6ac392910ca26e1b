"""MaskGen-VQ's training objective (bytedance/1d-tokenizer ``MaskGen_VQ.forward`` in training, with
``preprocess_condition``): captions dropped to the empty prompt with probability ``text_drop_prob`` (for
classifier-free guidance), tokens masked by the arccos schedule (at least one per sample), cross-entropy on the
masked tokens. Without per-image aesthetic scores in the data the micro-condition is the released sampling value."""

from __future__ import annotations

import torch

from ..maskgit.training_maskgit import mask_tokens


def unsupported_class_objective(model, model_config, tokenizer, tokens, labels, loss_config):
    raise ValueError("MaskGen is text-conditional: train it on a caption column (data.caption_column) with "
                     "loss.text_encoder (a CLIPTextModelWithProjection folder), not on class labels")


def masked_text_objective(model, tokenizer, tokens, text_pipeline, captions, loss_config):
    """(logits, targets) of the masked positions, conditioned on the captions' CLIP features."""
    config = getattr(model, "module", model).config
    captions = list(captions)
    if model.training and config.text_drop_prob > 0:
        drop = torch.rand(len(captions)) < config.text_drop_prob
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
    with torch.no_grad():
        features = text_pipeline.encode_prompt(captions)
    device = tokens.device
    inputs, mask = mask_tokens(tokens, config.mask_token_id, config.mask_schedule if config.mask_schedule == "cosine" else "arccos")
    logits = model(input_ids=inputs, encoder_hidden_states=features.penultimate_hidden_state.to(device),
                   pooled_projections=features.pooled.to(device)).logits
    return logits[mask], tokens[mask]


def unsupported_kl_objective(model, tokenizer, tokens, text_pipeline, captions, loss_config):
    raise ValueError("MaskGen-KL generates continuous tokens with a diffusion loss (MaskGenKLTransformer(labels=...) "
                     "computes it); `vistok train generator` trains token classifiers (logits and targets) only")
