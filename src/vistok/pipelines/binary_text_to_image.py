"""What the binary-token text-to-image pipelines share (Instella-T2I's autoregressive and diffusion samplers): the
components (a binary 1D ``image_tokenizer``, a ``transformer`` conditioned on every hidden state of an OLMo
``text_encoder``), the text path of the original (prompts and negative prompts tokenized in one call, left padded
to the longest, at most 128 tokens; hidden states 1..L stacked) or ``prompt_embeds`` given directly, the guidance
rule on bit logits, per-image Bernoulli draws and the image output."""

from __future__ import annotations

import torch

from .base import VistokPipeline, check_number

MAX_TEXT_LENGTH = 128  # the original tokenizer call's max_length


def bernoulli_per_image(probs: torch.Tensor, generator) -> torch.Tensor:
    if isinstance(generator, list):
        return torch.cat([torch.bernoulli(p, generator=g) for p, g in zip(probs.split(1), generator)])
    return torch.bernoulli(probs, generator=generator)


def guided_logits(logits: torch.Tensor, guidance_scale: float, temperature: float) -> torch.Tensor:
    """The original's guidance on ``[cond; uncond]`` bit logits: divided by the temperature first, then
    ``(1 + g) * cond - g * uncond``."""
    logits = logits / temperature
    cond, uncond = logits.chunk(2)
    return (1 + guidance_scale) * cond - guidance_scale * uncond


class BinaryTextToImagePipelineBase(VistokPipeline):
    """Components: ``image_tokenizer`` (a binary 1D tokenizer, ``InstellaBAEModel``), ``transformer`` (a generator
    whose config has ``num_bits``, ``num_tokens``, ``num_hidden_layers``, ``text_hidden_size`` and
    ``sampling_defaults``) and optionally ``text_encoder`` (a transformers ``OlmoModel`` / ``OlmoForCausalLM``,
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

    def prepare_text(self, prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                     negative_prompt_attention_mask, num_images_per_prompt: int):
        """``[conditional; unconditional]`` text states and mask, each prompt repeated ``num_images_per_prompt``
        times, on the transformer's device and dtype."""
        check_number("num_images_per_prompt", num_images_per_prompt, minimum=1, integer=True)
        text, mask = self._text(prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                negative_prompt_attention_mask)
        if num_images_per_prompt > 1:
            text, mask = text.repeat_interleave(num_images_per_prompt, dim=0), mask.repeat_interleave(num_images_per_prompt, dim=0)
        return text.to(self.transformer.device, self.transformer.dtype), mask.to(self.transformer.device)

    def image_size(self, height, width) -> int:
        """The square side to decode at: ``height`` = ``width``, a multiple of the tokenizer's ``downsample_factor``
        (the tokens do not fix the size; default the tokenizer's image size)."""
        size = height or width or self.image_tokenizer.config.image_size
        if (height is not None and width is not None and height != width) or (height or size) != (width or size):
            raise ValueError(f"height and width must be equal (square images), got {height} and {width}")
        self.image_tokenizer.check_image_size(size, size)
        return size

    def output(self, bits: torch.LongTensor, size: int, output_type: str, return_dict: bool):
        """The bits for ``output_type="latent"``, else the tokenizer's decoding at ``size``, clamped to [-1, 1]."""
        if output_type == "latent":
            return self.finish(bits, output_type, return_dict)
        pixels = self.image_tokenizer.decode(bits.to(self.image_tokenizer.device), image_size=size)
        return self.finish(bits, output_type, return_dict, pixels=pixels.float().clamp(-1, 1))

