"""LlamaGen (FoundationVision/LlamaGen, "Autoregressive Model Beats Diffusion"): the VQ image
tokenizers and the Llama-style next-token image generator.

The VQ model (tokenizer/tokenizer_image/vq_model.py) runs on the shared conv encoder/decoder
(``layers/conv_autoencoder.py``) and the quantizer library's cosine ``VectorQuantizer``.

Ported from autoregressive/models/gpt.py: pre-norm RMSNorm (fp32), fused ``wqkv`` (GQA-capable),
SwiGLU, no biases, 2D RoPE on interleaved pairs with the condition positions' queries and keys
zeroed (the original's zero-padded table), an untied zero-initialised output head. Condition tokens
are a class embedding (row ``num_classes`` is the null class) or T5 caption features through a
two-layer MLP (a learned ``uncond_embedding`` replaces them for guidance). The decoder layer is the
shared ``layers/llama.py`` one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel  # noqa: F401  (diffusers finds a pipeline component's loading class in its module)
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..base import VisualTokenizerMixin
from ..layers.conv_autoencoder import ConvDecoder, ConvEncoder
from ..layers.conv_tokenizer import ConvTokenizerPreTrainedModel, QuantConvTokenizerMixin
from ..layers.kv_cache import StaticKVCache
from ..layers.norms import RMSNorm
from ..layers.llama import LlamaAttention, LlamaDecoderLayer
from ..layers.llama_generator import (LlamaGeneratorPreTrainedModel, TokenEmbeddingsMixin, check_class_labels, check_token_ids,
                                      drop_path_rates, embed_class_labels, step_attention_mask, training_condition_drop,
                                      with_condition_mask)
from ..layers.rope import rope_2d_cos_sin
from ..layers.zero_init import zero_initialised
from ..quantizers import VectorQuantizer
from .configuration_llamagen import LlamaGenConfig, LlamaGenVQConfig


@dataclass
class LlamaGenOutput(ModelOutput):
    """logits: fp32 ``[B, S, codebook_size]``; without a cache, position i predicts image token i
    (S = number of image tokens given + 1). loss: cross-entropy against ``labels``. hidden_states /
    attentions: per decoder layer (the first hidden state is the embedded input), when asked for."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class LlamaGenClassEmbedder(nn.Module):
    """One condition token per class label; row ``num_classes`` is the null class (guidance)."""

    def __init__(self, config: LlamaGenConfig):
        super().__init__()
        self.embedding_table = nn.Embedding(config.num_classes + int(config.has_null_condition), config.hidden_size)

    def forward(self, class_labels, drop):
        return embed_class_labels(self.embedding_table, class_labels, drop)


class LlamaGenCaptionEmbedder(nn.Module):
    """T5 caption features ``[B, num_condition_tokens, caption_dim]`` -> condition tokens through
    fc2(gelu_tanh(fc1(x))); ``uncond_embedding`` (a fixed random buffer in the original) replaces a
    dropped caption."""

    def __init__(self, config: LlamaGenConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.caption_dim, config.hidden_size, bias=False)
        self.fc2 = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.register_buffer("uncond_embedding", torch.zeros(config.num_condition_tokens, config.caption_dim))

    def forward(self, caption_embeds, drop):
        if drop is not None:
            caption_embeds = torch.where(drop[:, None, None], self.uncond_embedding.to(caption_embeds.dtype), caption_embeds)
        return self.fc2(F.gelu(self.fc1(caption_embeds), approximate="tanh"))


class LlamaGenPreTrainedModel(LlamaGeneratorPreTrainedModel):
    config_class = LlamaGenConfig
    base_model_prefix = "llamagen"
    _no_split_modules = ["LlamaDecoderLayer"]
    _can_record_outputs = {"hidden_states": LlamaDecoderLayer, "attentions": OutputRecorder(LlamaAttention, index=1)}

    def _init_family_weights(self, module):
        if isinstance(module, LlamaGenCaptionEmbedder):
            init.normal_(module.uncond_embedding, std=module.uncond_embedding.shape[1] ** -0.5)
        elif isinstance(module, LlamaGenTransformer) and module.config.position_embedding == "learned":
            init.normal_(module.position_embedding, std=module.config.hidden_size**-0.5)


class LlamaGenTransformer(TokenEmbeddingsMixin, LlamaGenPreTrainedModel):
    """``forward(input_ids [B, n], class_labels [B] | caption_embeds [B, T, C])`` -> next-token logits.

    Without ``cache`` the whole sequence [condition, image tokens] runs causally and the logits
    ``[B, n + 1, codebook_size]`` predict image tokens 0..n. With a :class:`StaticKVCache` (see
    ``new_cache``) the call is one step of sampling: the condition and/or image tokens given are
    written at ``cache_position`` and logits come back for those positions (the last
    ``logits_to_keep`` of them when > 0).
    """

    def __init__(self, config: LlamaGenConfig):
        super().__init__(config)
        if config.condition_type == "class":
            self.condition_embedder = LlamaGenClassEmbedder(config)
        else:
            self.condition_embedder = LlamaGenCaptionEmbedder(config)
        self.embed_tokens = nn.Embedding(config.codebook_size, config.hidden_size)
        if config.position_embedding == "learned":  # condition positions first, then the image tokens
            self.position_embedding = nn.Parameter(torch.zeros(config.num_condition_tokens + config.num_tokens, config.hidden_size))
        self.token_dropout = nn.Dropout(config.token_dropout)
        rates = drop_path_rates(config.drop_path_rate, config.num_hidden_layers)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i, rates[i]) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = zero_initialised(nn.Linear(config.hidden_size, config.codebook_size, bias=False))
        self.post_init()

    def new_cache(self, batch_size: int, max_length: int | None = None, dtype=None, device=None) -> StaticKVCache:
        """A static cache for ``batch_size`` sequences of up to ``max_length`` (default: condition + image tokens)."""
        cfg = self.config
        length = max_length or cfg.num_condition_tokens + cfg.num_tokens
        return StaticKVCache(cfg.num_hidden_layers, batch_size, cfg.num_key_value_heads, length, cfg.head_dim,
                             dtype=dtype or self.dtype, device=device or self.device)

    def embed_condition(self, class_labels=None, caption_embeds=None, drop_condition=None) -> torch.Tensor:
        if self.config.condition_type == "class":
            return self.condition_embedder(class_labels, drop_condition)
        return self.condition_embedder(caption_embeds.to(self.dtype), drop_condition)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # transformers' older name for the cache
    @capture_outputs
    def forward(self, input_ids: torch.LongTensor | None = None, class_labels: torch.LongTensor | None = None,
                caption_embeds: torch.FloatTensor | None = None, drop_condition: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, cache: StaticKVCache | None = None,
                cache_position: torch.LongTensor | None = None, logits_to_keep: int = 0,
                labels: torch.LongTensor | None = None, generator: torch.Generator | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None) -> LlamaGenOutput | tuple:
        """``drop_condition`` (bool [B]) swaps in the null class / unconditional caption; in training the
        condition is also dropped with probability ``class_dropout_prob`` (drawn from ``generator``).

        ``attention_mask`` ([B, K] bool/0-1 over key positions, K = all positions attended to) masks
        padded condition tokens (left-padded captions); every position still attends to itself, as
        in the original. Without a cache, a mask over ``input_ids`` alone ([B, n]) is also accepted
        (transformers' convention); the condition tokens are then always attended. With a cache, K also sets how much of the cache is read (K <= its length).
        """
        cfg = self.config
        has_condition = class_labels is not None or caption_embeds is not None
        self.check_inputs(input_ids, class_labels, caption_embeds, cache, cache_position)
        pieces = []
        if has_condition:
            if self.training and cfg.class_dropout_prob > 0:
                batch = (class_labels if class_labels is not None else caption_embeds).shape[0]
                drop_condition = training_condition_drop(batch, cfg.class_dropout_prob, drop_condition, generator,
                                                         self.embed_tokens.weight.device)
            pieces.append(self.embed_condition(class_labels, caption_embeds, drop_condition))
        if input_ids is not None:
            pieces.append(self.embed_tokens(input_ids))
        hidden = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        hidden = self.token_dropout(self._add_positions(hidden, cache_position))
        if attention_mask is not None and cache is None and has_condition and input_ids is not None \
                and attention_mask.shape[-1] == input_ids.shape[1] != hidden.shape[1]:
            # a mask over input_ids only (transformers' convention): the condition tokens are always attended
            attention_mask = with_condition_mask(attention_mask, hidden.shape[1] - input_ids.shape[1])
        logits = self._transform(hidden, attention_mask, cache, cache_position, logits_to_keep)
        if cache is None and logits_to_keep == 0 and has_condition and cfg.num_condition_tokens > 1:
            logits = logits[:, cfg.num_condition_tokens - 1:]  # only positions that predict image tokens
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, : labels.shape[1]].reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return LlamaGenOutput(loss=loss, logits=logits)  # (capture_outputs adds hidden states and applies return_dict)

    def _decode_step(self, input_ids, attention_mask, cache, cache_position) -> torch.Tensor:
        """One cached step without input checks (the pipelines' per-token call; ``torch.compile``-able):
        fp32 logits ``[B, 1, codebook_size]``."""
        return self._transform(self._add_positions(self.embed_tokens(input_ids), cache_position), attention_mask, cache,
                               cache_position, 0)

    def _add_positions(self, hidden, cache_position):
        """Learned absolute positions (``position_embedding="learned"``) at ``cache_position`` (default 0..L-1)."""
        if self.config.position_embedding != "learned":
            return hidden
        if cache_position is None:
            return hidden + self.position_embedding[: hidden.shape[1]].to(hidden.dtype)
        return hidden + self.position_embedding[cache_position].to(hidden.dtype)

    def _transform(self, hidden, attention_mask, cache, cache_position, logits_to_keep) -> torch.Tensor:
        cfg = self.config
        length = hidden.shape[1]
        if cache_position is None:
            cache_position = torch.arange(length, device=hidden.device)
        cos = sin = None
        if cfg.position_embedding == "rope_2d":
            cos, sin = rope_2d_cos_sin(cache_position, cfg.grid_size, cfg.head_dim, cfg.rope_theta, cfg.num_condition_tokens)
        mask, key_length = step_attention_mask(hidden, attention_mask, cache, cache_position)
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, mask, cache, cache_position, key_length)
        hidden = self.norm(hidden)
        if logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        return self.lm_head(hidden).float()

    def check_inputs(self, input_ids, class_labels, caption_embeds, cache, cache_position) -> None:
        cfg = self.config
        if input_ids is not None:
            check_token_ids(input_ids, cfg.codebook_size)
        if cfg.condition_type == "class":
            if caption_embeds is not None:
                raise ValueError("this LlamaGen generator is class-conditional: pass class_labels, not caption_embeds")
            if class_labels is not None:
                check_class_labels(class_labels, cfg.num_classes)
        else:
            if class_labels is not None:
                raise ValueError("this LlamaGen generator is text-conditional: pass caption_embeds, not class_labels")
            if caption_embeds is not None:
                expected = (cfg.num_condition_tokens, cfg.caption_dim)
                if not isinstance(caption_embeds, torch.Tensor) or not caption_embeds.is_floating_point() \
                        or caption_embeds.ndim != 3 or tuple(caption_embeds.shape[1:]) != expected:
                    got = tuple(caption_embeds.shape) if isinstance(caption_embeds, torch.Tensor) else type(caption_embeds).__name__
                    raise ValueError(f"caption_embeds must be a float tensor [B, {expected[0]}, {expected[1]}], got {got}")
        if input_ids is None and class_labels is None and caption_embeds is None:
            raise ValueError("pass input_ids and/or a condition (class_labels or caption_embeds)")
        if cache is None and cache_position is None and class_labels is None and caption_embeds is None:
            raise ValueError("without a cache the sequence must start with its condition (class_labels or caption_embeds)")


class LlamaGenVQPreTrainedModel(ConvTokenizerPreTrainedModel):
    config_class = LlamaGenVQConfig
    base_model_prefix = "llamagen_vq"

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, VectorQuantizer):  # the original's uniform(-1/K, 1/K) (lookups normalise it)
            init.uniform_(module.embedding.weight, -1.0 / module.codebook_size, 1.0 / module.codebook_size)


class LlamaGenVQModel(QuantConvTokenizerMixin, VisualTokenizerMixin, LlamaGenVQPreTrainedModel):
    """``encode(pixels [B, 3, H, H] in [-1, 1])`` -> ``token_ids [B, H/f, H/f]`` and ``latents
    [B, (H/f)^2, token_dim]`` (normalised codes, row-major); ``decode(token_ids)`` -> pixels."""

    def __init__(self, config: LlamaGenVQConfig):
        super().__init__(config)
        ch, z = config.hidden_channels, config.z_channels
        self.encoder = ConvEncoder(ch, config.encoder_channel_mult, config.num_res_blocks, z, dropout=config.dropout)
        self.quant_conv = nn.Conv2d(z, config.token_dim, 1)
        self.quantizer = VectorQuantizer(config.codebook_size, config.token_dim, commitment_cost=config.commitment_cost,
                                         use_l2_norm=config.use_l2_norm)
        self.post_quant_conv = nn.Conv2d(config.token_dim, z, 1)
        # the original decoder has one ResNet block more per level than the encoder
        self.decoder = ConvDecoder(ch, config.decoder_channel_mult, config.num_res_blocks + 1, z, dropout=config.dropout)
        self.post_init()
