"""MaskGen's training objectives (bytedance/1d-tokenizer ``utils/train_utils.py::train_one_epoch_t2i_generator``).

Both drop captions to the empty prompt with probability ``text_drop_prob`` (classifier-free guidance; upstream's
``preprocess_condition`` swaps the row for the empty prompt's features, the same numbers). Without per-image aesthetic
scores in the data the micro-condition is the released sampling value.

- MaskGen-VQ (``MaskGen_VQ.forward`` in training): tokens masked by the arccos schedule (at least one per sample),
  cross-entropy on the masked tokens.
- MaskGen-KL (``MaskGen_KL.forward``, MAR's objective): the tokenizer's posterior sampled and scaled by
  ``scale_factor``, one arccos mask ratio for the whole batch (``ceil``), a random generation order per image, the
  first ones masked; the diffusion loss of the masked tokens (:meth:`MaskGenKLTransformer.diffusion_loss`).
"""

from __future__ import annotations

import torch

from ..maskgit.training_maskgit import mask_ratio, mask_tokens


def unsupported_class_objective(model, model_config, tokenizer, tokens, labels, loss_config):
    raise ValueError("MaskGen is text-conditional: train it on a caption column (data.caption_column) with "
                     "loss.text_encoder (a CLIPTextModelWithProjection folder), not on class labels")


def _text_condition(model, text_pipeline, captions):
    """(config, penultimate CLIP features, pooled feature) of the captions, each dropped to the empty prompt with
    probability ``text_drop_prob`` in training (one ``torch.rand(B)`` draw, as upstream)."""
    config = getattr(model, "module", model).config
    captions = list(captions)
    if model.training and config.text_drop_prob > 0:
        drop = torch.rand(len(captions)) < config.text_drop_prob
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
    with torch.no_grad():
        features = text_pipeline.encode_prompt(captions)
    return config, features.penultimate_hidden_state, features.pooled


def masked_text_objective(model, tokenizer, tokens, text_pipeline, captions, loss_config):
    """(logits, targets) of the masked positions, conditioned on the captions' CLIP features."""
    config, text, pooled = _text_condition(model, text_pipeline, captions)
    device = tokens.device
    inputs, mask = mask_tokens(tokens, config.mask_token_id, config.mask_schedule if config.mask_schedule == "cosine" else "arccos")
    logits = model(input_ids=inputs, encoder_hidden_states=text.to(device), pooled_projections=pooled.to(device)).logits
    return logits[mask], tokens[mask]


def sample_scaled_latents(posterior: torch.Tensor, scale_factor: float) -> torch.Tensor:
    """``[B, n, C]`` latents ``(mean + std * noise) * scale_factor`` from the tokenizer's posterior parameters
    ``[B, n, 2C]`` (mean, then log-variance clamped to [-30, 20]). The noise is drawn ``[B, C, n]``, in the layout of
    upstream's ``DiagonalGaussianDistribution`` over ``[B, 2C, 1, n]``, so a seed gives upstream's sample."""
    mean, logvar = posterior.float().chunk(2, dim=-1)
    std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
    noise = torch.randn(mean.shape[0], mean.shape[2], mean.shape[1]).to(mean.device).transpose(1, 2)
    return (mean + std * noise) * scale_factor


def batch_random_mask(batch: int, length: int, device, orders: torch.LongTensor | None = None) -> torch.BoolTensor:
    """MaskGen-KL's training mask (``MaskGen_KL.random_masking``): one ratio ``arccos(t) / (pi / 2)``, ``t ~ U[0, 1)``,
    for the whole batch, ``ceil(length * ratio)`` tokens masked per image (at least one), the first of a random order
    per image. ``orders`` ``[B, length]``: given generation orders (upstream shuffles with NumPy; here
    ``torch.randperm`` per image, before the ratio is drawn as upstream)."""
    if orders is None:
        orders = torch.stack([torch.randperm(length) for _ in range(batch)])
    orders = orders.to(device)
    t = torch.zeros(1, device=device).uniform_(0, 1.0)
    ratio = mask_ratio(t, "arccos").clamp(1e-6, 1.0)
    count = int(torch.ceil(length * ratio))
    return torch.zeros(batch, length, dtype=torch.bool, device=device).scatter(1, orders[:, :count], True)


def diffusion_text_objective(model, tokenizer, posterior, text_pipeline, captions, loss_config, orders=None):
    """MaskGen-KL's training loss (a scalar) on the tokenizer's posterior parameters ``[B, n, 2C]``: caption dropout,
    latents sampled and scaled, the batch mask, and the diffusion loss of the masked tokens (random timesteps and
    noise, each token repeated ``diffusion_batch_mul`` times). Random draws in upstream's order: caption dropout,
    the posterior noise, (the orders,) the mask ratio, the timesteps, the diffusion noise."""
    config, text, pooled = _text_condition(model, text_pipeline, captions)
    device = posterior.device
    latents = sample_scaled_latents(posterior, config.scale_factor)
    mask = batch_random_mask(latents.shape[0], latents.shape[1], device, orders)
    out = model(latents=latents, mask=mask, encoder_hidden_states=text.to(device), pooled_projections=pooled.to(device),
                labels=latents)
    return out.loss
