"""TokenFlowTextToImagePipeline: TokenFlow-t2i text-to-image generation (ByteFlow-AI/TokenFlow), a Llama language
model predicting a multi-scale tokenizer's codes scale by scale after the prompt.

The sampler follows the original ``LlavaLlamaForCausalLM.autoregressive_infer_cfg`` in the order of its random
draws: with the same seed the sampled tokens are identical.
Per scale ``k``: the batch ``[conditional; unconditional]`` (the unconditional prompt is the released negative
prompt) runs through the transformer; the logits of the scale's positions are guided as
``(1 + t) * cond - t * uncond`` with ``t = guidance_scale * k / (K - 1)``; every text id below the image
tokens is set to -inf (the original's mask; ids above the image block, which the original leaves possible,
are masked too, since they are no code); VAR's top-k then top-p; one ``multinomial`` draw for the whole batch
from ``generator``. The codes' chained sum (``quantizer.next_autoregressive_input``) gives the next scale's
inputs. The prefix (the prompts) runs once into a KV cache (transformers' ``DynamicCache``); each scale then
runs only its new positions (the original re-runs the whole sequence each scale: same attention, same result
up to float rounding).

Multi-step refinement (the original's ``loop``, ``num_loops`` here; 1 = the released default): every scale after
the first is drawn ``num_loops`` times, draw ``l`` with ``top_k[l]`` / ``top_p[l]``. A refinement draw re-predicts
the scale from inputs that already hold its own codes: the original's ``pred_for_curr_shape`` puts the running sum
*including* the scale's last draw (at the scale's resolution, not upsampled) at the scale's positions, and
re-runs the model; the new draw replaces the scale's codes. Only the scale's own positions change, so the
pipeline runs just those against the cached prefix; their refinement keys/values are dropped afterwards and the
first pass's put back, since the next scale (like the original's next full forward) sees the scale's positions
with their first-pass inputs again.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from ...pipelines.base import VistokPipeline, check_number
from ...pipelines.sampling import filter_top_k, filter_top_p_ascending

# The release's multi-step strategies (t2i/llava_t2i/eval/run_llava_samples.py, ``--loop`` 2 and 3): one top-k and
# one top-p per loop. One loop takes the transformer config's ``sampling_defaults`` (600 / 0.6 in the release).
LOOP_STRATEGIES = {2: ([1200, 1], [0.8, 0.0]), 3: ([1200, 100, 1], [0.8, 0.8, 0.0])}


class TokenFlowTextToImagePipeline(VistokPipeline):
    """Components: ``image_tokenizer`` (a TokenFlow tokenizer, ``TokenFlowModel``), ``transformer``
    (``TokenFlowT2IForCausalLM``) and ``tokenizer`` (the model's text tokenizer: the Llama tokenizer with the
    ``<vq_token_i>``, ``[PAD]`` and ``<img>`` tokens). Without a tokenizer pass ``prompt_ids`` (token ids)."""

    model_cpu_offload_seq = "transformer->image_tokenizer"
    _optional_components = ["tokenizer"]
    _callback_tensor_inputs = ["token_ids", "logits"]

    def __init__(self, image_tokenizer, transformer, tokenizer=None):
        super().__init__()
        tcfg, icfg = transformer.config, image_tokenizer.config
        if list(tcfg.patch_nums) != list(icfg.patch_nums) or tcfg.codebook_size != icfg.codebook_size \
                or tcfg.code_dim != icfg.code_dim:
            raise ValueError(f"the transformer predicts {tcfg.codebook_size} codes of width {tcfg.code_dim} over scales "
                             f"{list(tcfg.patch_nums)}; the image tokenizer has {icfg.codebook_size} x {icfg.code_dim} over "
                             f"{list(icfg.patch_nums)}")
        self.register_modules(image_tokenizer=image_tokenizer, transformer=transformer, tokenizer=tokenizer)

    # -- text ---------------------------------------------------------------------------------
    def prompt_ids(self, prompts: list[str]) -> list[list[int]]:
        """The text tokenizer's ids of each prompt (BOS first), stripped of surrounding whitespace first as the
        original's ``run_llava_samples.py`` strips its prompts (transformers' Llama tokenizer, unlike the original's
        sentencepiece one, would also not put a second dummy-prefix piece before a leading space)."""
        if self.tokenizer is None:
            raise ValueError("this pipeline has no tokenizer: pass prompt_ids (and negative_prompt_ids) instead of text")
        return [list(self.tokenizer(p.strip()).input_ids) for p in prompts]

    def encode_prompt_ids(self, ids: list[int]) -> list[int]:
        """The original ``crop_and_encode_text_and_img``: BOS first, truncated to ``prompt_length`` or left-padded
        with ``[PAD]``, then ``<img>``."""
        cfg = self.transformer.config
        ids = list(ids)
        if not ids or ids[0] != cfg.bos_token_id:
            ids = [cfg.bos_token_id] + ids
        length = cfg.prompt_length
        ids = ids[:length] if len(ids) > length else [cfg.pad_token_id] * (length - len(ids)) + ids
        return ids + [cfg.image_start_token_id]

    def _prompts(self, prompt, prompt_ids, what: str, batch: int | None = None) -> list[list[int]]:
        if prompt is not None and prompt_ids is not None:
            raise ValueError(f"pass either {what} or {what}_ids, not both")
        if prompt_ids is not None:
            rows = prompt_ids.tolist() if isinstance(prompt_ids, torch.Tensor) else prompt_ids
            if rows and isinstance(rows[0], int):
                rows = [rows]
            if not isinstance(rows, (list, tuple)) or not rows or not all(
                    isinstance(r, (list, tuple)) and all(isinstance(i, int) for i in r) for r in rows):
                raise ValueError(f"{what}_ids must be a list of token id lists (or a 2D tensor)")
        else:
            if prompt is None:
                if batch is None:
                    raise ValueError("pass prompt (a string or a list of strings) or prompt_ids")
                prompt = self.transformer.config.negative_prompt
            texts = [prompt] if isinstance(prompt, str) else prompt
            if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(p, str) for p in texts):
                raise ValueError(f"{what} must be a string or a non-empty list of strings, got {prompt!r}")
            rows = self.prompt_ids(list(texts))
        if batch is not None and len(rows) == 1:
            rows = rows * batch
        if batch is not None and len(rows) != batch:
            raise ValueError(f"{what} has {len(rows)} entries for {batch} prompts")
        return [self.encode_prompt_ids(r) for r in rows]

    # -- sampling -----------------------------------------------------------------------------
    def _check_settings(self, guidance_scale, temperature, top_k, top_p):
        check_number("guidance_scale", guidance_scale, minimum=0)
        check_number("temperature", temperature, above=0)
        for i, (k, p) in enumerate(zip(top_k, top_p)):
            name = "" if len(top_k) == 1 else f"[{i}]"
            check_number(f"top_k{name}", k, minimum=0, integer=True)
            check_number(f"top_p{name}", p, minimum=0)
            if p > 1:
                raise ValueError(f"top_p{name} must be in [0, 1] (0: off), got {p}")

    def _loop_settings(self, num_loops, top_k, top_p) -> tuple[list[int], list[float]]:
        """One ``(top_k, top_p)`` per sampling loop. Lists give one value per loop (their length is the loop count
        when ``num_loops`` is unset); a single number holds for every loop; unset values take the release's
        strategy for the loop count (``sampling_defaults`` for one loop, ``LOOP_STRATEGIES`` for 2 and 3)."""
        lengths = {}
        for name, value in (("top_k", top_k), ("top_p", top_p)):
            if isinstance(value, (list, tuple)):
                if not value:
                    raise ValueError(f"{name} must be a number or a non-empty list (one value per loop)")
                lengths[name] = len(value)
        if num_loops is None:
            if len(set(lengths.values())) > 1:
                raise ValueError(f"top_k and top_p give different loop counts ({lengths['top_k']} and "
                                 f"{lengths['top_p']} values): pass one value per loop in each")
            num_loops = next(iter(lengths.values()), 1)
        check_number("num_loops", num_loops, minimum=1, integer=True)
        for name, n in lengths.items():
            if n != num_loops:
                raise ValueError(f"{name} has {n} values for num_loops={num_loops}: pass one value per loop")
        defaults = self.transformer.config.sampling_defaults
        preset = ([defaults["top_k"]], [defaults["top_p"]]) if num_loops == 1 else LOOP_STRATEGIES.get(num_loops)

        def resolve(name, value, index):
            if value is None:
                if preset is None:
                    raise ValueError(f"num_loops={num_loops} has no released strategy (1 to 3): pass {name} as a list "
                                     f"of {num_loops} values")
                return list(preset[index])
            return list(value) if isinstance(value, (list, tuple)) else [value] * num_loops

        return resolve("top_k", top_k, 0), resolve("top_p", top_p, 1)

    @torch.no_grad()
    def sample(self, prompt=None, negative_prompt=None, prompt_ids=None, negative_prompt_ids=None,
               guidance_scale: float | None = None, temperature: float | None = None,
               top_k: int | list[int] | None = None, top_p: float | list[float] | None = None, generator=None,
               num_images_per_prompt: int = 1, callback_on_step_end=None,
               callback_on_step_end_tensor_inputs=("token_ids",), num_loops: int | None = None) -> torch.LongTensor:
        """Token ids ``[B, L]`` (scales concatenated, coarse first); unset settings take the release's defaults.
        ``num_loops`` (the original's ``loop``): draws per scale after the first (see ``_loop_settings`` for how
        ``top_k`` / ``top_p`` lists go with it)."""
        cfg = self.transformer.config
        defaults = cfg.sampling_defaults
        guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        temperature = defaults.get("temperature", 1.0) if temperature is None else temperature
        top_k, top_p = self._loop_settings(num_loops, top_k, top_p)
        self._check_settings(guidance_scale, temperature, top_k, top_p)
        check_number("num_images_per_prompt", num_images_per_prompt, minimum=1, integer=True)
        cond = self._prompts(prompt, prompt_ids, "prompt")
        uncond = self._prompts(negative_prompt, negative_prompt_ids, "negative_prompt", len(cond))
        cond = [r for r in cond for _ in range(num_images_per_prompt)]
        uncond = [r for r in uncond for _ in range(num_images_per_prompt)]
        batch = len(cond)
        generator = self.check_generator(generator, batch)
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        device = self.transformer.device
        input_ids = torch.tensor(cond + uncond, device=device)
        quantizer = self.image_tokenizer.quantizer
        nums, start, size = cfg.patch_nums, cfg.image_token_start, cfg.codebook_size
        last = len(nums) - 1

        # the prompts once, into the cache; their last position (<img>) predicts scale 0
        cache = DynamicCache(config=cfg)
        embeds, bias = self.transformer.build_inputs(input_ids)
        prompt_len = input_ids.shape[1]
        keep = bias[:, 0, -1] == 0  # the keys the last prompt position sees: the non-pad prompt tokens
        out = self.transformer(inputs_embeds=embeds, attention_mask=bias, cache=cache, use_cache=True, logits_to_keep=1)
        logits = out.logits
        f_hat, token_ids = 0.0, []
        for k in self.progress_bar(range(len(nums))):
            t = guidance_scale * (k / last if last else 0.0)
            side = nums[k]
            first_pass = None
            # the original refines from scale 1 on (its multi_step_infer_start)
            for loop in range(len(top_k) if k >= 1 else 1):
                if loop:
                    if first_pass is None:  # the first pass's keys/values of this scale, put back below
                        first_pass = self._pop_positions(cache, side * side)
                    h = quantizer.embed(ids).view(batch, side, side, -1).permute(0, 3, 1, 2)
                    current = (f_hat + h).permute(0, 2, 3, 1).flatten(1, 2).repeat(2, 1, 1)
                    logits = self._scale_logits(current, k, prompt_len, keep, cache)
                    cache.crop(-side * side)
                guided = (1 + t) * logits[:batch] - t * logits[batch:]
                guided[..., :start] = -torch.inf
                guided[..., start + size:] = -torch.inf
                if temperature != 1.0:
                    guided = guided / temperature
                filter_top_k(guided, top_k[loop])
                filter_top_p_ascending(guided, top_p[loop])
                probs = guided.softmax(dim=-1)
                if isinstance(generator, list):
                    draws = [torch.multinomial(p.view(-1, p.shape[-1]), 1, replacement=True, generator=g)
                             for p, g in zip(probs.split(1), generator)]
                    ids = torch.cat([d.view(1, -1) for d in draws])
                else:
                    ids = torch.multinomial(probs.view(-1, probs.shape[-1]), 1, replacement=True,
                                            generator=generator).view(batch, -1)
                ids = ids - start
            if first_pass is not None:
                for layer_idx, (keys, values) in enumerate(first_pass):
                    cache.update(keys, values, layer_idx)
            if callback_on_step_end is not None:
                res = self.run_callback(self, callback_on_step_end, k, tensor_inputs,
                                        {"token_ids": torch.cat(token_ids + [ids], dim=1), "logits": guided})
                ids = res["token_ids"][:, -ids.shape[1]:]
            token_ids.append(ids)
            if k == last:
                break
            h = quantizer.embed(ids).view(batch, side, side, -1).permute(0, 3, 1, 2)
            f_hat, nxt = quantizer.next_autoregressive_input(k, f_hat, h)
            new_inputs = nxt.permute(0, 2, 3, 1).flatten(1, 2).repeat(2, 1, 1)
            logits = self._scale_logits(new_inputs, k + 1, prompt_len, keep, cache)
        return torch.cat(token_ids, dim=1)

    @staticmethod
    def _pop_positions(cache, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Remove the last ``n`` positions from every layer of ``cache``; returns their (keys, values)."""
        removed = [(layer.keys[..., -n:, :], layer.values[..., -n:, :]) for layer in cache.layers]
        cache.crop(-n)
        return removed

    def _scale_logits(self, new_inputs, k, prompt_len, keep, cache):
        """Logits of scale ``k``'s positions given its inputs (the cache holds the prompt and scales < k)."""
        transformer, cfg = self.transformer, self.transformer.config
        model = transformer.model
        offsets = cfg.scale_offsets
        first = offsets[k] - cfg.patch_nums[0] ** 2  # index of this scale's first image input
        n = new_inputs.shape[1]
        levels = transformer._image_levels(offsets[k + 1] - cfg.patch_nums[0] ** 2, new_inputs.device)[first:]
        embeds = model.mm_projector(new_inputs.to(transformer.dtype))
        embeds = embeds + model.level_embedding(levels) + model.position_embedding[first + 1:first + 1 + n]
        past = prompt_len + first
        total = past + n
        allowed = torch.zeros(keep.shape[0], n, total, dtype=torch.bool, device=keep.device)
        allowed[:, :, :prompt_len - 1] = keep[:, None, :prompt_len - 1]  # text keys (pads masked)
        allowed[:, :, prompt_len - 1:] = True  # <img> and every image position up to this scale (block-causal)
        bias = torch.zeros(allowed.shape, dtype=embeds.dtype, device=keep.device).masked_fill(
            ~allowed, torch.finfo(embeds.dtype).min)[:, None]
        position_ids = torch.arange(past, total, device=keep.device)[None]
        return transformer(inputs_embeds=embeds, attention_mask=bias, position_ids=position_ids, cache=cache,
                           use_cache=True).logits

    def sample_tokens(self, prompt=None, **kwargs) -> torch.LongTensor:
        return self.sample(prompt, **kwargs)

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, prompt_ids=None, negative_prompt_ids=None,
                 guidance_scale: float | None = None, temperature: float | None = None,
                 top_k: int | list[int] | None = None, top_p: float | list[float] | None = None,
                 height: int | None = None, width: int | None = None, generator=None,
                 output_type: str = "pil", return_dict: bool = True, num_images_per_prompt: int = 1,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("token_ids",),
                 num_loops: int | None = None):
        """Generate images of ``prompt`` (a string or a list). ``negative_prompt``: the unconditional text (default:
        the released negative prompt). ``guidance_scale``: the guidance at the last scale (it ramps linearly from
        0). ``temperature`` divides the guided logits (1: the original, which has none). ``top_k`` / ``top_p``:
        0 = off; a list gives one value per sampling loop. ``num_loops`` (the original's ``loop``, default 1):
        how many times each scale after the first is drawn, every draw after the first re-predicting the scale
        from its own last draw; unset ``top_k`` / ``top_p`` take the release's strategy for 2 or 3 loops
        ([1200, 1] / [0.8, 0] and [1200, 100, 1] / [0.8, 0.8, 0]). ``height`` / ``width``: must equal the tokenizer's image size. ``generator``: the token draws.
        ``callback_on_step_end(pipe, scale, scale, kwargs)`` runs per scale. ``output_type`` "latent" returns
        token ids."""
        self.check_output_type(output_type)
        size = self.image_tokenizer.config.image_size
        for name, value in (("height", height), ("width", width)):
            if value is not None and value != size:
                raise ValueError(f"{name} must be {size}: the scale schedule fixes the image size")
        ids = self.sample(prompt, negative_prompt, prompt_ids, negative_prompt_ids, guidance_scale, temperature, top_k,
                          top_p, generator, num_images_per_prompt, callback_on_step_end, callback_on_step_end_tensor_inputs,
                          num_loops=num_loops)
        return self.finish(ids, output_type, return_dict)
