"""Class-conditional autoregressive generation over factorized tokens (Open-MAGVIT2): each image token is
drawn as consecutive sub-tokens (``pre`` then ``post`` over the bit groups of its id).

The sampler follows the original ``sample_Open_MAGVIT2`` step for step: per image token, one cached step
of the spatial blocks (static KV cache over the condition and image tokens), then the factorized blocks
over ``[h, pre_emb(pre)]`` with a fresh two-position cache, each sub-token drawn with its own
``guidance_scale``, ``temperature``, ``top_k`` and ``top_p`` (lists with one value per sub-token; a single
value applies to both). Guidance runs one [cond; uncond] batch and combines raw logits as
``uncond + (cond - uncond) * s`` for a sub-token whose scale is > 1 (the conditional half otherwise); each
sub-token is drawn as temperature -> top-k -> top-p -> softmax -> multinomial, one draw per image from
``generator``, so seeded samples equal the original's under the same seed.
"""

from __future__ import annotations

import torch

from ..modeling.quantizers import merge_indices, split_indices
from .autoregressive import AutoregressiveImagePipeline
from .base import check_number
from .sampling import sample_next_token

_PER_SUBTOKEN = ("guidance_scale", "temperature", "top_k", "top_p")


class FactorizedAutoregressiveImagePipeline(AutoregressiveImagePipeline):
    """Class-conditional generation with a factorized-token generator. Components: ``image_tokenizer`` (a 2D
    discrete VisualTokenizer) and ``transformer`` (a generator with ``factorized_bits``, ``spatial_step`` and
    ``subtoken_step``, such as ``OpenMagvit2ARTransformer``)."""

    def _check_components(self, image_tokenizer, transformer, condition_type: str) -> None:
        super()._check_components(image_tokenizer, transformer, condition_type)
        if len(getattr(transformer.config, "factorized_bits", ())) != 2:
            raise ValueError(f"{type(self).__name__} needs a transformer over two sub-tokens (config.factorized_bits)")

    def _settings(self, guidance_scale, cfg_interval, temperature, top_k, top_p, cfg_schedule=None,
                  cfg_schedule_kwargs=None, decode_feeds_condition=None) -> dict:
        if cfg_interval not in (None, -1):
            raise ValueError("cfg_interval is not part of this sampler (guidance is on at every step): leave it unset")
        for name, value in (("cfg_schedule", cfg_schedule), ("cfg_schedule_kwargs", cfg_schedule_kwargs),
                            ("decode_feeds_condition", decode_feeds_condition)):
            if value is not None:
                raise ValueError(f"{name} is not part of this sampler (a constant scale per sub-token): leave it unset")
        defaults = self.transformer.config.sampling_defaults
        given = dict(guidance_scale=guidance_scale, temperature=temperature, top_k=top_k, top_p=top_p)
        settings, names = {}, {}
        for name, value in given.items():
            value = defaults[name] if value is None else value
            if isinstance(value, (list, tuple)):
                if len(value) != 2:
                    raise ValueError(f"{name} must be one value or a list of 2 (one per sub-token), got {value!r}")
                settings[name], names[name] = list(value), [f"{name}[0]", f"{name}[1]"]
            else:  # one value for both sub-tokens
                settings[name], names[name] = [value, value], [name, name]
        for i in range(2):
            check_number(names["guidance_scale"][i], settings["guidance_scale"][i], minimum=0)  # on above 1.0
            check_number(names["temperature"][i], settings["temperature"][i], above=0)
            check_number(names["top_k"][i], settings["top_k"][i], minimum=0, integer=True)  # 0: off
            check_number(names["top_p"][i], settings["top_p"][i], above=0, maximum=1)  # 1: off
        if max(settings["guidance_scale"]) > 1.0 and not self.transformer.config.has_null_condition:
            raise ValueError("this transformer has no null condition (trained without class dropout): guidance_scale must be <= 1.0")
        return settings

    @torch.no_grad()
    def _generate(self, condition: dict, batch: int, condition_mask, settings: dict, generator, do_sample: bool,
                  compile: bool, num_tokens: int | None = None, callback_on_step_end=None,
                  callback_on_step_end_tensor_inputs=("token_ids",), uncondition=None, uncondition_mask=None,
                  decoding: str = "standard", decoding_kwargs: dict | None = None) -> torch.LongTensor:
        if decoding != "standard" or decoding_kwargs:
            raise ValueError(f"{type(self).__name__} decodes one token (two sub-tokens) per step: decoding must be 'standard', "
                             f"got {decoding!r}")
        if compile:
            raise ValueError(f"{type(self).__name__} has no compiled decode step: leave compile=False")
        model = self.transformer
        cfg = model.config
        bits = cfg.factorized_bits
        generator = self.check_generator(generator, batch)
        tensor_inputs = self.check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        device = model.device
        scales = settings["guidance_scale"]
        guided = max(scales) > 1.0
        rows = 2 * batch if guided else batch
        labels = condition["class_labels"]
        drop = None
        if guided:  # [cond; uncond]: the second half gets the null class
            labels = torch.cat([labels, labels])
            drop = torch.arange(rows, device=device) >= batch
        cache = model.new_cache(rows)

        def pick(logits, index):
            if guided:
                cond, uncond = logits.split(batch)
                logits = uncond + (cond - uncond) * scales[index] if scales[index] > 1.0 else cond
            return sample_next_token(logits, settings["temperature"][index], settings["top_k"][index], settings["top_p"][index],
                                     generator, do_sample)

        def double(x):
            return torch.cat([x, x]) if guided else x

        tokens, pre, post = [], None, None
        length = cfg.num_tokens if num_tokens is None else num_tokens
        for step in self.progress_bar(range(length)):
            if step == 0:
                hidden = model.spatial_step(cache, 0, class_labels=labels, drop_condition=drop)
            else:
                hidden = model.spatial_step(cache, step, pre_ids=double(pre), post_ids=double(post))
            subcache = model.new_cache(rows, factorized=True)
            logits_pre = model.subtoken_step(hidden, subcache, 0)
            pre = pick(logits_pre, 0)
            logits_post = model.subtoken_step(model.pre_embed(double(pre)), subcache, 1)
            post = pick(logits_post, 1)
            tokens.append(merge_indices([pre, post], bits))
            if callback_on_step_end is not None:  # the tokens so far; a replaced last token is fed back next step
                out = self.run_callback(self, callback_on_step_end, step, tensor_inputs,
                                        {"token_ids": torch.cat(tokens, dim=1), "logits": logits_post})
                tokens = list(out["token_ids"].split(1, dim=1))
                pre, post = split_indices(tokens[-1], bits)
        tokens = torch.cat(tokens, dim=1)
        return tokens.view(batch, cfg.grid_size, cfg.grid_size) if num_tokens is None else tokens
