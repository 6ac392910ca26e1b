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

from ..modeling.var import VARTransformer
from .base import VistokPipeline
from .sampling import filter_top_k, filter_top_p_ascending, gumbel_noise_from_exponential


class NextScalePipeline(VistokPipeline):
    """Components: ``image_tokenizer`` (a multi-scale VisualTokenizer such as ``VARVQVAE``) and
    ``transformer`` (``VARTransformer``)."""

    model_cpu_offload_seq = "transformer->image_tokenizer"

    def __init__(self, image_tokenizer, transformer: VARTransformer):
        super().__init__()
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
        self.register_modules(image_tokenizer=image_tokenizer, transformer=transformer)

    # -- argument checks ----------------------------------------------------------------------
    def _labels(self, class_labels, batch_size, generator) -> torch.LongTensor:
        cfg, device = self.transformer.config, self.transformer.device
        if class_labels is None:
            if not isinstance(batch_size, int) or batch_size < 1:
                raise ValueError(f"without class_labels, batch_size must be an int >= 1 (labels are drawn uniformly), got {batch_size!r}")
            # as VAR draws them: one multinomial over the uniform distribution, from the same generator
            uniform = torch.full((1, cfg.num_classes), 1.0 / cfg.num_classes, dtype=torch.float32, device=device)
            return torch.multinomial(uniform, num_samples=batch_size, replacement=True, generator=generator).reshape(batch_size)
        if isinstance(class_labels, int):
            class_labels = [class_labels]
        labels = torch.as_tensor(class_labels)
        if labels.ndim != 1 or labels.numel() == 0 or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError("class_labels must be a non-empty list of ints (or None with batch_size)")
        if int(labels.min()) < 0 or int(labels.max()) >= cfg.num_classes:
            raise ValueError(f"class_labels must lie in [0, {cfg.num_classes - 1}], got {labels.tolist()}")
        return labels.to(device)

    @staticmethod
    def _check_settings(guidance_scale, top_k, top_p) -> None:
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or guidance_scale < 0:
            raise ValueError(f"guidance_scale must be a number >= 0, got {guidance_scale!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 disables it), got {top_k!r}")
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 <= top_p <= 1:
            raise ValueError(f"top_p must be in [0, 1] (0 disables it, as in VAR), got {top_p!r}")

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, class_labels=None, guidance_scale: float | None = None, top_k: int | None = None,
               top_p: float | None = None, smooth_sampling: bool | None = None,
               generator: torch.Generator | None = None, batch_size: int | None = None):
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
        labels = self._labels(class_labels, batch_size, generator)
        batch, device = labels.shape[0], labels.device
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
            ids = torch.multinomial(logits.softmax(dim=-1).view(-1, vocab), num_samples=1, replacement=True,
                                    generator=generator).view(batch, -1)
            token_ids.append(ids)
            if smooth:
                tau = max(0.27 * (1 - ratio * 0.95), 0.005)  # VAR's (MaskGIT-like) annealed temperature
                scaled = logits.mul(1 + ratio)
                weights = ((scaled + gumbel_noise_from_exponential(scaled, generator)) / tau).softmax(dim=-1)
                h = self.image_tokenizer.embed_scale(k, weights)
            else:
                h = self.image_tokenizer.embed_scale(k, ids)
            f_hat, next_input = self.image_tokenizer.next_scale_input(k, f_hat, h)
            if k != last:
                inputs = next_input.view(batch, dim, -1).transpose(1, 2).repeat(2, 1, 1)
        return torch.cat(token_ids, dim=1), f_hat

    def sample_tokens(self, class_labels=None, guidance_scale: float | None = None, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None,
                      batch_size: int | None = None) -> torch.LongTensor:
        """Token ids ``[B, L]`` (scales concatenated, coarse first)."""
        return self.sample(class_labels, guidance_scale, top_k, top_p, False, generator, batch_size)[0]

    @torch.no_grad()
    def __call__(self, class_labels=None, guidance_scale: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, smooth_sampling: bool | None = None,
                 generator: torch.Generator | None = None, batch_size: int | None = None,
                 output_type: str = "pil", return_dict: bool = True):
        """Generate images of ``class_labels`` (or of ``batch_size`` uniformly drawn classes).

        ``guidance_scale``: the guidance at the last scale (VAR ``cfg``; it ramps linearly from 0 at
        the first scale). ``top_k`` (0 = off) and ``top_p`` (0 = off, VAR semantics) filter each
        token's distribution. ``smooth_sampling``: Gumbel-softmax code mixing (VAR ``more_smooth``).
        Returns ``ImagePipelineOutput``."""
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        _, f_hat = self.sample(class_labels, guidance_scale, top_k, top_p, smooth_sampling, generator, batch_size)
        pixels = self.image_tokenizer.decode_latents(f_hat.to(self.image_tokenizer.device))
        return self.images_from_pixels(pixels, self.image_tokenizer.config.pixel_range, output_type, return_dict)
