"""Autoregressive (next-token) image pipelines over a 1D or 2D VQ tokenizer: LlamaGen and generators on its transformer,
class- and text-conditional.

The sampler follows LlamaGen's ``generate`` step for step: one prefill over the condition tokens,
then one cached decode step per image token; guidance runs one [cond; uncond] batch and combines
raw logits as ``uncond + (cond - uncond) * guidance_scale`` (on when ``guidance_scale > 1``; after
``cfg_interval`` decode steps only the conditional half is used; ``cfg_schedule`` varies the scale over the decode
steps, the first token always takes the raw scale); each token is drawn as
temperature -> top-k -> top-p -> softmax -> multinomial, one draw per image from ``generator``, so
seeded samples equal the original's under the same seed. The KV cache is static and preallocated;
``compile=True`` runs the decode step through ``torch.compile`` over full-length cache reads.

``decode_feeds_condition`` (a sampling default a converter may set; off by default) reproduces an original sampler
that hands the condition to the model at every cached decode step, whose forward then embeds the condition, not the
previous token, at that position: the logits no longer depend on the sampled tokens. Class conditions only.

``decoding`` picks a strategy that makes fewer model forwards than one per token (see :mod:`.decoding`): ``"sjd"``
(speculative Jacobi decoding, exact: same distribution as standard), ``"gsd"`` (grouped speculative decoding) and
``"zipar"`` (rows in parallel), the last two opt-in approximations; ``decoding_kwargs`` holds their knobs. After each
call the pipeline's ``decoding_stats`` reports the strategy, the model forwards made and (SJD/GSD) draft acceptance.
"""

from __future__ import annotations

import torch

from .base import VistokPipeline, check_number
from .decoding import TokenSampler, check_decoding, speculative_decode, zipar_decode
from .sampling import check_guidance_schedule, guidance_schedule, sample_next_token


class _AutoregressiveSampling(VistokPipeline):
    """The sampler both pipelines share; subclasses turn their inputs into condition kwargs."""

    model_cpu_offload_seq = "transformer->image_tokenizer"
    _callback_tensor_inputs = ["token_ids", "logits"]

    def _check_components(self, image_tokenizer, transformer, condition_type: str) -> None:
        tok, gen = image_tokenizer.config, transformer.config
        if getattr(tok, "token_layout", None) not in ("1d", "2d"):
            raise ValueError(f"{type(self).__name__} needs a 1D or 2D discrete tokenizer (token_layout '1d' or '2d'), "
                             f"got {getattr(tok, 'token_layout', None)!r}")
        if tok.num_tokens != gen.num_tokens:
            raise ValueError(f"the transformer generates {gen.num_tokens} tokens but the tokenizer decodes {tok.num_tokens}")
        if tok.codebook_size != gen.codebook_size:
            raise ValueError(f"the transformer predicts {gen.codebook_size} codes but the tokenizer's codebook has {tok.codebook_size}")
        if gen.condition_type != condition_type:
            raise ValueError(f"{type(self).__name__} needs a {condition_type}-conditional transformer, got a {gen.condition_type}-conditional one")

    def _settings(self, guidance_scale, cfg_interval, temperature, top_k, top_p, cfg_schedule=None, cfg_schedule_kwargs=None,
                  decode_feeds_condition=None) -> dict:
        defaults = {"cfg_schedule": "constant", "cfg_schedule_kwargs": None, "decode_feeds_condition": False,
                    **self.transformer.config.sampling_defaults}
        s = dict(guidance_scale=guidance_scale, cfg_interval=cfg_interval, temperature=temperature, top_k=top_k, top_p=top_p,
                 cfg_schedule=cfg_schedule, cfg_schedule_kwargs=cfg_schedule_kwargs, decode_feeds_condition=decode_feeds_condition)
        s = {k: defaults[k] if v is None else v for k, v in s.items()}
        s["cfg_schedule_kwargs"] = check_guidance_schedule(s["cfg_schedule"], s["cfg_schedule_kwargs"])
        s["decode_feeds_condition"] = bool(s["decode_feeds_condition"])
        if s["decode_feeds_condition"] and (self.transformer.config.condition_type != "class"
                                            or self.transformer.config.num_condition_tokens != 1):
            raise ValueError("decode_feeds_condition needs a class-conditional transformer with one condition token")
        check_number("guidance_scale", s["guidance_scale"], minimum=0)  # guidance is on above 1.0
        if s["guidance_scale"] > 1.0 and not self.transformer.config.has_null_condition:
            raise ValueError("this transformer has no null condition (trained without condition dropout): guidance_scale must be <= 1.0")
        check_number("cfg_interval", s["cfg_interval"], minimum=-1, integer=True)  # -1: guidance on every step
        check_number("temperature", s["temperature"], above=0)
        check_number("top_k", s["top_k"], minimum=0, integer=True)  # 0: off
        check_number("top_p", s["top_p"], above=0, maximum=1)  # 1: off
        return s

    @torch.no_grad()
    def _generate(self, condition: dict, batch: int, condition_mask: torch.Tensor | None, settings: dict,
                  generator, do_sample: bool, compile: bool, num_tokens: int | None = None,
                  callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",),
                  uncondition: dict | None = None, uncondition_mask: torch.Tensor | None = None,
                  decoding: str = "standard", decoding_kwargs: dict | None = None) -> torch.LongTensor:
        """Token ids ``[batch, grid, grid]``. ``condition`` holds the transformer's condition kwargs for
        ``batch`` rows; ``condition_mask [batch, T]`` marks valid (unpadded) condition tokens.
        ``num_tokens`` < the grid stops early and returns ``[batch, num_tokens]`` (warm-up, tests).
        ``uncondition`` (and its mask): the guidance branch's condition (negative prompts) instead of the null one.
        ``decoding`` / ``decoding_kwargs``: the strategy (see :mod:`.decoding`)."""
        model = self.transformer
        cfg = model.config
        decoding, knobs = self._check_decoding(decoding, decoding_kwargs, settings, compile, callback_on_step_end, num_tokens)
        generator = self.check_generator(generator, batch)
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        device = model.device
        prefix, total = cfg.num_condition_tokens, cfg.num_condition_tokens + cfg.num_tokens
        guided = settings["guidance_scale"] > 1.0
        rows = 2 * batch if guided else batch
        masks = condition_mask
        if guided and uncondition is not None:  # [cond; uncond]: the second half gets the negative condition
            condition = {k: torch.cat([v, uncondition[k]]) for k, v in condition.items()}
            masks = torch.cat([condition_mask, uncondition_mask])
        elif guided:  # [cond; uncond]: the second half gets the null class / unconditional caption
            condition = {k: torch.cat([v, v]) for k, v in condition.items()}
            condition["drop_condition"] = torch.arange(rows, device=device) >= batch
            masks = None if condition_mask is None else torch.cat([condition_mask, condition_mask])
        key_valid = torch.ones(rows, total, dtype=torch.bool, device=device)
        if masks is not None:
            key_valid[:, :prefix] = masks.bool()
        cache = model.new_cache(rows, total)
        step = model.forward
        if compile:
            if getattr(self, "_compiled_step", None) is None:
                self._compiled_step = torch.compile(model._decode_step, dynamic=False)
            step_fn = self._compiled_step
        scale = settings["guidance_scale"]

        def pick(logits, use_guidance, scale=scale):
            logits = logits[:, -1]
            if guided:
                cond, uncond = logits.split(batch)
                logits = uncond + (cond - uncond) * scale if use_guidance else cond
            return sample_next_token(logits, settings["temperature"], settings["top_k"], settings["top_p"], generator, do_sample)

        logits = step(**condition, attention_mask=key_valid[:, :prefix], cache=cache,
                      cache_position=torch.arange(prefix, device=device), logits_to_keep=1).logits
        token = pick(logits, True)
        tokens = [token]
        interval = settings["cfg_interval"]
        length = cfg.num_tokens if num_tokens is None else num_tokens
        schedule, schedule_kwargs = settings["cfg_schedule"], settings["cfg_schedule_kwargs"]
        if decoding != "standard":
            def guidance(j):  # (guidance on, scale) for image token j, as the standard loop's decode step j - 1 has them
                if j == 0:
                    return True, scale
                return not (interval > -1 and j - 1 > interval), guidance_schedule(schedule, j / (cfg.num_tokens - 1), scale,
                                                                                    **schedule_kwargs)

            sampler = TokenSampler(model, cache, key_valid, batch, guided, guidance, settings, generator, do_sample)
            with self.progress_bar(total=length - 1) as bar:
                if decoding == "zipar":
                    tokens, stats = zipar_decode(sampler, token, length, cfg.grid_size, knobs, bar.update)
                else:
                    tokens, stats = speculative_decode(sampler, token, length, knobs, decoding == "gsd", bar.update)
            self.decoding_stats = {"decoding": decoding, **knobs, "images": batch, "tokens_per_image": length,
                                   "model_forwards": 1 + sampler.forwards, **stats}
            if num_tokens is not None or self.image_tokenizer.config.token_layout == "1d":
                return tokens
            return tokens.view(batch, cfg.grid_size, cfg.grid_size)
        for i in self.progress_bar(range(length - 1)):
            position = prefix + i
            inputs = torch.cat([token, token]) if guided else token
            cache_position = torch.tensor([position], device=device)
            if settings["decode_feeds_condition"]:  # the condition embedded at this position instead of the token
                logits = step(**condition, attention_mask=key_valid[:, : position + 1], cache=cache,
                              cache_position=cache_position, logits_to_keep=1).logits
            elif compile:
                logits = step_fn(inputs, key_valid, cache, cache_position)
            else:
                logits = model._decode_step(inputs, key_valid[:, : position + 1], cache, cache_position)
            step_scale = guidance_schedule(schedule, (i + 1) / (cfg.num_tokens - 1), scale, **schedule_kwargs)
            token = pick(logits, not (interval > -1 and i > interval), step_scale)
            tokens.append(token)
            if callback_on_step_end is not None:  # the tokens so far; a replaced last token is fed back next step
                out = self.run_callback(self, callback_on_step_end, i, tensor_inputs,
                                        {"token_ids": torch.cat(tokens, dim=1), "logits": logits[:, -1]})
                tokens = list(out["token_ids"].split(1, dim=1))
                token = tokens[-1]
        tokens = torch.cat(tokens, dim=1)
        self.decoding_stats = {"decoding": "standard", "images": batch, "tokens_per_image": length, "model_forwards": length}
        if num_tokens is not None or self.image_tokenizer.config.token_layout == "1d":
            return tokens
        return tokens.view(batch, cfg.grid_size, cfg.grid_size)

    def _check_decoding(self, decoding, decoding_kwargs, settings, compile, callback_on_step_end, num_tokens):
        decoding, knobs = check_decoding(decoding, decoding_kwargs)
        if decoding == "standard":
            return decoding, knobs
        if compile:
            raise ValueError(f"compile=True compiles the standard one-token decode step: leave it off with decoding={decoding!r}")
        if callback_on_step_end is not None:
            raise ValueError(f"callback_on_step_end runs after each one-token decode step: it needs decoding='standard', "
                             f"not {decoding!r}")
        if settings["decode_feeds_condition"]:
            raise ValueError("decode_feeds_condition makes the logits independent of the sampled tokens: "
                             f"there is nothing to speculate on; use decoding='standard', not {decoding!r}")
        if decoding == "zipar":
            grid = self.transformer.config.grid_size
            if self.image_tokenizer.config.token_layout != "2d":
                raise ValueError("decoding='zipar' decodes rows of a 2D token grid in parallel: this tokenizer's tokens are 1D")
            if num_tokens is not None and num_tokens % grid:
                raise ValueError(f"decoding='zipar' decodes whole rows: num_tokens must be a multiple of the grid width {grid}")
        return decoding, knobs


class AutoregressiveImagePipeline(_AutoregressiveSampling):
    """Class-conditional generation. Components: ``image_tokenizer`` (a 2D VQ VisualTokenizer) and
    ``transformer`` (a class-conditional next-token generator such as ``LlamaGenTransformer``)."""

    def __init__(self, image_tokenizer, transformer):
        super().__init__()
        self._check_components(image_tokenizer, transformer, "class")
        self.register_modules(image_tokenizer=image_tokenizer, transformer=transformer)

    def sample_tokens(self, class_labels, guidance_scale: float | None = None, cfg_interval: int | None = None,
                      temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                      generator=None, do_sample: bool = True, compile: bool = False, num_images_per_prompt: int = 1,
                      callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",),
                      cfg_schedule: str | None = None, cfg_schedule_kwargs: dict | None = None,
                      decode_feeds_condition: bool | None = None, decoding: str = "standard",
                      decoding_kwargs: dict | None = None) -> torch.LongTensor:
        """Token ids ``[B * num_images_per_prompt, grid, grid]`` (``[B, N]`` with a 1D tokenizer); unset settings take
        the model's released defaults."""
        labels = self.class_label_ids(class_labels, num_images_per_prompt)
        settings = self._settings(guidance_scale, cfg_interval, temperature, top_k, top_p, cfg_schedule, cfg_schedule_kwargs,
                                  decode_feeds_condition)
        return self._generate({"class_labels": labels}, labels.shape[0], None, settings, generator, do_sample, compile,
                              callback_on_step_end=callback_on_step_end,
                              callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                              decoding=decoding, decoding_kwargs=decoding_kwargs)

    @torch.no_grad()
    def __call__(self, class_labels, guidance_scale: float | None = None, cfg_interval: int | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 generator=None, do_sample: bool = True, compile: bool = False,
                 output_type: str = "pil", return_dict: bool = True, num_images_per_prompt: int = 1,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",),
                 cfg_schedule: str | None = None, cfg_schedule_kwargs: dict | None = None,
                 decode_feeds_condition: bool | None = None, decoding: str = "standard", decoding_kwargs: dict | None = None):
        """Generate images of ``class_labels`` (ids, a tensor, or class names of ``id2label``). ``guidance_scale`` > 1
        turns classifier-free guidance on; ``cfg_interval`` >= 0 turns it off after that many decode steps;
        ``cfg_schedule`` ("constant", "linear", "linear_re", "triangular", "rectangular" with ``cfg_schedule_kwargs``
        window_start/window_end, "step" with window_start) varies the scale over the decode steps;
        ``decode_feeds_condition`` see the module docstring;
        ``top_k`` 0 and ``top_p`` 1 are off; ``do_sample=False`` is greedy. ``generator``: one generator or one
        per image; ``callback_on_step_end(pipe, step, timestep, kwargs)`` sees (and may replace) "token_ids" and
        "logits" after each decode step (standard decoding only). ``decoding``: "standard" (one forward per token),
        "sjd" (exact, fewer forwards), "gsd" or "zipar" (approximations, fewer still) with knobs in ``decoding_kwargs``
        (see :mod:`vistok.pipelines.decoding`); ``decoding_stats`` then reports the forwards made.
        ``output_type`` "latent" returns token ids."""
        self.check_output_type(output_type)
        ids = self.sample_tokens(class_labels, guidance_scale, cfg_interval, temperature, top_k, top_p, generator, do_sample,
                                 compile, num_images_per_prompt, callback_on_step_end, callback_on_step_end_tensor_inputs,
                                 cfg_schedule, cfg_schedule_kwargs, decode_feeds_condition, decoding, decoding_kwargs)
        return self.finish(ids, output_type, return_dict, generator=generator)


class TextToImageAutoregressivePipeline(_AutoregressiveSampling):
    """Text-conditional generation (LlamaGen t2i). Components: ``image_tokenizer``, ``transformer`` (a
    text-conditional next-token generator such as ``LlamaGenTransformer``), and optionally ``text_encoder`` (a transformers
    ``T5EncoderModel``, flan-t5-xl for the releases) with its ``tokenizer``; without them, pass
    ``prompt_embeds`` (T5 ``last_hidden_state``, right-padded as the encoder returns it) and
    ``prompt_attention_mask``.
    """

    model_cpu_offload_seq = "text_encoder->transformer->image_tokenizer"
    _optional_components = ["text_encoder", "tokenizer"]

    def __init__(self, image_tokenizer, transformer, text_encoder=None, tokenizer=None):
        super().__init__()
        self._check_components(image_tokenizer, transformer, "text")
        if text_encoder is not None:
            width = getattr(text_encoder.config, "d_model", None) or getattr(text_encoder.config, "hidden_size", None)
            if width != transformer.config.caption_dim:
                raise ValueError(f"the transformer takes {transformer.config.caption_dim}-wide caption features; the text encoder gives {width}")
        self.register_modules(image_tokenizer=image_tokenizer, transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer)

    @torch.no_grad()
    def encode_prompt(self, prompt) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 features ``[B, T, caption_dim]`` and attention mask ``[B, T]`` (right-padded) for prompts,
        T = the transformer's ``num_condition_tokens`` (120). Prompts are lower-cased and stripped
        (the original's fallback when its ftfy/bs4 caption cleaning is off)."""
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("this pipeline has no text_encoder/tokenizer: pass prompt_embeds and prompt_attention_mask, "
                             "or load it with text_encoder=T5EncoderModel... and tokenizer=...")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
        length = self.transformer.config.num_condition_tokens
        text = self.tokenizer([p.lower().strip() for p in prompts], max_length=length, padding="max_length",
                              truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        device = self.text_encoder.device
        embeds = self.text_encoder(input_ids=text.input_ids.to(device), attention_mask=text.attention_mask.to(device)).last_hidden_state
        return embeds, text.attention_mask.to(device)

    def _check_embeds(self, prompt_embeds, prompt_attention_mask):
        cfg = self.transformer.config
        expected = (cfg.num_condition_tokens, cfg.caption_dim)
        if not isinstance(prompt_embeds, torch.Tensor) or not prompt_embeds.is_floating_point() or prompt_embeds.ndim != 3 \
                or tuple(prompt_embeds.shape[1:]) != expected or prompt_embeds.shape[0] == 0:
            got = tuple(prompt_embeds.shape) if isinstance(prompt_embeds, torch.Tensor) else type(prompt_embeds).__name__
            raise ValueError(f"prompt_embeds must be a float tensor [B, {expected[0]}, {expected[1]}], got {got}")
        if prompt_attention_mask is None:
            return torch.ones(prompt_embeds.shape[:2], dtype=torch.long, device=prompt_embeds.device)
        if not isinstance(prompt_attention_mask, torch.Tensor) or tuple(prompt_attention_mask.shape) != tuple(prompt_embeds.shape[:2]):
            got = tuple(prompt_attention_mask.shape) if isinstance(prompt_attention_mask, torch.Tensor) else type(prompt_attention_mask).__name__
            raise ValueError(f"prompt_attention_mask must have shape {tuple(prompt_embeds.shape[:2])} (as prompt_embeds), got {got}")
        if ((prompt_attention_mask != 0) & (prompt_attention_mask != 1)).any():
            raise ValueError("prompt_attention_mask must hold only 0 and 1")
        return prompt_attention_mask

    @staticmethod
    def left_pad(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move each row's valid (right-padded) tokens to the end and zero the padding, as the original
        sample_t2i.py does before generation."""
        lengths = mask.long().sum(dim=1)
        width = mask.shape[1]
        index = (torch.arange(width, device=mask.device)[None] + lengths[:, None]) % width
        rolled = torch.gather(embeds, 1, index[..., None].expand_as(embeds))
        new_mask = mask.flip(-1)
        return rolled * new_mask[..., None].to(rolled.dtype), new_mask

    def _prepared_embeds(self, prompt, prompt_embeds, prompt_attention_mask, left_padding: bool, what: str = "prompt"):
        """(features, mask) on the transformer's device, padded as the original sampler pads them."""
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError(f"pass exactly one of {what} or {what}_embeds")
        if prompt is not None:
            prompt_embeds, prompt_attention_mask = self.encode_prompt(prompt)
        mask = self._check_embeds(prompt_embeds, prompt_attention_mask)
        device = self.transformer.device
        embeds, mask = prompt_embeds.to(device), mask.to(device)
        if left_padding:
            embeds, mask = self.left_pad(embeds, mask)
        else:
            embeds = embeds * mask[..., None].to(embeds.dtype)
        return embeds.to(self.transformer.dtype), mask

    def sample_tokens(self, prompt=None, prompt_embeds=None, prompt_attention_mask=None, guidance_scale: float | None = None,
                      cfg_interval: int | None = None, temperature: float | None = None, top_k: int | None = None,
                      top_p: float | None = None, generator=None, do_sample: bool = True,
                      left_padding: bool = True, compile: bool = False, num_images_per_prompt: int = 1,
                      negative_prompt=None, negative_prompt_embeds=None, negative_prompt_attention_mask=None,
                      callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",),
                      decoding: str = "standard", decoding_kwargs: dict | None = None) -> torch.LongTensor:
        check_number("num_images_per_prompt", num_images_per_prompt, minimum=1, integer=True)
        embeds, mask = self._prepared_embeds(prompt, prompt_embeds, prompt_attention_mask, left_padding)
        settings = self._settings(guidance_scale, cfg_interval, temperature, top_k, top_p)
        uncondition = negative_mask = None
        if negative_prompt is not None or negative_prompt_embeds is not None:
            if isinstance(negative_prompt, str):  # one negative prompt for every prompt
                negative_prompt = [negative_prompt] * embeds.shape[0]
            negative, negative_mask = self._prepared_embeds(negative_prompt, negative_prompt_embeds,
                                                            negative_prompt_attention_mask, left_padding, "negative_prompt")
            if negative.shape[0] != embeds.shape[0]:
                raise ValueError(f"negative prompts ({negative.shape[0]}) must match the prompts ({embeds.shape[0]}) one to one")
            uncondition = {"caption_embeds": negative.repeat_interleave(num_images_per_prompt, 0)}
            negative_mask = negative_mask.repeat_interleave(num_images_per_prompt, 0)
        embeds, mask = embeds.repeat_interleave(num_images_per_prompt, 0), mask.repeat_interleave(num_images_per_prompt, 0)
        return self._generate({"caption_embeds": embeds}, embeds.shape[0], mask, settings, generator, do_sample, compile,
                              callback_on_step_end=callback_on_step_end,
                              callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                              uncondition=uncondition, uncondition_mask=negative_mask,
                              decoding=decoding, decoding_kwargs=decoding_kwargs)

    @torch.no_grad()
    def __call__(self, prompt=None, prompt_embeds=None, prompt_attention_mask=None, guidance_scale: float | None = None,
                 cfg_interval: int | None = None, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, generator=None, do_sample: bool = True,
                 left_padding: bool = True, compile: bool = False, output_type: str = "pil", return_dict: bool = True,
                 num_images_per_prompt: int = 1, negative_prompt=None, negative_prompt_embeds=None,
                 negative_prompt_attention_mask=None, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs=("token_ids",), decoding: str = "standard",
                 decoding_kwargs: dict | None = None):
        """Generate images for ``prompt`` (a string or list), or for precomputed ``prompt_embeds``.
        Settings as :class:`AutoregressiveImagePipeline`; ``left_padding=False`` is the original's
        ``--no-left-padding``. ``negative_prompt`` (or ``negative_prompt_embeds``) replaces the null caption in
        the guidance branch. ``decoding`` / ``decoding_kwargs``: the decoding strategy, as there."""
        self.check_output_type(output_type)
        ids = self.sample_tokens(prompt, prompt_embeds, prompt_attention_mask, guidance_scale, cfg_interval, temperature,
                                 top_k, top_p, generator, do_sample, left_padding, compile, num_images_per_prompt,
                                 negative_prompt, negative_prompt_embeds, negative_prompt_attention_mask,
                                 callback_on_step_end, callback_on_step_end_tensor_inputs, decoding, decoding_kwargs)
        return self.finish(ids, output_type, return_dict, generator=generator)
