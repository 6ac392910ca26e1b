"""BinaryDiffusionTextToImagePipeline: text-to-image generation of binary 1D tokens by discrete diffusion over bits
(Instella-T2I's diffusion model over 128 tokens of 64 bits, conditioned on every hidden state of an OLMo text encoder).

The sampler is the original ``BinaryDiffusion.sample``: z ~ Bernoulli(1/2) for every bit; timesteps
``t_i = (1 - i/N) ** rho`` (:func:`binary_diffusion_timesteps`); per step one batched forward of ``[conditional;
unconditional]`` rows at t_i, the flip logits divided by the temperature, guidance ``(1 + g) * cond - g * uncond``
(after the division, shared with the AR sampler), p = sigmoid, the clean-bit estimate x0 = z (1 - p) + (1 - z) p, then
the step rule (:func:`binary_diffusion_step`): "protocol_1" (the release's) draws ``z ~ Bernoulli(x0 (1 - t_{i+1}) +
t_{i+1} / 2)``, "protocol_2" the two-state posterior; the last step thresholds x0 at 0.5. Every draw comes from
``generator`` (one draw of the whole ``[B, n, bits]`` tensor with a single generator, as the original draws from the
global RNG; one per image with a list). The text path is the AR pipeline's (:mod:`.binary_text_to_image`).
"""

from __future__ import annotations

import torch

from .base import check_number
from .binary_text_to_image import BinaryTextToImagePipelineBase, bernoulli_per_image, guided_logits

STEP_RULES = ("protocol_1", "protocol_2")


def binary_diffusion_timesteps(num_inference_steps: int, rho: float = 1.0) -> list[float]:
    """The original's schedule: ``t_i = (1 - i / N) ** rho`` for i = 0..N-1 (1 = pure noise; never reaches 0)."""
    return [(1.0 - i / num_inference_steps) ** rho for i in range(num_inference_steps)]


def binary_diffusion_step(bits: torch.Tensor, flip_probs: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor | None,
                          step_rule: str = "protocol_1", draw=torch.bernoulli) -> torch.Tensor:
    """One step of the original sampler, in its operation order (so the same draws give identical bits).

    ``bits`` z_t (float 0/1) ``[B, n, d]``, ``flip_probs`` p (guided) of the same shape, ``t``/``t_next`` ``[B]``;
    the clean-bit estimate is ``x0 = z (1 - p) + (1 - z) p``. ``t_next`` None (the last step): ``x0 > 0.5``.
    "protocol_1": ``z ~ Bernoulli(x0 (1 - t_next) + t_next / 2)``; "protocol_2": the posterior
    ``q(z_{t_next} | z_t, x0)`` of the uniform-noise chain, normalised over {1, 0}. ``draw(probs)`` samples the
    Bernoulli."""
    if step_rule not in STEP_RULES:
        raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
    x0 = bits * (1 - flip_probs) + (1 - bits) * flip_probs
    if t_next is None:
        return (x0 > 0.5) * 1.0
    if step_rule == "protocol_1":
        t_next = t_next[:, None, None]
        return draw(x0 * (1 - t_next) + 0.5 * torch.ones_like(bits) * t_next)
    x0_pair = torch.cat([x0.unsqueeze(-1), (1 - x0).unsqueeze(-1)], dim=-1)
    xt_pair = torch.cat([bits.unsqueeze(-1), (1 - bits).unsqueeze(-1)], dim=-1)
    t, t_next = t[:, None, None, None], t_next[:, None, None, None]
    marginal = x0_pair * (1.0 - t_next) + 0.5 * t_next * torch.ones_like(x0_pair)
    one_step = xt_pair - (t - t_next) * (xt_pair - 0.5)
    probs = marginal * one_step
    probs = probs / probs.sum(-1, keepdims=True)
    return draw(probs[..., 0])


class BinaryDiffusionTextToImagePipeline(BinaryTextToImagePipelineBase):
    """Components: ``image_tokenizer`` (a binary 1D tokenizer, ``InstellaBAEModel``), ``transformer``
    (``InstellaDiffusionModel``: flip logits of noisy bits at a timestep) and optionally ``text_encoder`` (a
    transformers ``OlmoModel`` / ``OlmoForCausalLM``, amd/AMD-OLMo-1B for the release) with its ``tokenizer``;
    without them pass ``prompt_embeds`` (the text encoder's hidden states 1..L stacked, ``[B, L, T, C]``) with
    ``prompt_attention_mask`` and the ``negative_*`` ones."""

    @torch.no_grad()
    def sample_tokens(self, prompt=None, negative_prompt=None, prompt_embeds=None, prompt_attention_mask=None,
                      negative_prompt_embeds=None, negative_prompt_attention_mask=None, guidance_scale: float | None = None,
                      temperature: float | None = None, num_inference_steps: int | None = None, rho: float | None = None,
                      step_rule: str | None = None, generator=None, num_images_per_prompt: int = 1,
                      callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",)) -> torch.LongTensor:
        """Bits ``[B, num_tokens, num_bits]`` (int64); unset settings take the release's defaults."""
        cfg = self.transformer.config
        defaults = cfg.sampling_defaults
        guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        temperature = defaults["temperature"] if temperature is None else temperature
        num_inference_steps = defaults["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        rho = defaults["rho"] if rho is None else rho
        step_rule = defaults["step_rule"] if step_rule is None else step_rule
        check_number("guidance_scale", guidance_scale, minimum=0)
        check_number("temperature", temperature, above=0)  # the logits are divided by it
        check_number("num_inference_steps", num_inference_steps, minimum=1, integer=True)
        check_number("rho", rho, above=0)
        if step_rule not in STEP_RULES:
            raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
        text, mask = self.prepare_text(prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                       negative_prompt_attention_mask, num_images_per_prompt)
        batch = text.shape[0] // 2
        generator = self.check_generator(generator, batch)
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        device, dtype = text.device, self.transformer.dtype
        draw = lambda probs: bernoulli_per_image(probs, generator)  # noqa: E731
        # the original draws the noise in the weights' dtype and keeps z in it; the update math runs on the logits' float32
        bits = draw(0.5 * torch.ones(batch, cfg.num_tokens, cfg.num_bits, device=device)).to(dtype)
        times = [torch.tensor([t] * batch).to(device, dtype) for t in binary_diffusion_timesteps(num_inference_steps, rho)]
        for step in self.progress_bar(range(num_inference_steps)):
            t = times[step]
            logits = self.transformer(torch.cat([bits, bits]), torch.cat([t, t]), text, mask).logits.float()
            logits = guided_logits(logits, guidance_scale, temperature)
            t_next = times[step + 1].float() if step + 1 < num_inference_steps else None
            bits = binary_diffusion_step(bits.float(), torch.sigmoid(logits), t.float(), t_next, step_rule, draw).to(dtype)
            if callback_on_step_end is not None:
                bits = self.run_callback(self, callback_on_step_end, step, tensor_inputs,
                                         {"token_ids": bits.long(), "logits": logits})["token_ids"].to(dtype)
        return bits.long()

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, prompt_embeds=None, prompt_attention_mask=None,
                 negative_prompt_embeds=None, negative_prompt_attention_mask=None, guidance_scale: float | None = None,
                 temperature: float | None = None, num_inference_steps: int | None = None, rho: float | None = None,
                 step_rule: str | None = None, height: int | None = None, width: int | None = None, generator=None,
                 output_type: str = "pil", return_dict: bool = True, num_images_per_prompt: int = 1,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",)):
        """Generate images of ``prompt`` (a string or a list). ``negative_prompt``: the unconditional text (default "",
        as the original). ``guidance_scale`` / ``temperature`` / ``num_inference_steps`` / ``rho`` / ``step_rule``:
        the release's 7.5 / 1.0 / 20 / 1.0 / "protocol_1" by default (stored in the transformer config's
        ``sampling_defaults``). ``height`` = ``width``: any multiple of the tokenizer's ``downsample_factor`` (default
        the tokenizer's image size). ``callback_on_step_end(pipe, step, step, kwargs)`` runs per denoising step with
        the current bits (``token_ids``) and guided flip ``logits``. ``output_type`` "latent" returns the bits."""
        self.check_output_type(output_type)
        size = self.image_size(height, width)
        bits = self.sample_tokens(prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                  negative_prompt_attention_mask, guidance_scale, temperature, num_inference_steps, rho,
                                  step_rule, generator, num_images_per_prompt, callback_on_step_end,
                                  callback_on_step_end_tensor_inputs)
        return self.output(bits, size, output_type, return_dict)
