"""MaskGITPipeline: class-conditional masked-token generation with a 1D tokenizer (TiTok, One-D-Piece).

The sampler follows bytedance/1d-tokenizer ``ImageBert.generate`` step for step, including the order
of its random draws, so that with the same seed the sampled tokens are identical to the original's.
Conditional and unconditional logits come from one batched forward (the original runs two).
"""

from __future__ import annotations

import math

import torch

from .base import VistokPipeline, check_number
from .sampling import gumbel_noise_from_uniform, rand_per_image


class MaskGITPipeline(VistokPipeline):
    """Components: ``image_tokenizer`` (a 1D VisualTokenizer) and ``transformer`` (a masked-token generator such
    as ``MaskGITTransformer``: logits over the codes, a mask token, class labels and a null class)."""

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

    _callback_tensor_inputs = ["token_ids", "logits"]

    def _check_settings(self, steps, guidance_scale, schedule, temperature, num_tokens) -> None:
        cfg = self.transformer.config
        check_number("num_tokens", num_tokens, minimum=1, maximum=cfg.num_tokens, integer=True)
        check_number("num_inference_steps", steps, minimum=1, integer=True)
        if steps > num_tokens:  # each step unmasks at least one token
            raise ValueError(f"num_inference_steps must be <= the number of tokens ({num_tokens}), got {steps}")
        check_number("guidance_scale", guidance_scale, minimum=0)
        if schedule not in cfg.guidance_schedules:
            raise ValueError(f"guidance_schedule must be one of {cfg.guidance_schedules}, got {schedule!r}")
        check_number("randomize_temperature", temperature, minimum=0)

    @torch.no_grad()
    def sample_tokens(self, class_labels, num_inference_steps=None, guidance_scale=None, guidance_schedule=None,
                      guidance_scale_pow=None, randomize_temperature=None, softmax_temperature_annealing=None,
                      num_tokens=None, generator=None, num_images_per_prompt: int = 1, callback_on_step_end=None,
                      callback_on_step_end_tensor_inputs=("token_ids",)) -> torch.LongTensor:
        """Token ids ``[B * num_images_per_prompt, num_tokens]``; unset settings take the model's released defaults.
        ``generator``: one generator (the original's draw order) or a list with one per image."""
        cfg = self.transformer.config
        defaults = cfg.sampling_defaults
        steps = defaults["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        g = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        schedule = defaults["guidance_schedule"] if guidance_schedule is None else guidance_schedule
        power = defaults["guidance_scale_pow"] if guidance_scale_pow is None else guidance_scale_pow
        tau = defaults["randomize_temperature"] if randomize_temperature is None else randomize_temperature
        anneal = defaults["softmax_temperature_annealing"] if softmax_temperature_annealing is None else softmax_temperature_annealing
        length = cfg.num_tokens if num_tokens is None else num_tokens
        labels = self.class_label_ids(class_labels, num_images_per_prompt)
        self._check_settings(steps, g, schedule, tau, length)
        check_number("guidance_scale_pow", power)
        device, batch, mask_id = labels.device, labels.shape[0], cfg.mask_token_id
        generator = self.check_generator(generator, batch)
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)

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
                rand_per_image((batch,), generator, device)
                rand_per_image((batch,), generator, device)
                drop = torch.cat([torch.zeros(batch, dtype=torch.bool, device=device), torch.ones(batch, dtype=torch.bool, device=device)])
                both = self.transformer(ids.repeat(2, 1), labels.repeat(2), drop_labels=drop).logits.float()
                cond, uncond = both.chunk(2)
                base = uncond if schedule == "power-cosine" else cond
                logits = base + (cond - uncond) * cfg_scale
            else:
                rand_per_image((batch,), generator, device)
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
            ids = self.run_callback(self, callback_on_step_end, step, tensor_inputs, {"token_ids": ids, "logits": logits})["token_ids"]
        return ids

    @torch.no_grad()
    def __call__(self, class_labels, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 guidance_schedule: str | None = None, guidance_scale_pow: float | None = None,
                 randomize_temperature: float | None = None, softmax_temperature_annealing: bool | None = None,
                 num_tokens: int | None = None, generator=None, output_type: str = "pil", return_dict: bool = True,
                 num_images_per_prompt: int = 1, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs=("token_ids",)):
        """Generate images of ``class_labels`` (ids, a tensor, or class names of ``id2label``). ``guidance_schedule``
        is "constant", "linear" (0 at the first step, then ratio*g) or "power-cosine" (guidance_scale_pow);
        ``randomize_temperature`` is the annealed Gumbel temperature; ``num_tokens`` < the maximum
        (variable-length tokenizers) samples and decodes a shorter prefix. ``generator``: one generator or one
        per image; ``callback_on_step_end(pipe, step, timestep, kwargs)`` sees (and may replace) "token_ids" and
        "logits"; ``output_type`` "latent" returns the token ids. Returns ``ImagePipelineOutput``."""
        self.check_output_type(output_type)
        ids = self.sample_tokens(class_labels, num_inference_steps, guidance_scale, guidance_schedule, guidance_scale_pow,
                                 randomize_temperature, softmax_temperature_annealing, num_tokens, generator,
                                 num_images_per_prompt, callback_on_step_end, callback_on_step_end_tensor_inputs)
        return self.finish(ids, output_type, return_dict, generator=generator)
