"""TokenFlow training terms.

- The tokenizer's semantic distillation (``tokenflow/tokenizer/vq_loss.py``, ``VQLoss``): the semantic decoder's
  reconstruction of the quantized semantic codes against a frozen teacher's features, ``mean(1 - cos)``
  (:func:`semantic_distillation_loss`; ``vistok train tokenizer`` adds it with ``loss.semantic_weight`` beside the
  reconstruction and quantizer terms).
- TokenFlow-t2i's objective (the original's ``LlavaLlamaForCausalLM.forward`` with labels): next-scale
  cross-entropy over every image token at once, teacher-forced with the tokenizer's chained code sums, after the
  prompt (``crop_and_encode_text_and_img``: BOS + text left-padded to ``prompt_length``, then ``<img>``).
"""

from __future__ import annotations

import torch

# OpenAI CLIP's normalisation (the original's ScalingLayerForClip)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def semantic_teacher_target(teacher, pixel_values: torch.Tensor) -> torch.Tensor | None:
    """``VQLoss.get_regress_target``: the frozen teacher's features ``[B, N, D]`` of ``pixel_values`` in [-1, 1] at
    the training resolution. A CLIP teacher (``clipb_224``: a transformers ``CLIPModel`` or
    ``CLIPVisionModelWithProjection``) reads ``ScalingLayerForClip(x)`` (to [0, 1], clamped, CLIP mean/std) and
    gives ``ln_post(patch tokens) @ proj`` (position embeddings interpolated to the grid as the original's CLIP);
    a SigLIP teacher (``siglip_384``: ``SiglipModel`` / ``SiglipVisionModel``) reads ``ScalingLayerForSigLip(x)``
    and gives ``hidden_states[-2]``. None for any other teacher."""
    from .modeling_tokenflow import tower_tokens

    kind = getattr(teacher.config, "model_type", None)
    tower = getattr(teacher, "vision_model", teacher)
    dtype = torch.promote_types(next(teacher.parameters()).dtype, torch.float32)
    with torch.no_grad():
        if kind in ("clip", "clip_vision_model"):
            projection = getattr(teacher, "visual_projection", None)
            if projection is None:
                raise ValueError("a CLIP semantic teacher needs its projection (TokenFlow distils ln_post(tokens) @ proj): "
                                 "use the full CLIPModel folder (e.g. openai/clip-vit-base-patch16), not a CLIPVisionModel")
            mean = torch.tensor(CLIP_MEAN, dtype=dtype, device=pixel_values.device)[:, None, None]
            std = torch.tensor(CLIP_STD, dtype=dtype, device=pixel_values.device)[:, None, None]
            x = (((pixel_values.to(dtype) + 1.0) * 127.5).clamp(0, 255.0) / 255.0 - mean) / std
            return projection(tower_tokens(tower, "clip", x))
        if kind in ("siglip", "siglip_vision_model"):
            return tower_tokens(tower, "siglip", pixel_values.to(dtype))
    return None


def semantic_distillation_loss(model, teacher, pixel_values: torch.Tensor, latents: torch.Tensor) -> torch.Tensor | None:
    """``VQLoss.calculate_clip_rec_loss(decode(latents)[0], get_regress_target(x))``: ``mean(1 - cos)`` between
    the semantic decoder's output on the quantized ``latents`` and :func:`semantic_teacher_target` of the same
    images; None when the teacher is neither CLIP nor SigLIP."""
    target = semantic_teacher_target(teacher, pixel_values)
    if target is None:
        return None
    reconstruction = model.decode_semantic(latents)
    if target.shape[1:] != reconstruction.shape[1:]:
        raise ValueError(f"the semantic teacher gives {tuple(target.shape[1:])} features per image but the tokenizer's "
                         f"semantic decoder {tuple(reconstruction.shape[1:])}: the teacher's patch grid at "
                         f"{pixel_values.shape[-1]} px must be the latents' grid and its feature width "
                         "semantic_feature_dim")
    dtype = torch.promote_types(reconstruction.dtype, torch.float32)
    target, reconstruction = target.to(dtype), reconstruction.to(dtype)
    target = target / target.norm(dim=-1, keepdim=True)
    reconstruction = reconstruction / reconstruction.norm(dim=-1, keepdim=True)
    return (1 - (target * reconstruction).sum(-1)).mean()


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
