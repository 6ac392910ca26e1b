"""NextScaleTextToImagePipeline: text-to-image coarse-to-fine generation with STAR (next-scale prediction
with cross-attention to CLIP text features; Davinci-XLab/STAR-T2I).

The sampler follows the original ``VAR.autoregressive_infer_cfg`` step for step, including the order of
its random draws: with the same seeds the sampled tokens are identical. Per scale, one batched forward
of ``[conditional; unconditional]`` over a KV cache; guidance ``(1 + t) * cond - t * uncond`` with
``t = guidance_scale * k / (K - 1)``; top-k then VAR's top-p; one multinomial draw per token from
``generator``.

The causal-driven stable sampler (``masking_sampler``, the star-1024-sampler release) replaces plain
sampling from scale ``sampler_from_scale`` on by MaskGIT-style rounds (arccos schedule, 15 rounds on
scales > 12, else 8). Kept as the original does it: in the first 5 rounds of scales < 13 tokens come
from the main head (ramped guidance) and are committed twice (by their probability, then again at
random), later rounds use the refinement head with the *full* guidance; every round draws one
discarded ``rand`` and the first 5 rounds a random confidence, both from ``mask_generator`` (None: the
global RNG, as the original).
"""

from __future__ import annotations

import math

import torch
from transformers import DynamicCache

from .base import check_number
from .next_scale import NextScalePipeline
from .sampling import filter_top_k, filter_top_p_ascending, multinomial_per_image


def masking_schedule(steps: int, side: int) -> list[int]:
    """Tokens committed per round (the original ``Scheduler``, mode arccos)."""
    r = torch.linspace(1, 0, steps)
    val = torch.arccos(r) / (math.pi * 0.5)
    counts = ((val / val.sum()) * (side ** 2)).round().int()
    counts[counts == 0] = 1
    counts[-1] += side ** 2 - counts.sum()
    return counts.tolist()


class NextScaleTextToImagePipeline(NextScalePipeline):
    """Components: ``image_tokenizer`` (VAR's multi-scale VQVAE), ``transformer`` (``STARTransformer``) and
    optionally ``text_encoder`` (a transformers ``CLIPTextModel``, SD 2.1's OpenCLIP ViT-H text tower for the
    releases) with its ``tokenizer`` (``CLIPTokenizer``); without them pass ``prompt_embeds``,
    ``prompt_attention_mask``, ``pooled_prompt_embeds`` and their ``negative_*`` counterparts."""

    model_cpu_offload_seq = "text_encoder->transformer->image_tokenizer"
    _optional_components = ["text_encoder", "tokenizer"]
    _callback_tensor_inputs = ["token_ids", "logits", "f_hat"]

    def __init__(self, image_tokenizer, transformer, text_encoder=None, tokenizer=None):
        super(NextScalePipeline, self).__init__()
        self._check_pair(image_tokenizer, transformer)
        if text_encoder is not None and text_encoder.config.hidden_size != transformer.config.text_hidden_size:
            raise ValueError(f"the transformer takes {transformer.config.text_hidden_size}-wide text features; "
                             f"the text encoder gives {text_encoder.config.hidden_size}")
        self.register_modules(image_tokenizer=image_tokenizer, transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer)

    # -- text ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompt) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CLIP ``last_hidden_state [B, T, D]``, ``attention_mask [B, T]`` and ``pooler_output [B, D]`` of
        the prompts, padded to the tokenizer's ``model_max_length`` (77), as the original ``Text_Model``."""
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("this pipeline has no text_encoder/tokenizer: pass prompt_embeds, prompt_attention_mask and "
                             "pooled_prompt_embeds (and the negative_* ones), or load it with a CLIPTextModel and CLIPTokenizer")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
        text = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt")
        device = self.text_encoder.device
        out = self.text_encoder(input_ids=text.input_ids.to(device), attention_mask=text.attention_mask.to(device))
        return out.last_hidden_state, text.attention_mask.to(device), out.pooler_output

    def _text(self, prompt, embeds, mask, pooled, what: str, batch: int | None = None):
        cfg = self.transformer.config
        if prompt is not None and embeds is not None:
            raise ValueError(f"pass either {what} or {what}_embeds, not both")
        if embeds is None:
            if prompt is None:
                prompt = [""] * batch if batch is not None else None
            if prompt is None:
                raise ValueError("pass prompt or prompt_embeds")
            if isinstance(prompt, str) and batch is not None:
                prompt = [prompt] * batch
            embeds, mask, pooled = self.encode_prompt(prompt)
        if not isinstance(embeds, torch.Tensor) or not embeds.is_floating_point() or embeds.ndim != 3 or embeds.shape[-1] != cfg.text_hidden_size:
            got = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
            raise ValueError(f"{what}_embeds must be text features [B, T, {cfg.text_hidden_size}], got {got}")
        n = embeds.shape[0]
        if not isinstance(pooled, torch.Tensor) or tuple(pooled.shape) != (n, cfg.text_hidden_size):
            raise ValueError(f"pooled_{what}_embeds must be given with {what}_embeds, shape [{n}, {cfg.text_hidden_size}]")
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(embeds.shape[:2]):
            raise ValueError(f"{what}_attention_mask must have shape {tuple(embeds.shape[:2])}")
        if batch is not None and n != batch:
            raise ValueError(f"{what} gives {n} rows but the prompts {batch}")
        device = self.transformer.device
        return embeds.to(device), mask.to(device), pooled.to(device)

    # -- sampling -----------------------------------------------------------------------------
    def _sample_codes(self, logits, t, batch, top_k, top_p, generator):
        """Guided logits -> (ids [B, l], probability of each sampled id [B, l, 1]) (original ``from_logit2emb``)."""
        logits = (1 + t) * logits[:batch] - t * logits[batch:]
        filter_top_k(logits, top_k)
        filter_top_p_ascending(logits, top_p)
        probs = logits.softmax(dim=-1)
        ids = multinomial_per_image(probs.view(-1, probs.shape[-1]), generator, replacement=True).view(batch, -1)
        return ids, torch.gather(probs, 2, ids[..., None]), logits

    @torch.no_grad()
    def sample(self, prompt=None, negative_prompt=None, prompt_embeds=None, prompt_attention_mask=None,
               pooled_prompt_embeds=None, negative_prompt_embeds=None, negative_prompt_attention_mask=None,
               negative_pooled_prompt_embeds=None, guidance_scale: float | None = None, top_k: int | None = None,
               top_p: float | None = None, masking_sampler: bool | None = None, generator=None, mask_generator=None,
               num_images_per_prompt: int = 1, callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",)):
        """``(token_ids [B, L], f_hat [B, z_channels, pn, pn])``; unset settings take the release's defaults."""
        cfg = self.transformer.config
        defaults = cfg.sampling_defaults
        guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        top_k = defaults["top_k"] if top_k is None else top_k
        top_p = defaults["top_p"] if top_p is None else top_p
        masking = defaults.get("masking_sampler", False) if masking_sampler is None else masking_sampler
        self._check_settings(guidance_scale, top_k, top_p)
        check_number("num_images_per_prompt", num_images_per_prompt, minimum=1, integer=True)
        if masking and not cfg.num_sampler_blocks:
            raise ValueError("masking_sampler needs a transformer with the sampler head (num_sampler_blocks > 0, star-1024-sampler)")
        text, mask, pooled = self._text(prompt, prompt_embeds, prompt_attention_mask, pooled_prompt_embeds, "prompt")
        neg = self._text(negative_prompt, negative_prompt_embeds, negative_prompt_attention_mask, negative_pooled_prompt_embeds,
                         "negative_prompt", text.shape[0])
        if num_images_per_prompt > 1:
            text, mask, pooled = (x.repeat_interleave(num_images_per_prompt, dim=0) for x in (text, mask, pooled))
            neg = tuple(x.repeat_interleave(num_images_per_prompt, dim=0) for x in neg)
        batch = text.shape[0]
        text, mask, pooled = (torch.cat([a, b.to(a.dtype)]) for a, b in zip((text, mask, pooled), neg))
        generator = self.check_generator(generator, batch)
        if not (mask_generator is None or isinstance(mask_generator, torch.Generator)):
            raise ValueError("mask_generator must be a torch.Generator or None (the global RNG, as the original)")
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        nums, dim = cfg.patch_nums, cfg.z_channels
        last = len(nums) - 1
        codebook = self.image_tokenizer.quantizer.embedding.weight
        device = self.transformer.device

        cache = DynamicCache()
        f_hat = torch.zeros(batch, dim, nums[-1], nums[-1], device=device, dtype=torch.float32)
        inputs, token_ids = None, []
        for k in self.progress_bar(range(len(nums))):
            t = guidance_scale * (k / last if last else 0.0)
            out = self.transformer(text, pooled, inputs, mask, scale_index=k, cache=cache, output_hidden_states=masking)
            logits = out.logits
            if masking and k >= cfg.sampler_from_scale:
                ids, h = self._masking_rounds(out, logits, t, guidance_scale, batch, k, top_k, top_p, pooled, codebook,
                                              generator, mask_generator)
            else:
                ids, _, logits = self._sample_codes(logits, t, batch, top_k, top_p, generator)
                h = codebook[ids]
            token_ids.append(ids)
            side = nums[k]
            f_hat, next_input = self.image_tokenizer.next_scale_input(k, f_hat, h.transpose(1, 2).reshape(batch, dim, side, side))
            if callback_on_step_end is not None:
                res = self.run_callback(self, callback_on_step_end, k, tensor_inputs,
                                        {"token_ids": torch.cat(token_ids, dim=1), "logits": logits, "f_hat": f_hat})
                f_hat = res["f_hat"]
            if k != last:
                inputs = next_input.view(batch, dim, -1).transpose(1, 2).repeat(2, 1, 1)
        return torch.cat(token_ids, dim=1), f_hat

    def _masking_rounds(self, out, logits, t, guidance_scale, batch, k, top_k, top_p, pooled, codebook, generator, mask_generator):
        side = self.transformer.config.patch_nums[k]
        length = side * side
        features = out.hidden_states[-1]
        device = logits.device
        h = torch.zeros(batch, length, codebook.shape[1], device=device)
        ids = torch.zeros(batch, length, dtype=torch.long, device=device)
        mask = torch.zeros(batch, length, device=device)
        steps = 15 if k > 12 else 8

        def commit(conf, new_ids):
            nonlocal h, ids, mask
            index = torch.topk(conf.view(batch, -1), k=count, dim=-1)[1]
            before = mask.clone()
            mask = mask.scatter(1, index, 1.0)
            added = mask - before
            h = h + codebook[new_ids] * added[..., None]
            ids = torch.where(added.bool(), new_ids, ids)

        for step, count in enumerate(masking_schedule(steps, side)):
            torch.rand((2 * batch, length), generator=mask_generator)  # the original Scheduler.get_mask's (unused) draw
            if step < 5 and k < 13:
                new_ids, conf, _ = self._sample_codes(logits, t, batch, top_k, top_p, generator)
                commit(conf, new_ids)
            else:
                committed = (h * mask[..., None]).repeat(2, 1, 1)
                refined = self.transformer.sampler_logits(features, committed, pooled, k)
                new_ids, conf, _ = self._sample_codes(refined, guidance_scale, batch, top_k, top_p, generator)
            if step < 5:
                conf = torch.rand(conf.shape, generator=mask_generator, device=conf.device, dtype=conf.dtype)
            commit(conf * (1 - mask[..., None]), new_ids)
        return ids, h

    def sample_tokens(self, prompt=None, **kwargs) -> torch.LongTensor:
        """Token ids ``[B, L]`` (scales concatenated, coarse first)."""
        return self.sample(prompt, **kwargs)[0]

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, prompt_embeds=None, prompt_attention_mask=None,
                 pooled_prompt_embeds=None, negative_prompt_embeds=None, negative_prompt_attention_mask=None,
                 negative_pooled_prompt_embeds=None, guidance_scale: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, masking_sampler: bool | None = None, height: int | None = None,
                 width: int | None = None, generator=None, mask_generator=None, output_type: str = "pil",
                 return_dict: bool = True, num_images_per_prompt: int = 1, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs=("token_ids",)):
        """Generate images of ``prompt`` (a string or a list). ``negative_prompt``: the unconditional text
        (default "", as the original). ``guidance_scale``: the guidance at the last scale (it ramps linearly from
        0; the refinement head uses it in full). ``top_k`` / ``top_p``: 0 = off. ``masking_sampler``: the
        causal-driven stable sampler (needs the sampler head). ``height`` / ``width``: must equal the released
        schedule's size (the scales fix it). ``generator``: token draws; ``mask_generator``: the masking
        rounds' draws (None = the global RNG, as the original). ``callback_on_step_end(pipe, scale, scale,
        kwargs)`` runs per scale. ``output_type`` "latent" returns token ids."""
        self.check_output_type(output_type)
        size = self.image_tokenizer.config.image_size
        for name, value in (("height", height), ("width", width)):
            if value is not None and value != size:
                raise ValueError(f"{name} must be {size}: the scale schedule {list(self.transformer.config.patch_nums)} fixes the image size")
        ids, f_hat = self.sample(prompt, negative_prompt, prompt_embeds, prompt_attention_mask, pooled_prompt_embeds,
                                 negative_prompt_embeds, negative_prompt_attention_mask, negative_pooled_prompt_embeds,
                                 guidance_scale, top_k, top_p, masking_sampler, generator, mask_generator,
                                 num_images_per_prompt, callback_on_step_end, callback_on_step_end_tensor_inputs)
        if output_type == "latent":
            return self.finish(ids, output_type, return_dict)
        return self.finish(ids, output_type, return_dict, pixels=self.image_tokenizer.decode_latents(f_hat.to(self.image_tokenizer.device)))
