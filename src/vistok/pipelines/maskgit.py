"""MaskGITPipeline: class-conditional masked-token generation with a 1D tokenizer (TiTok, One-D-Piece).

The sampler follows bytedance/1d-tokenizer ``ImageBert.generate`` step for step, including the order
of its random draws, so that with the same seed the sampled tokens are identical to the original's.
Conditional and unconditional logits come from one batched forward (the original runs two).
"""

from __future__ import annotations

import math

import torch

from .base import VistokPipeline, check_generator, check_number, resolve_class_labels
from .sampling import gumbel_noise_from_uniform, per_image_rand

# the guidance schedules this sampler implements (the transformer config validates its default against the same names)
GUIDANCE_SCHEDULES = ("constant", "linear", "power-cosine")


class MaskGITPipeline(VistokPipeline):
    """Components: ``image_tokenizer`` (a 1D VisualTokenizer) and ``transformer`` (any masked-token transformer
    with a ``num_tokens``/``codebook_size``/``mask_token_id``/``num_classes`` config and a
    ``forward(ids, labels, drop_labels=...)`` returning ``.logits``, e.g. MaskGITTransformer)."""

    model_cpu_offload_seq = "transformer->image_tokenizer"

    def __init__(self, image_tokenizer, transformer):
        super().__init__()
        tok, gen = image_tokenizer.config, transformer.config
        if getattr(tok, "token_layout", None) != "1d":
            raise ValueError(f"MaskGITPipeline needs a 1D discrete tokenizer (token_layout '1d'), got {getattr(tok, 'token_layout', None)!r}")
        if tok.codebook_size != gen.codebook_size:
            raise ValueError(f"the transformer predicts {gen.codebook_size} codes but the tokenizer's codebook has {tok.codebook_size}")
        if gen.num_tokens > tok.num_tokens or (gen.num_tokens != tok.num_tokens and not tok.variable_length):
            raise ValueError(f"the transformer generates {gen.num_tokens} tokens; the tokenizer takes {tok.num_tokens}")
        self.register_modules(image_tokenizer=image_tokenizer, transformer=transformer)

    def _check_call(self, class_labels, steps, guidance_scale, schedule, temperature, num_tokens) -> torch.LongTensor:
        cfg = self.transformer.config
        labels = resolve_class_labels(class_labels, cfg.num_classes, cfg.id2label, self.transformer.device)
        check_number("num_inference_steps", steps, minimum=1, integer=True, expected=" an int >= 1")
        check_number("guidance_scale", guidance_scale, minimum=0, expected=" >= 0")
        if schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(f"guidance_schedule must be one of {GUIDANCE_SCHEDULES}, got {schedule!r}")
        check_number("randomize_temperature", temperature, minimum=0, expected=" >= 0")
        check_number("num_tokens", num_tokens, minimum=1, maximum=cfg.num_tokens, integer=True, expected=f" in 1..{cfg.num_tokens}")
        if steps > num_tokens:
            raise ValueError(f"num_inference_steps must be <= the number of tokens ({num_tokens}): each step unmasks at least one, got {steps}")
        return labels

    @torch.no_grad()
    def sample_tokens(self, class_labels, num_inference_steps=None, guidance_scale=None, guidance_schedule=None,
                      guidance_scale_pow=None, randomize_temperature=None, softmax_temperature_annealing=None,
                      num_tokens=None, generator: torch.Generator | None = None) -> torch.LongTensor:
        """Token ids ``[B, num_tokens]``; unset settings take the model's released defaults."""
        cfg = self.transformer.config
        defaults = cfg.sampling_defaults
        steps = defaults["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        g = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        schedule = defaults["guidance_schedule"] if guidance_schedule is None else guidance_schedule
        power = defaults["guidance_scale_pow"] if guidance_scale_pow is None else guidance_scale_pow
        tau = defaults["randomize_temperature"] if randomize_temperature is None else randomize_temperature
        anneal = defaults["softmax_temperature_annealing"] if softmax_temperature_annealing is None else softmax_temperature_annealing
        length = cfg.num_tokens if num_tokens is None else num_tokens
        labels = self._check_call(class_labels, steps, g, schedule, tau, length)
        device, batch, mask_id = labels.device, labels.shape[0], cfg.mask_token_id
        generator = check_generator(generator, batch)

        ids = torch.full((batch, length), mask_id, dtype=torch.long, device=device)
        cfg_scale = g if schedule == "constant" else 0.0
        for step in self.progress_bar(range(steps)):
            ratio = (step + 1) / steps
            temperature = tau * (1.0 - ratio)
            is_mask = ids == mask_id
            if schedule == "power-cosine":  # in float32, as the original computes it
                power_t = torch.full((1,), float(power), device=device)
                scale_step = (1 - torch.cos(((step / steps) ** power_t) * torch.pi)) * 1 / 2
                cfg_scale = (g - 1) * scale_step + 1
            if schedule == "power-cosine" or cfg_scale != 0:
                # The original draws label-dropout noise in each of its two forwards; draw (and
                # ignore) it too so the random stream stays aligned with it.
                per_image_rand((batch,), generator, device)
                per_image_rand((batch,), generator, device)
                drop = torch.cat([torch.zeros(batch, dtype=torch.bool, device=device), torch.ones(batch, dtype=torch.bool, device=device)])
                both = self.transformer(ids.repeat(2, 1), labels.repeat(2), drop_labels=drop).logits.float()
                cond, uncond = both.chunk(2)
                base = uncond if schedule == "power-cosine" else cond
                logits = base + (cond - uncond) * cfg_scale
            else:
                per_image_rand((batch,), generator, device)
                logits = self.transformer(ids, labels).logits.float()
            if anneal:
                logits = logits / (0.5 + 0.8 * (1 - ratio))

            sampled = (logits + temperature * gumbel_noise_from_uniform(logits.shape, generator, device)).argmax(dim=-1)
            sampled_logits = torch.gather(logits, -1, sampled[..., None]).squeeze(-1)
            sampled = torch.where(is_mask, sampled, ids)
            sampled_logits = torch.where(is_mask, sampled_logits, torch.full_like(sampled_logits, math.inf))
            # arccos schedule; the count of the first sample applies to the whole batch, as in the original
            mask_len = math.floor(length * (math.acos(ratio) / (math.pi / 2)))
            mask_len = max(1, min(int(is_mask[0].sum()) - 1, mask_len))
            confidence = sampled_logits + temperature * gumbel_noise_from_uniform(sampled_logits.shape, generator, device)
            cut_off = confidence.sort(dim=-1).values[:, mask_len - 1 : mask_len]
            if step == steps - 1:
                ids = sampled
            else:
                ids = torch.where(confidence <= cut_off, torch.full_like(sampled, mask_id), sampled)
            if schedule == "linear":
                cfg_scale = ratio * g
        return ids

    def get_label_ids(self, label: str | list[str]) -> list[int]:
        """Class ids for class names, from the transformer config's ``id2label`` (as diffusers' DiT pipeline)."""
        cfg = self.transformer.config
        return resolve_class_labels(label, cfg.num_classes, cfg.id2label, "cpu").tolist()

    @torch.no_grad()
    def __call__(self, class_labels, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 guidance_schedule: str | None = None, guidance_scale_pow: float | None = None,
                 randomize_temperature: float | None = None, softmax_temperature_annealing: bool | None = None,
                 num_tokens: int | None = None, generator: torch.Generator | None = None, output_type: str = "pil",
                 return_dict: bool = True):
        """Generate images of ``class_labels``. ``guidance_schedule`` is "constant", "linear" (0 at
        the first step, then ratio*g) or "power-cosine" (guidance_scale_pow); ``randomize_temperature``
        is the annealed Gumbel temperature; ``num_tokens`` < the maximum (variable-length tokenizers)
        samples and decodes a shorter prefix. Returns ``ImagePipelineOutput`` (token ids for output_type "latent")."""
        self.check_output_type(output_type)
        ids = self.sample_tokens(class_labels, num_inference_steps, guidance_scale, guidance_schedule, guidance_scale_pow,
                                 randomize_temperature, softmax_temperature_annealing, num_tokens, generator)
        if output_type == "latent":
            return self.token_output(ids, return_dict)
        pixels = self.image_tokenizer.decode(ids.to(self.image_tokenizer.device))
        return self.images_from_pixels(pixels, self.image_tokenizer.config.pixel_range, output_type, return_dict)
