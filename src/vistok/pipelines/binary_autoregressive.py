"""BinaryAutoregressiveTextToImagePipeline: text-to-image generation of binary 1D tokens, token by token
(Instella-T2I's AR model over 128 tokens of 64 bits, conditioned on every hidden state of an OLMo text encoder).

The sampler is the original ``BinaryAR.sample``: per step one batched forward of ``[conditional; unconditional]``
rows, the last position's bit logits divided by the temperature, guidance ``(1 + g) * cond - g * uncond`` (after the
division), bits ``Bernoulli(sigmoid(.))`` drawn from ``generator`` (one draw of the whole ``[B, 1, bits]`` step with
a single generator, as the original draws it from the global RNG; one per image with a list), or
``sigmoid(.) > 0.5`` at temperature 0. Prompts and negative prompts are tokenized in one call, left padded to the
longest (at most 128 tokens), as the original (the text path is shared with the diffusion sampler:
:mod:`vistok.pipelines.binary_text_to_image`). Unlike the original, which recomputes the whole text + image sequence
at each of its steps, sampling uses a static KV cache by default (``use_cache=False``: the original's recomputation).
"""

from __future__ import annotations

import torch

from .base import check_number
from .binary_text_to_image import BinaryTextToImagePipelineBase, bernoulli_per_image, guided_logits


class BinaryAutoregressiveTextToImagePipeline(BinaryTextToImagePipelineBase):
    """Components: ``image_tokenizer`` (a binary 1D tokenizer, ``InstellaBAEModel``), ``transformer``
    (``InstellaARModel``) and optionally ``text_encoder`` (a transformers ``OlmoModel`` / ``OlmoForCausalLM``,
    amd/AMD-OLMo-1B for the release) with its ``tokenizer``; without them pass ``prompt_embeds`` (the text encoder's
    hidden states 1..L stacked, ``[B, L, T, C]``) with ``prompt_attention_mask`` and the ``negative_*`` ones."""

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample_tokens(self, prompt=None, negative_prompt=None, prompt_embeds=None, prompt_attention_mask=None,
                      negative_prompt_embeds=None, negative_prompt_attention_mask=None, guidance_scale: float | None = None,
                      temperature: float | None = None, generator=None, num_images_per_prompt: int = 1,
                      callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",),
                      use_cache: bool = True) -> torch.LongTensor:
        """Bits ``[B, num_tokens, num_bits]`` (int64); unset settings take the release's defaults. ``use_cache``: a
        static KV cache over the text and the image tokens (one new position per step); False recomputes the whole
        sequence at every step, as the original (the same bits for the same draws, up to float rounding)."""
        cfg = self.transformer.config
        defaults = cfg.sampling_defaults
        guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        temperature = defaults["temperature"] if temperature is None else temperature
        check_number("guidance_scale", guidance_scale, minimum=0)
        check_number("temperature", temperature, minimum=0)
        text, mask = self.prepare_text(prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                       negative_prompt_attention_mask, num_images_per_prompt)
        batch = text.shape[0] // 2
        generator = self.check_generator(generator, batch)
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        dtype = self.transformer.dtype
        bits = torch.zeros(batch, 0, cfg.num_bits, device=text.device, dtype=torch.long)
        cache = self.transformer.new_cache(2 * batch, text.shape[2]) if use_cache else None
        for step in self.progress_bar(range(cfg.num_tokens)):
            if cache is None:
                inputs = bits.to(dtype)
                logits = self.transformer(torch.cat([inputs, inputs]), text, mask).logits[:, -1:].float()
            elif step == 0:  # the prefill: text keys/values and the split token
                logits = self.transformer.cached_step(None, cache, 0, mask, text)
            else:
                new = bits[:, -1:].to(dtype)
                logits = self.transformer.cached_step(torch.cat([new, new]), cache, step, mask)
            logits = guided_logits(logits, guidance_scale, temperature)
            probs = torch.sigmoid(logits)
            new = bernoulli_per_image(probs, generator) if temperature != 0 else (probs > 0.5).float()
            bits = torch.cat([bits, new.long()], dim=1)
            if callback_on_step_end is not None:
                cached = bits[:, :-1].clone()  # the tokens in the cache (a callback may edit bits in place)
                replaced = self.run_callback(self, callback_on_step_end, step, tensor_inputs,
                                             {"token_ids": bits, "logits": logits})["token_ids"]
                if cache is not None and not torch.equal(replaced[:, :-1], cached):
                    # tokens already in the cache were replaced: refill it from the new prefix
                    prefix = replaced[:, :-1].to(dtype)
                    self.transformer.cached_step(torch.cat([prefix, prefix]), cache, 0, mask, text)
                bits = replaced
        return bits

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, prompt_embeds=None, prompt_attention_mask=None,
                 negative_prompt_embeds=None, negative_prompt_attention_mask=None, guidance_scale: float | None = None,
                 temperature: float | None = None, height: int | None = None, width: int | None = None, generator=None,
                 output_type: str = "pil", return_dict: bool = True, num_images_per_prompt: int = 1,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",), use_cache: bool = True):
        """Generate images of ``prompt`` (a string or a list). ``negative_prompt``: the unconditional text (default "",
        as the original). ``guidance_scale`` / ``temperature``: the release's 7.5 / 1.0 by default (0 = threshold
        the guided probabilities at 0.5, the original's rule). ``height`` = ``width``: any multiple of the tokenizer's
        ``downsample_factor`` (the tokens do not fix the size; default the tokenizer's image size).
        ``callback_on_step_end(pipe, step, step, kwargs)`` runs per token. ``output_type`` "latent" returns the bits.
        ``use_cache``: a static KV cache (default; the original recomputes the whole sequence per token)."""
        self.check_output_type(output_type)
        size = self.image_size(height, width)
        bits = self.sample_tokens(prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                  negative_prompt_attention_mask, guidance_scale, temperature, generator, num_images_per_prompt,
                                  callback_on_step_end, callback_on_step_end_tensor_inputs, use_cache)
        return self.output(bits, size, output_type, return_dict)
