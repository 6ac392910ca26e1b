"""NextScalePipeline: class-conditional coarse-to-fine generation with VAR (next-scale prediction).

The sampler follows FoundationVision/VAR ``VAR.autoregressive_infer_cfg`` step for step, including the
order of its random draws, so that with the same seed the sampled tokens are identical to the
original's: one batched forward of ``[conditional; unconditional]`` per scale over a KV cache,
guidance ``(1 + t) * cond - t * uncond`` with ``t = guidance_scale * k / (K - 1)`` rising linearly
from 0 at the first scale, top-k then VAR's top-p, one multinomial draw per token, and optional
Gumbel-softmax smoothing (``smooth_sampling``, VAR ``more_smooth``; for visualisation).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from .base import VistokPipeline, check_number
from .sampling import filter_top_k, filter_top_p_ascending, gumbel_noise_from_exponential, multinomial_per_image


class NextScalePipeline(VistokPipeline):
    """Components: ``image_tokenizer`` (a multi-scale VisualTokenizer such as ``VARVQVAE``) and
    ``transformer`` (a next-scale generator such as ``VARTransformer``)."""

    model_cpu_offload_seq = "transformer->image_tokenizer"
    _callback_tensor_inputs = ["token_ids", "logits", "f_hat"]

    def __init__(self, image_tokenizer, transformer):
        super().__init__()
        self._check_pair(image_tokenizer, transformer)
        self.register_modules(image_tokenizer=image_tokenizer, transformer=transformer)

    @staticmethod
    def _check_pair(image_tokenizer, transformer) -> None:
        tok, gen = image_tokenizer.config, transformer.config
        if getattr(tok, "token_layout", None) != "multiscale":
            raise ValueError(f"NextScalePipeline needs a multi-scale tokenizer (token_layout 'multiscale'), "
                             f"got {getattr(tok, 'token_layout', None)!r}")
        if tok.codebook_size != gen.codebook_size:
            raise ValueError(f"the transformer predicts {gen.codebook_size} codes but the tokenizer's codebook has {tok.codebook_size}")
        if list(tok.patch_nums) != list(gen.patch_nums):
            raise ValueError(f"the transformer generates scales {list(gen.patch_nums)}; the tokenizer's are {list(tok.patch_nums)}")
        if tok.z_channels != gen.z_channels:
            raise ValueError(f"the transformer reads {gen.z_channels}-channel features; the tokenizer's have {tok.z_channels}")

    # -- argument checks ----------------------------------------------------------------------
    def _labels(self, class_labels, batch_size, generator, num_images_per_prompt) -> torch.LongTensor:
        cfg, device = self.transformer.config, self.transformer.device
        if class_labels is not None:
            return self.class_label_ids(class_labels, num_images_per_prompt)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"without class_labels, batch_size must be an int >= 1 (labels are drawn uniformly), got {batch_size!r}")
        check_number("num_images_per_prompt", num_images_per_prompt, minimum=1, integer=True)
        batch = batch_size * num_images_per_prompt
        generator = self.check_generator(generator, batch)
        # as VAR draws them: one multinomial over the uniform distribution, from the same generator
        uniform = torch.full((1, cfg.num_classes), 1.0 / cfg.num_classes, dtype=torch.float32, device=device)
        if isinstance(generator, list):
            return torch.cat([torch.multinomial(uniform, 1, replacement=True, generator=g).reshape(1) for g in generator])
        return torch.multinomial(uniform, num_samples=batch, replacement=True, generator=generator).reshape(batch)

    @staticmethod
    def _check_settings(guidance_scale, top_k, top_p) -> None:
        check_number("guidance_scale", guidance_scale, minimum=0)
        check_number("top_k", top_k, minimum=0, integer=True)  # 0 disables it
        check_number("top_p", top_p, minimum=0, maximum=1)  # 0 disables it, as in VAR

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, class_labels=None, guidance_scale: float | None = None, top_k: int | None = None,
               top_p: float | None = None, smooth_sampling: bool | None = None, generator=None,
               batch_size: int | None = None, num_images_per_prompt: int = 1, callback_on_step_end=None,
               callback_on_step_end_tensor_inputs=("token_ids",)):
        """``(token_ids [B, L], f_hat [B, z_channels, pn, pn])``. ``f_hat`` is what the decoder renders;
        with ``smooth_sampling`` it mixes codes by Gumbel-softmax weights, so it differs from
        ``decode(token_ids)``. Unset settings take the model's released defaults."""
        cfg = self.transformer.config
        defaults = cfg.sampling_defaults
        guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        top_k = defaults["top_k"] if top_k is None else top_k
        top_p = defaults["top_p"] if top_p is None else top_p
        smooth = defaults["smooth_sampling"] if smooth_sampling is None else smooth_sampling
        self._check_settings(guidance_scale, top_k, top_p)
        labels = self._labels(class_labels, batch_size, generator, num_images_per_prompt)
        batch, device = labels.shape[0], labels.device
        generator = self.check_generator(generator, batch)
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        nums, dim = cfg.patch_nums, cfg.z_channels
        last = len(nums) - 1

        both_labels = torch.cat([labels, labels])
        drop = torch.cat([torch.zeros(batch, dtype=torch.bool, device=device), torch.ones(batch, dtype=torch.bool, device=device)])
        cache = DynamicCache()
        f_hat = torch.zeros(batch, dim, nums[-1], nums[-1], device=device, dtype=torch.float32)
        inputs, token_ids = None, []
        for k in self.progress_bar(range(len(nums))):
            ratio = k / last if last else 0.0
            logits = self.transformer(both_labels, inputs, drop_labels=drop, scale_index=k, cache=cache).logits
            t = guidance_scale * ratio
            logits = (1 + t) * logits[:batch] - t * logits[batch:]
            filter_top_k(logits, top_k)
            filter_top_p_ascending(logits, top_p)
            vocab = logits.shape[-1]
            ids = multinomial_per_image(logits.softmax(dim=-1).view(-1, vocab), generator, replacement=True).view(batch, -1)
            token_ids.append(ids)
            if smooth:
                tau = max(0.27 * (1 - ratio * 0.95), 0.005)  # VAR's (MaskGIT-like) annealed temperature
                scaled = logits.mul(1 + ratio)
                weights = ((scaled + gumbel_noise_from_exponential(scaled, generator)) / tau).softmax(dim=-1)
                h = self.image_tokenizer.embed_scale(k, weights)
            else:
                h = self.image_tokenizer.embed_scale(k, ids)
            f_hat, next_input = self.image_tokenizer.next_scale_input(k, f_hat, h)
            if callback_on_step_end is not None:  # the scale's ids are final here; f_hat may be replaced
                out = self.run_callback(self, callback_on_step_end, k, tensor_inputs,
                                        {"token_ids": torch.cat([*token_ids], dim=1), "logits": logits, "f_hat": f_hat})
                f_hat = out["f_hat"]
            if k != last:
                inputs = next_input.view(batch, dim, -1).transpose(1, 2).repeat(2, 1, 1)
        return torch.cat(token_ids, dim=1), f_hat

    def sample_tokens(self, class_labels=None, guidance_scale: float | None = None, top_k: int | None = None,
                      top_p: float | None = None, generator=None, batch_size: int | None = None,
                      num_images_per_prompt: int = 1) -> torch.LongTensor:
        """Token ids ``[B, L]`` (scales concatenated, coarse first)."""
        return self.sample(class_labels, guidance_scale, top_k, top_p, False, generator, batch_size, num_images_per_prompt)[0]

    @torch.no_grad()
    def __call__(self, class_labels=None, guidance_scale: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, smooth_sampling: bool | None = None, generator=None,
                 batch_size: int | None = None, output_type: str = "pil", return_dict: bool = True,
                 num_images_per_prompt: int = 1, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs=("token_ids",)):
        """Generate images of ``class_labels`` (ids, a tensor or class names), or of ``batch_size`` uniformly drawn
        classes.

        ``guidance_scale``: the guidance at the last scale (VAR ``cfg``; it ramps linearly from 0 at
        the first scale). ``top_k`` (0 = off) and ``top_p`` (0 = off, VAR semantics) filter each
        token's distribution. ``smooth_sampling``: Gumbel-softmax code mixing (VAR ``more_smooth``).
        ``generator``: one generator or one per image; ``callback_on_step_end(pipe, scale, scale, kwargs)`` runs
        after each scale with "token_ids", "logits" and "f_hat" (which it may replace). ``output_type`` "latent"
        returns the token ids. Returns ``ImagePipelineOutput``."""
        self.check_output_type(output_type)
        ids, f_hat = self.sample(class_labels, guidance_scale, top_k, top_p, smooth_sampling, generator, batch_size,
                                 num_images_per_prompt, callback_on_step_end, callback_on_step_end_tensor_inputs)
        if output_type == "latent":
            return self.finish(ids, output_type, return_dict)
        return self.finish(ids, output_type, return_dict, pixels=self.image_tokenizer.decode_latents(f_hat.to(self.image_tokenizer.device)))
