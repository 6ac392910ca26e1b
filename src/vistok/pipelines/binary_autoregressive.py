"""BinaryAutoregressiveTextToImagePipeline: text-to-image generation of binary 1D tokens, token by token
(Instella-T2I's AR model over 128 tokens of 64 bits, conditioned on every hidden state of an OLMo text encoder).

The sampler is the original ``BinaryAR.sample``: per step one batched forward of ``[conditional; unconditional]``
rows, the last position's bit logits divided by the temperature, guidance ``(1 + g) * cond - g * uncond`` (after the
division), bits ``Bernoulli(sigmoid(.))`` drawn from ``generator`` (one draw of the whole ``[B, 1, bits]`` step with
a single generator, as the original draws it from the global RNG; one per image with a list), or
``sigmoid(.) > 0.5`` at temperature 0. Prompts and negative prompts are tokenized in one call, left padded to the
longest (at most 128 tokens), as the original.
"""

from __future__ import annotations

import torch

from .base import VistokPipeline, check_number

MAX_TEXT_LENGTH = 128  # the original tokenizer call's max_length


def bernoulli_per_image(probs: torch.Tensor, generator) -> torch.Tensor:
    if isinstance(generator, list):
        return torch.cat([torch.bernoulli(p, generator=g) for p, g in zip(probs.split(1), generator)])
    return torch.bernoulli(probs, generator=generator)


class BinaryAutoregressiveTextToImagePipeline(VistokPipeline):
    """Components: ``image_tokenizer`` (a binary 1D tokenizer, ``InstellaBAEModel``), ``transformer``
    (``InstellaARModel``) and optionally ``text_encoder`` (a transformers ``OlmoModel`` / ``OlmoForCausalLM``,
    amd/AMD-OLMo-1B for the release) with its ``tokenizer``; without them pass ``prompt_embeds`` (the text encoder's
    hidden states 1..L stacked, ``[B, L, T, C]``) with ``prompt_attention_mask`` and the ``negative_*`` ones."""

    model_cpu_offload_seq = "text_encoder->transformer->image_tokenizer"
    _optional_components = ["text_encoder", "tokenizer"]
    _callback_tensor_inputs = ["token_ids", "logits"]

    def __init__(self, image_tokenizer, transformer, text_encoder=None, tokenizer=None):
        super().__init__()
        tok, cfg = image_tokenizer.config, transformer.config
        if (getattr(tok, "num_bits", None), tok.num_tokens) != (cfg.num_bits, cfg.num_tokens):
            raise ValueError(f"the transformer generates {cfg.num_tokens} tokens of {cfg.num_bits} bits; the image tokenizer "
                             f"takes {tok.num_tokens} of {getattr(tok, 'num_bits', None)}")
        if text_encoder is not None and (text_encoder.config.hidden_size, text_encoder.config.num_hidden_layers) != \
                (cfg.text_hidden_size, cfg.num_hidden_layers):
            raise ValueError(f"the transformer takes {cfg.num_hidden_layers} hidden states {cfg.text_hidden_size} wide; the text "
                             f"encoder gives {text_encoder.config.num_hidden_layers} of {text_encoder.config.hidden_size}")
        self.register_modules(image_tokenizer=image_tokenizer, transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer)

    # -- text ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states 1..L stacked ``[B, L, T, C]``, attention mask ``[B, T]``): the prompts in one tokenizer call,
        left padded to the longest, truncated to 128 tokens, as the original."""
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("this pipeline has no text_encoder/tokenizer: pass prompt_embeds and prompt_attention_mask "
                             "(and the negative_* ones), or load it with an OLMo text encoder and its tokenizer")
        self.tokenizer.padding_side = "left"
        text = self.tokenizer(list(prompts), truncation=True, padding=True, max_length=MAX_TEXT_LENGTH, return_tensors="pt",
                              return_token_type_ids=False)
        device = self.text_encoder.device
        mask = text["attention_mask"].to(device)
        out = self.text_encoder(input_ids=text["input_ids"].to(device), attention_mask=mask, output_hidden_states=True)
        return torch.stack(out.hidden_states[1:], dim=1), mask

    @staticmethod
    def _prompts(prompt, what: str) -> list[str]:
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"{what} must be a string or a non-empty list of strings, got {prompt!r}")
        return list(prompts)

    def _check_embeds(self, embeds, mask, what: str):
        cfg = self.transformer.config
        if not isinstance(embeds, torch.Tensor) or not embeds.is_floating_point() or embeds.ndim != 4 \
                or embeds.shape[1] != cfg.num_hidden_layers or embeds.shape[-1] != cfg.text_hidden_size:
            got = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
            raise ValueError(f"{what}_embeds must be the text encoder's hidden states 1..{cfg.num_hidden_layers} stacked, "
                             f"[B, {cfg.num_hidden_layers}, T, {cfg.text_hidden_size}], got {got}")
        if mask is None:
            mask = torch.ones(embeds.shape[0], embeds.shape[2], dtype=torch.long, device=embeds.device)
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (embeds.shape[0], embeds.shape[2]):
            raise ValueError(f"{what}_attention_mask must have shape {(embeds.shape[0], embeds.shape[2])}")
        return embeds, mask

    @staticmethod
    def _left_pad(embeds, mask, length):
        extra = length - embeds.shape[2]
        if extra == 0:
            return embeds, mask
        pad = embeds.new_zeros(embeds.shape[0], embeds.shape[1], extra, embeds.shape[3])
        return torch.cat([pad, embeds], dim=2), torch.cat([mask.new_zeros(mask.shape[0], extra), mask], dim=1)

    def _text(self, prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
              negative_prompt_attention_mask):
        """``[conditional; unconditional]`` text states and mask (2B rows)."""
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("pass either prompt or prompt_embeds, not both")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("pass either negative_prompt or negative_prompt_embeds, not both")
        if prompt_embeds is None:
            if prompt is None:
                raise ValueError("pass prompt or prompt_embeds")
            prompts = self._prompts(prompt, "prompt")
            if negative_prompt_embeds is None:
                negatives = [""] * len(prompts) if negative_prompt is None else self._prompts(negative_prompt, "negative_prompt")
                if len(negatives) == 1 and len(prompts) > 1:
                    negatives = negatives * len(prompts)
                if len(negatives) != len(prompts):
                    raise ValueError(f"negative_prompt gives {len(negatives)} rows but the prompts {len(prompts)}")
                states, mask = self.encode_prompt(prompts + negatives)  # one call: one padded length, as the original
                return states, mask
            prompt_embeds, prompt_attention_mask = self.encode_prompt(prompts)
        embeds, mask = self._check_embeds(prompt_embeds, prompt_attention_mask, "prompt")
        batch = embeds.shape[0]
        if negative_prompt_embeds is None:
            negatives = [""] * batch if negative_prompt is None else self._prompts(negative_prompt, "negative_prompt")
            if len(negatives) == 1 and batch > 1:
                negatives = negatives * batch
            negative_prompt_embeds, negative_prompt_attention_mask = self.encode_prompt(negatives)
        neg, neg_mask = self._check_embeds(negative_prompt_embeds, negative_prompt_attention_mask, "negative_prompt")
        if neg.shape[0] != batch:
            raise ValueError(f"negative_prompt gives {neg.shape[0]} rows but the prompts {batch}")
        length = max(embeds.shape[2], neg.shape[2])
        embeds, mask = self._left_pad(embeds, mask, length)
        neg, neg_mask = self._left_pad(neg.to(embeds.dtype), neg_mask.to(mask.dtype), length)
        return torch.cat([embeds, neg]), torch.cat([mask, neg_mask])

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample_tokens(self, prompt=None, negative_prompt=None, prompt_embeds=None, prompt_attention_mask=None,
                      negative_prompt_embeds=None, negative_prompt_attention_mask=None, guidance_scale: float | None = None,
                      temperature: float | None = None, generator=None, num_images_per_prompt: int = 1,
                      callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",)) -> torch.LongTensor:
        """Bits ``[B, num_tokens, num_bits]`` (int64); unset settings take the release's defaults."""
        cfg = self.transformer.config
        defaults = cfg.sampling_defaults
        guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        temperature = defaults["temperature"] if temperature is None else temperature
        check_number("guidance_scale", guidance_scale, minimum=0)
        check_number("temperature", temperature, minimum=0)
        check_number("num_images_per_prompt", num_images_per_prompt, minimum=1, integer=True)
        text, mask = self._text(prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                negative_prompt_attention_mask)
        if num_images_per_prompt > 1:
            text, mask = text.repeat_interleave(num_images_per_prompt, dim=0), mask.repeat_interleave(num_images_per_prompt, dim=0)
        batch = text.shape[0] // 2
        generator = self.check_generator(generator, batch)
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        device, dtype = self.transformer.device, self.transformer.dtype
        text, mask = text.to(device, dtype), mask.to(device)
        bits = torch.zeros(batch, 0, cfg.num_bits, device=device, dtype=torch.long)
        for step in self.progress_bar(range(cfg.num_tokens)):
            inputs = bits.to(dtype)
            logits = self.transformer(torch.cat([inputs, inputs]), text, mask).logits[:, -1:].float()
            logits = logits / temperature
            cond, uncond = logits.chunk(2)
            logits = (1 + guidance_scale) * cond - guidance_scale * uncond
            probs = torch.sigmoid(logits)
            new = bernoulli_per_image(probs, generator) if temperature != 0 else (probs > 0.5).float()
            bits = torch.cat([bits, new.long()], dim=1)
            if callback_on_step_end is not None:
                bits = self.run_callback(self, callback_on_step_end, step, tensor_inputs,
                                         {"token_ids": bits, "logits": logits})["token_ids"]
        return bits

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, prompt_embeds=None, prompt_attention_mask=None,
                 negative_prompt_embeds=None, negative_prompt_attention_mask=None, guidance_scale: float | None = None,
                 temperature: float | None = None, height: int | None = None, width: int | None = None, generator=None,
                 output_type: str = "pil", return_dict: bool = True, num_images_per_prompt: int = 1,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",)):
        """Generate images of ``prompt`` (a string or a list). ``negative_prompt``: the unconditional text (default "",
        as the original). ``guidance_scale`` / ``temperature``: the release's 7.5 / 1.0 by default (0 = threshold
        the guided probabilities at 0.5, the original's rule). ``height`` = ``width``: any multiple of the tokenizer's
        ``downsample_factor`` (the tokens do not fix the size; default the tokenizer's image size).
        ``callback_on_step_end(pipe, step, step, kwargs)`` runs per token. ``output_type`` "latent" returns the bits."""
        self.check_output_type(output_type)
        size = height or width or self.image_tokenizer.config.image_size
        if (height is not None and width is not None and height != width) or (height or size) != (width or size):
            raise ValueError(f"height and width must be equal (square images), got {height} and {width}")
        self.image_tokenizer.check_image_size(size, size)
        bits = self.sample_tokens(prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                  negative_prompt_attention_mask, guidance_scale, temperature, generator, num_images_per_prompt,
                                  callback_on_step_end, callback_on_step_end_tensor_inputs)
        if output_type == "latent":
            return self.finish(bits, output_type, return_dict)
        pixels = self.image_tokenizer.decode(bits.to(self.image_tokenizer.device), image_size=size)
        return self.finish(bits, output_type, return_dict, pixels=pixels.float().clamp(-1, 1))
