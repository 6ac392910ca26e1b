"""MaskGenPipeline: text-to-image masked-token generation (MaskGen-VQ over TA-TiTok VQ tokens), the text-to-image
counterpart of :class:`MaskGITPipeline`; MaskGenKLPipeline: its continuous-token (MaskGen-KL, MAR-style) sibling.

The sampler follows bytedance/1d-tokenizer ``MaskGen_VQ.generate`` step for step, including the order of its
random draws and its float32 schedule arithmetic, so that with the same seed the sampled tokens are identical to
the original's: one batched forward of ``[conditional; unconditional]`` per step, guidance
``cond + (cond - uncond) * s`` with the guidance schedule ("cosine": ``s = (g - 1)(1 - cos(pi r^p)) / 2 + 1``),
softmax-temperature annealing, Gumbel-max sampling and Gumbel-perturbed confidences with the annealed
temperature, and the masking schedule of the transformer's config (arccos). The count of tokens kept masked is the
first image's, as in the original. Differences: the aesthetic score given is used (the original always uses its
config's ``sample_aesthetic_score``, which is the default here), and the unconditional prompt is ``negative_prompt``
(default "", the original's).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..layers.clip_text import clip_text_features
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from ...pipelines.base import VistokPipeline, check_number, with_sampling_defaults
from ...pipelines.sampling import gumbel_noise_from_uniform


def masking_ratio(ratio: float, schedule: str) -> torch.Tensor:
    """Fraction of tokens still masked after progress ``ratio`` (float32, as the original's ``get_masking_ratio``)."""
    r = torch.tensor(ratio)
    if schedule == "root":
        return 1 - r**0.5
    if schedule == "square":
        return 1 - r**2
    if schedule == "cosine":
        return torch.cos(r * math.pi * 0.5)
    if schedule == "arccos":
        return torch.acos(r) / (math.pi * 0.5)
    return 1 - r


class MaskGenTextMixin:
    """Prompt encoding shared by the MaskGen pipelines (VQ and KL): OpenCLIP-style CLIP features of the prompts,
    or precomputed ones checked against ``transformer.config.text_hidden_size``."""

    @staticmethod
    def check_text_encoder(tok, gen, text_encoder):
        if text_encoder is not None and text_encoder.config.hidden_size != gen.text_hidden_size:
            raise ValueError(f"the transformer takes {gen.text_hidden_size}-wide text features; the text encoder gives "
                             f"{text_encoder.config.hidden_size}")
        if (text_encoder is not None and getattr(tok, "text_conditioned", False)
                and text_encoder.config.hidden_size != tok.text_hidden_size):
            raise ValueError(f"the image tokenizer decodes with {tok.text_hidden_size}-wide text features; the text encoder "
                             f"gives {text_encoder.config.hidden_size}")

    @torch.no_grad()
    def encode_prompt(self, prompt):
        """:class:`~vistok.modeling.layers.clip_text.CLIPTextFeatures` of the prompts, tokenized as OpenCLIP does."""
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("this pipeline has no text_encoder/tokenizer: pass prompt_embeds and pooled_prompt_embeds (and "
                             "the negative_* ones), or load it with a CLIPTextModelWithProjection and CLIPTokenizer")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
        features = clip_text_features(self.text_encoder, self.tokenizer, list(prompts))
        if features.pooled is None:
            raise ValueError("MaskGen needs the projected pooled text feature: the text_encoder must be a CLIPTextModelWithProjection")
        return features

    def _text(self, prompt, embeds, pooled, what: str, batch: int | None = None):
        """(penultimate features [B, L, D], pooled [B, D], last hidden state or None)."""
        cfg = self.transformer.config
        last = None
        if prompt is not None and embeds is not None:
            raise ValueError(f"pass either {what} or {what}_embeds, not both")
        if embeds is None:
            if prompt is None:
                if batch is None:
                    raise ValueError("pass prompt or prompt_embeds")
                prompt = ""
            if isinstance(prompt, str) and batch is not None:
                prompt = [prompt] * batch
            features = self.encode_prompt(prompt)
            embeds, pooled, last = features.penultimate_hidden_state, features.pooled, features.last_hidden_state
        if not isinstance(embeds, torch.Tensor) or not embeds.is_floating_point() or embeds.ndim != 3 or embeds.shape[-1] != cfg.text_hidden_size:
            got = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
            raise ValueError(f"{what}_embeds must be text features [B, L, {cfg.text_hidden_size}], got {got}")
        n = embeds.shape[0]
        if isinstance(pooled, torch.Tensor) and pooled.ndim == 3 and pooled.shape[1] == 1:
            pooled = pooled[:, 0]
        if not isinstance(pooled, torch.Tensor) or tuple(pooled.shape) != (n, cfg.text_hidden_size):
            raise ValueError(f"pooled_{what}_embeds must be given with {what}_embeds, shape [{n}, {cfg.text_hidden_size}]")
        if batch is not None and n != batch:
            raise ValueError(f"{what} gives {n} rows but the prompts {batch}")
        device = self.transformer.device
        return embeds.to(device), pooled.to(device), last


    def _prompt_conditions(self, prompt, prompt_embeds, pooled_prompt_embeds, negative_prompt, negative_prompt_embeds,
                           negative_pooled_prompt_embeds, num_images_per_prompt):
        """(cond, pooled, uncond, uncond_pooled, last) for every image: the prompts' and negative prompts' text
        features, each repeated ``num_images_per_prompt`` times."""
        cond, pooled, last = self._text(prompt, prompt_embeds, pooled_prompt_embeds, "prompt")
        prompts = cond.shape[0]
        uncond, uncond_pooled, _ = self._text(negative_prompt, negative_prompt_embeds, negative_pooled_prompt_embeds,
                                              "negative_prompt", batch=prompts)
        if uncond.shape[1] != cond.shape[1]:
            raise ValueError(f"negative_prompt_embeds has {uncond.shape[1]} positions but prompt_embeds {cond.shape[1]}")
        if num_images_per_prompt > 1:
            cond, pooled, uncond, uncond_pooled = (t.repeat_interleave(num_images_per_prompt, dim=0)
                                                   for t in (cond, pooled, uncond, uncond_pooled))
            last = None if last is None else last.repeat_interleave(num_images_per_prompt, dim=0)
        return cond, pooled, uncond, uncond_pooled, last

class MaskGenPipeline(MaskGenTextMixin, VistokPipeline):
    """Components: ``image_tokenizer`` (a 1D VQ tokenizer; TA-TiTok decodes with the prompt's CLIP features),
    ``transformer`` (``MaskGenVQTransformer``) and optionally ``text_encoder`` (a transformers
    ``CLIPTextModelWithProjection``: OpenCLIP ViT-L-14-336's text tower for the releases) with its ``tokenizer``
    (``CLIPTokenizer``). Without them pass ``prompt_embeds`` (penultimate hidden states), ``pooled_prompt_embeds``,
    the ``negative_*`` pair, and for a text-conditioned image tokenizer ``decoder_prompt_embeds`` (the last hidden
    state) unless ``output_type="latent"``."""

    model_cpu_offload_seq = "text_encoder->transformer->image_tokenizer"
    _optional_components = ["text_encoder", "tokenizer"]
    _callback_tensor_inputs = ["token_ids", "logits"]

    def __init__(self, image_tokenizer, transformer, text_encoder=None, tokenizer=None):
        super().__init__()
        tok, gen = image_tokenizer.config, transformer.config
        if getattr(tok, "token_layout", None) != "1d":
            raise ValueError(f"MaskGenPipeline needs a 1D discrete tokenizer (token_layout '1d'), got {getattr(tok, 'token_layout', None)!r}")
        if tok.codebook_size != gen.codebook_size:
            raise ValueError(f"the transformer predicts {gen.codebook_size} codes but the tokenizer's codebook has {tok.codebook_size}")
        if gen.num_tokens != tok.num_tokens:
            raise ValueError(f"the transformer generates {gen.num_tokens} tokens; the tokenizer takes {tok.num_tokens}")
        self.check_text_encoder(tok, gen, text_encoder)
        self.register_modules(image_tokenizer=image_tokenizer, transformer=transformer, text_encoder=text_encoder,
                              tokenizer=tokenizer)

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample_tokens(self, prompt=None, negative_prompt=None, prompt_embeds=None, pooled_prompt_embeds=None,
                      negative_prompt_embeds=None, negative_pooled_prompt_embeds=None, num_inference_steps=None,
                      guidance_scale=None, guidance_schedule=None, guidance_scale_pow=None, randomize_temperature=None,
                      softmax_temperature_annealing=None, aesthetic_score=None, generator=None,
                      num_images_per_prompt: int = 1, callback_on_step_end=None,
                      callback_on_step_end_tensor_inputs=("token_ids",)):
        """``(token_ids [B * num_images_per_prompt, num_tokens], last hidden state of the prompts or None)``;
        unset settings take the release's defaults (``transformer.config.sampling_defaults``)."""
        cfg = self.transformer.config
        steps, g, schedule, power, tau, anneal, score = with_sampling_defaults(
            cfg, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            guidance_schedule=guidance_schedule, guidance_scale_pow=guidance_scale_pow,
            randomize_temperature=randomize_temperature, softmax_temperature_annealing=softmax_temperature_annealing,
            aesthetic_score=aesthetic_score)
        length = cfg.num_tokens
        check_number("num_inference_steps", steps, minimum=1, maximum=length, integer=True)
        check_number("guidance_scale", g, minimum=0)
        check_number("guidance_scale_pow", power)
        check_number("randomize_temperature", tau, minimum=0)
        check_number("aesthetic_score", score)
        check_number("num_images_per_prompt", num_images_per_prompt, minimum=1, integer=True)
        if schedule not in cfg.guidance_schedules:
            raise ValueError(f"guidance_schedule must be one of {cfg.guidance_schedules}, got {schedule!r}")

        cond, pooled, uncond, uncond_pooled, last = self._prompt_conditions(
            prompt, prompt_embeds, pooled_prompt_embeds, negative_prompt, negative_prompt_embeds,
            negative_pooled_prompt_embeds, num_images_per_prompt)
        device, batch, mask_id = cond.device, cond.shape[0], cfg.mask_token_id
        generator = self.check_generator(generator, batch)
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        scores = torch.full((2 * batch,), float(score), device=device) if cfg.micro_condition else None
        both_text, both_pooled = torch.cat([cond, uncond]), torch.cat([pooled, uncond_pooled])

        ids = torch.full((batch, length), mask_id, dtype=torch.long, device=device)
        # the text projections and modulations are computed once, not every step (the same values)
        with self.transformer.reusing_condition():
            cfg_scale = g if schedule == "none" else 0.0
            for step in self.progress_bar(range(steps)):
                ratio = 1.0 * (step + 1) / steps
                temperature = tau * (1.0 - ratio)
                is_mask = ids == mask_id
                if schedule in ("cosine", "flippedcosine"):  # in float32, as the original
                    scale_pow = torch.ones(1, device=device) * power
                    cos = torch.cos((ratio**scale_pow) * torch.pi)
                    scale_step = (1 - cos) * 1 / 2 if schedule == "cosine" else cos * 1 / 2
                    cfg_scale = (g - 1) * scale_step + 1
                elif schedule == "linear":
                    cfg_scale = ratio * (g - 1) + 1
                if cfg_scale != 0:
                    both = self.transformer(torch.cat([ids, ids]), both_text, both_pooled, aesthetic_score=scores).logits.float()
                    cond_logits, uncond_logits = both[:batch], both[batch:]
                    logits = cond_logits + (cond_logits - uncond_logits) * cfg_scale
                else:
                    logits = self.transformer(ids, cond, pooled, aesthetic_score=None if scores is None else scores[:batch]).logits.float()
                logits = logits / (0.5 + 0.8 * (1 - ratio) if anneal else temperature)

                sampled = (logits + temperature * gumbel_noise_from_uniform(logits.shape, generator, device)).argmax(dim=-1)
                sampled_logits = torch.gather(logits, -1, sampled[..., None]).squeeze(-1)
                sampled = torch.where(is_mask, sampled, ids)
                sampled_logits = torch.where(is_mask, sampled_logits, np.inf).float()
                mask_len = torch.floor(length * masking_ratio(ratio, cfg.mask_schedule)).to(device)
                mask_len = torch.maximum(torch.ones(1, device=device),
                                         torch.minimum(is_mask.sum(dim=-1, keepdim=True) - 1, mask_len))[0].squeeze()
                confidence = sampled_logits + temperature * gumbel_noise_from_uniform(sampled_logits.shape, generator, device)
                n = int(mask_len.long())
                cut_off = confidence.sort(dim=-1).values[:, n - 1 : n]
                if step == steps - 1:
                    ids = sampled
                else:
                    ids = torch.where(confidence <= cut_off, torch.full_like(sampled, mask_id), sampled)
                ids = self.run_callback(self, callback_on_step_end, step, tensor_inputs, {"token_ids": ids, "logits": logits})["token_ids"]
        return ids, last

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, guidance_schedule: str | None = None,
                 guidance_scale_pow: float | None = None, randomize_temperature: float | None = None,
                 softmax_temperature_annealing: bool | None = None, aesthetic_score: float | None = None,
                 prompt_embeds=None, pooled_prompt_embeds=None, negative_prompt_embeds=None,
                 negative_pooled_prompt_embeds=None, decoder_prompt_embeds=None, generator=None,
                 output_type: str = "pil", return_dict: bool = True, num_images_per_prompt: int = 1,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",)):
        """Generate images of ``prompt``. ``guidance_schedule`` is "cosine" (the release's ramp from 1 to
        ``guidance_scale``, power ``guidance_scale_pow``), "flippedcosine", "linear" or "none" (constant);
        ``randomize_temperature`` the annealed Gumbel temperature; ``aesthetic_score`` the micro-condition (6.5 in the
        release). ``generator``: one generator (the original's draw order) or one per image;
        ``callback_on_step_end(pipe, step, timestep, kwargs)`` sees (and may replace) "token_ids" and "logits";
        ``output_type`` "latent" returns the token ids. Returns ``ImagePipelineOutput``."""
        self.check_output_type(output_type)
        ids, last = self.sample_tokens(prompt, negative_prompt, prompt_embeds, pooled_prompt_embeds, negative_prompt_embeds,
                                       negative_pooled_prompt_embeds, num_inference_steps, guidance_scale, guidance_schedule,
                                       guidance_scale_pow, randomize_temperature, softmax_temperature_annealing,
                                       aesthetic_score, generator, num_images_per_prompt, callback_on_step_end,
                                       callback_on_step_end_tensor_inputs)
        if output_type == "latent" or not getattr(self.image_tokenizer.config, "text_conditioned", False):
            return self.finish(ids, output_type, return_dict)
        if decoder_prompt_embeds is not None:
            last = decoder_prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
        if last is None:
            raise ValueError("the image tokenizer (TA-TiTok) decodes with the prompts' CLIP last hidden state: pass "
                             "decoder_prompt_embeds with prompt_embeds, or output_type='latent'")
        device = self.image_tokenizer.device
        pixels = self.image_tokenizer.decode(ids.to(device), text_features=last.to(device))
        return self.finish(ids, output_type, return_dict, pixels=pixels)


class MaskGenKLPipeline(MaskGenTextMixin, VistokPipeline):
    """MaskGen-KL text-to-image generation (bytedance/1d-tokenizer ``MaskGen_KL.sample_tokens``, MAR's sampler):
    continuous tokens are generated in a random order per image over ``num_inference_steps`` rounds; the share
    still masked after round ``s`` of ``S`` is ``cos(pi/2 (s + 1) / S)`` (at least one token per round); each round
    the transformer's per-token conditions of the tokens due are denoised by the diffusion head's DDPM
    (``num_diffusion_steps`` respaced steps, noise scaled by ``temperature``) with classifier-free guidance
    ``uncond + s (cond - uncond)`` on the predicted noise, ``s`` rising linearly from 1 to ``guidance_scale`` with the
    share of tokens generated ("linear"; "constant" keeps it).

    Components as :class:`MaskGenPipeline`, with a continuous (KL) TA-TiTok ``image_tokenizer``. The random draws
    follow the original's order (the generation orders, then per round the start noise of the tokens due and one
    noise draw per DDPM step over the conditional and unconditional rows), so that with the same orders and the
    same torch seed the samples equal the original's; the orders come from :meth:`generation_orders` (the
    original shuffles with NumPy's global generator)."""

    model_cpu_offload_seq = "text_encoder->transformer->image_tokenizer"
    _optional_components = ["text_encoder", "tokenizer"]
    _callback_tensor_inputs = ["latents", "mask"]

    def __init__(self, image_tokenizer, transformer, text_encoder=None, tokenizer=None):
        super().__init__()
        tok, gen = image_tokenizer.config, transformer.config
        if getattr(tok, "token_layout", None) != "continuous":
            raise ValueError(f"MaskGenKLPipeline needs a continuous (KL) tokenizer (token_layout 'continuous'), got "
                             f"{getattr(tok, 'token_layout', None)!r}")
        if getattr(tok, "token_dim", None) != gen.token_dim:
            raise ValueError(f"the transformer generates {gen.token_dim}-channel tokens; the tokenizer's have {getattr(tok, 'token_dim', None)}")
        if gen.num_tokens != tok.num_tokens:
            raise ValueError(f"the transformer generates {gen.num_tokens} tokens; the tokenizer takes {tok.num_tokens}")
        self.check_text_encoder(tok, gen, text_encoder)
        self.register_modules(image_tokenizer=image_tokenizer, transformer=transformer, text_encoder=text_encoder,
                              tokenizer=tokenizer)

    def generation_orders(self, batch: int, generator, device) -> torch.LongTensor:
        """``[batch, num_tokens]``: a random permutation of the token positions per image (the first ones stay
        masked longest)."""
        n = self.transformer.config.num_tokens
        gens = generator if isinstance(generator, list) else [generator] * batch
        return torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)

    @torch.no_grad()
    def sample_latents(self, prompt=None, negative_prompt=None, prompt_embeds=None, pooled_prompt_embeds=None,
                       negative_prompt_embeds=None, negative_pooled_prompt_embeds=None, num_inference_steps=None,
                       num_diffusion_steps=None, guidance_scale=None, guidance_schedule=None, temperature=None,
                       aesthetic_score=None, generator=None, num_images_per_prompt: int = 1, callback_on_step_end=None,
                       callback_on_step_end_tensor_inputs=("latents",)):
        """``(latents [B * num_images_per_prompt, num_tokens, token_dim] in the transformer's (scaled) space, last
        hidden state of the prompts or None)``; unset settings take ``transformer.config.sampling_defaults``."""
        cfg = self.transformer.config
        steps, diffusion_steps, g, schedule, temp, score = with_sampling_defaults(
            cfg, num_inference_steps=num_inference_steps, num_diffusion_steps=num_diffusion_steps,
            guidance_scale=guidance_scale, guidance_schedule=guidance_schedule, temperature=temperature,
            aesthetic_score=aesthetic_score)
        length = cfg.num_tokens
        # more rounds than tokens is allowed, as upstream: the surplus rounds generate nothing
        check_number("num_inference_steps", steps, minimum=1, integer=True)
        check_number("num_diffusion_steps", diffusion_steps, minimum=1, maximum=cfg.num_train_timesteps, integer=True)
        check_number("guidance_scale", g, minimum=0)
        check_number("temperature", temp, minimum=0)
        check_number("aesthetic_score", score)
        check_number("num_images_per_prompt", num_images_per_prompt, minimum=1, integer=True)
        if schedule not in cfg.guidance_schedules:
            raise ValueError(f"guidance_schedule must be one of {cfg.guidance_schedules}, got {schedule!r}")

        cond, pooled, uncond, uncond_pooled, last = self._prompt_conditions(
            prompt, prompt_embeds, pooled_prompt_embeds, negative_prompt, negative_prompt_embeds,
            negative_pooled_prompt_embeds, num_images_per_prompt)
        device, batch = cond.device, cond.shape[0]
        generator = self.check_generator(generator, batch)
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        guided = g != 1.0  # as the original: no unconditional rows at scale 1
        scores = torch.full((batch,), float(score), device=device) if cfg.micro_condition else None
        # projected once per prompt set, the conditional and unconditional ones apart (as the original)
        text, temb = self.transformer.project_condition(cond, pooled, scores)
        if guided:
            uncond_text, uncond_temb = self.transformer.project_condition(uncond, uncond_pooled, scores)
            text, temb = torch.cat([text, uncond_text]), torch.cat([temb, uncond_temb])

        orders = self.generation_orders(batch, generator, device)
        mask = torch.ones(batch, length, dtype=torch.bool, device=device)
        tokens = torch.zeros(batch, length, cfg.token_dim, device=device, dtype=self.transformer.dtype)
        # the modulations are computed once, not every round (the same values)
        with self.transformer.reusing_condition():
            for step in self.progress_bar(range(steps)):
                both = torch.cat([tokens, tokens]) if guided else tokens
                both_mask = torch.cat([mask, mask]) if guided else mask
                z = self.transformer(both, both_mask, projected_condition=(text, temb)).last_hidden_state
                # how many stay masked after this round, in the original's float32 arithmetic
                mask_len = torch.tensor([np.floor(length * np.cos(math.pi / 2.0 * (step + 1) / steps))], dtype=torch.float32)
                mask_len = torch.maximum(torch.ones(1), torch.minimum(mask.sum(dim=-1, keepdim=True).float().cpu() - 1, mask_len))[0]
                mask_next = torch.zeros_like(mask).scatter(1, orders[:, : int(mask_len.long())], True)
                to_predict = mask if step >= steps - 1 else mask ^ mask_next
                if schedule == "linear":
                    scale = 1 + (g - 1) * (length - mask_len) / length
                else:
                    scale = torch.tensor([float(g)])
                rows = to_predict.sum(dim=1).tolist()
                if sum(rows):
                    cond_rows = z[torch.cat([to_predict, to_predict]) if guided else to_predict]
                    noise_fn = self._noise_fn(generator, rows, cfg.token_dim, device, torch.float32)
                    sampled = self.transformer.sample_latents(cond_rows, noise_fn, diffusion_steps, temp,
                                                              scale.to(device) if guided else None)
                    tokens = tokens.clone()
                    tokens[to_predict] = sampled.to(tokens.dtype)
                mask = mask_next if step < steps - 1 else torch.zeros_like(mask)  # all generated after the last round
                out = self.run_callback(self, callback_on_step_end, step, tensor_inputs, {"latents": tokens, "mask": mask})
                tokens, mask = out["latents"], out["mask"]
        return tokens, last

    @staticmethod
    def _noise_fn(generator, rows_per_image, channels, device, dtype):
        """Standard normal noise ``[rows, channels]`` for the diffusion head: from the one generator as the original
        draws it, or (a list) each image's rows from its own generator, drawn as that image alone would draw them
        (its rows, or with guidance its rows and their unconditional copies, whose noise is discarded)."""
        if not isinstance(generator, list):
            where = generator.device if generator is not None else "cpu"
            return lambda rows: torch.randn(rows, channels, generator=generator, dtype=dtype, device=where).to(device)
        total = sum(rows_per_image)

        def draw(rows):
            factor = rows // total  # 1: the start noise or unguided; 2: a guided step's [cond; uncond] rows
            parts = [torch.randn(factor * k, channels, generator=g, dtype=dtype, device=g.device)[:k].to(device)
                     for g, k in zip(generator, rows_per_image)]
            noise = torch.cat(parts)
            return torch.cat([noise, noise.new_zeros(rows - total, channels)])
        return draw

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, num_inference_steps: int | None = None,
                 num_diffusion_steps: int | None = None, guidance_scale: float | None = None,
                 guidance_schedule: str | None = None, temperature: float | None = None, aesthetic_score: float | None = None,
                 prompt_embeds=None, pooled_prompt_embeds=None, negative_prompt_embeds=None,
                 negative_pooled_prompt_embeds=None, decoder_prompt_embeds=None, generator=None,
                 output_type: str = "pil", return_dict: bool = True, num_images_per_prompt: int = 1,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("latents",)):
        """Generate images of ``prompt``: ``num_inference_steps`` token rounds (32 in the release),
        ``num_diffusion_steps`` DDPM steps of the head per round (100), ``guidance_scale`` (3.0) reached by the
        ``guidance_schedule`` ("linear" or "constant"), ``temperature`` of the head's noise (1.0), ``aesthetic_score``
        (6.5). ``generator``: one generator (the original's draw order) or one per image;
        ``callback_on_step_end(pipe, step, timestep, kwargs)`` sees (and may replace) "latents" (scaled) and "mask";
        ``output_type="latent"`` returns the tokenizer's latents ``[B, num_tokens, token_dim]`` (unscaled).
        Returns ``ImagePipelineOutput``."""
        self.check_output_type(output_type)
        tokens, last = self.sample_latents(prompt, negative_prompt, prompt_embeds, pooled_prompt_embeds,
                                           negative_prompt_embeds, negative_pooled_prompt_embeds, num_inference_steps,
                                           num_diffusion_steps, guidance_scale, guidance_schedule, temperature,
                                           aesthetic_score, generator, num_images_per_prompt, callback_on_step_end,
                                           callback_on_step_end_tensor_inputs)
        latents = tokens / self.transformer.config.scale_factor
        if output_type == "latent":
            return ImagePipelineOutput(images=latents) if return_dict else (latents,)
        device = self.image_tokenizer.device
        text_features = None
        if getattr(self.image_tokenizer.config, "text_conditioned", False):
            if decoder_prompt_embeds is not None:
                last = decoder_prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
            if last is None:
                raise ValueError("the image tokenizer (TA-TiTok) decodes with the prompts' CLIP last hidden state: pass "
                                 "decoder_prompt_embeds with prompt_embeds, or output_type='latent'")
            text_features = last.to(device)
        pixels = self.image_tokenizer.decode_latents(latents.to(device), text_features=text_features)
        return self.images_from_pixels(pixels, self.image_tokenizer.config.pixel_range, output_type, return_dict)
