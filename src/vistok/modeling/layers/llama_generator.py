"""The pieces the 2D-RoPE Llama generators share around ``layers/llama.py`` (LlamaGen's GPT, Open-MAGVIT2's
factorized AR, IBQ's AR, which all follow LlamaGen's autoregressive/models/gpt.py): the class-label condition
with its null row, the condition dropout of training, the drop-path schedule, the attention mask of a cached or
padded step, the input checks and the embedding accessors."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .norms import RMSNorm
from .zero_init import init_zero_initialised


def drop_path_rates(drop_path_rate: float, num_layers: int) -> list[float]:
    """Per-layer drop-path rates rising linearly from 0 to ``drop_path_rate`` (the original's torch.linspace)."""
    return [drop_path_rate * i / (num_layers - 1) if num_layers > 1 else 0.0 for i in range(num_layers)]


def embed_class_labels(table: nn.Embedding, class_labels: torch.Tensor, drop: torch.Tensor | None) -> torch.Tensor:
    """One condition token ``[B, 1, D]`` per class label; a ``drop``ped (bool [B]) label reads the null-class row,
    the table's last (LlamaGen's ``LabelEmbedder``)."""
    if drop is not None:
        class_labels = torch.where(drop, torch.full_like(class_labels, table.num_embeddings - 1), class_labels)
    return table(class_labels)[:, None]


def training_condition_drop(batch: int, prob: float, drop: torch.Tensor | None, generator: torch.Generator | None,
                            device) -> torch.Tensor:
    """``drop`` (bool [B] or None) with each condition also dropped with probability ``prob`` (drawn from
    ``generator``): classifier-free guidance training."""
    random_drop = torch.rand(batch, generator=generator, device=device) < prob
    return random_drop if drop is None else (drop | random_drop)


def with_condition_mask(attention_mask: torch.Tensor, num_condition_tokens: int) -> torch.Tensor:
    """A mask over the image tokens alone (transformers' convention) extended over the condition tokens before
    them, which are always attended."""
    condition = attention_mask.new_ones(attention_mask.shape[0], num_condition_tokens)
    return torch.cat([condition, attention_mask], dim=1)


def step_attention_mask(hidden: torch.Tensor, attention_mask, cache, cache_position: torch.Tensor):
    """``(mask [B, 1, L, K] bool, key_length K)`` of the positions ``cache_position`` over K keys (``attention_mask``'s
    length, else the cache's): causal by position, padded keys off, the diagonal always on (the original's eye).
    ``(None, None)`` without a cache or a mask: plain causal attention."""
    if cache is None and attention_mask is None:
        return None, None
    length = hidden.shape[1]
    key_length = attention_mask.shape[1] if attention_mask is not None else (cache.max_length if cache is not None else length)
    keys = torch.arange(key_length, device=hidden.device)
    mask = keys[None, :] <= cache_position[:, None]
    if attention_mask is not None:
        mask = mask[None] & attention_mask.bool()[:, None, :]
    mask = (mask | (keys[None, :] == cache_position[:, None])).expand(hidden.shape[0], length, key_length)[:, None]
    return mask, key_length


def check_token_ids(input_ids, codebook_size: int) -> None:
    """Image token ids: an integer tensor ``[B, n]`` in ``[0, codebook_size)``."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point() or input_ids.ndim != 2:
        raise ValueError(f"input_ids must be an integer tensor [B, n] of image token ids in [0, {codebook_size - 1}]")
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= codebook_size):
        raise ValueError(f"input_ids must lie in [0, {codebook_size - 1}] (codebook_size={codebook_size})")


def check_class_labels(class_labels, num_classes: int) -> None:
    """Class labels: an integer tensor ``[B]`` in ``[0, num_classes)``."""
    if not isinstance(class_labels, torch.Tensor) or class_labels.is_floating_point() or class_labels.ndim != 1:
        raise ValueError(f"class_labels must be an integer tensor [B] in [0, {num_classes - 1}]")
    if class_labels.numel() and (int(class_labels.min()) < 0 or int(class_labels.max()) >= num_classes):
        raise ValueError(f"class_labels must lie in [0, {num_classes - 1}], got {class_labels.tolist()}")


class TokenEmbeddingsMixin:
    """transformers' embedding accessors for a generator whose input embeddings are ``embed_tokens`` and whose
    output head is ``lm_head``."""

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value


class LlamaGeneratorPreTrainedModel(PreTrainedModel):
    """What the generators' ``PreTrainedModel`` classes share: token-id inputs, gradient checkpointing, transformers'
    attention backends, and the init of the RMSNorms (ones) and zero-initialised heads; a family's other modules go
    through ``_init_family_weights``."""

    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flex_attn = False
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif not init_zero_initialised(module):  # (the heads are zero-initialised, as the originals)
            self._init_family_weights(module)

    def _init_family_weights(self, module) -> None:
        """The family's own modules' init (after transformers' default); none by default."""
