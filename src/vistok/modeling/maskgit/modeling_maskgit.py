"""MaskGIT generators: logits over tokenizer codes for ``[class token, image tokens]``.

Ported from bytedance/1d-tokenizer modeling/maskgit.py. The BERT backbone is transformers' own
``BertModel``; the U-ViT backbone is built from vistok's shared ``TransformerBlock``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import MaskedLMOutput
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..layers import TransformerBlock
from ..layers.transformer import Attention
from .configuration_maskgit import MaskGITConfig


class MaskGITPreTrainedModel(PreTrainedModel):
    config_class = MaskGITConfig
    base_model_prefix = "maskgit"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerBlock", "BertLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True
    # U-ViT blocks (the BERT backbone, a transformers BertModel, records its BertLayer/BertSelfAttention itself)
    _can_record_outputs = {"hidden_states": TransformerBlock, "attentions": OutputRecorder(Attention, index=1)}

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, MaskGITTransformer) and module.config.backbone == "uvit":
            init.trunc_normal_(module.pos_embed, std=self.config.initializer_range)


class MaskGITTransformer(MaskGITPreTrainedModel):
    """``forward(input_ids [B, n], class_labels [B])`` -> logits ``[B, n, codebook_size]`` (n <= num_tokens)."""

    def __init__(self, config: MaskGITConfig):
        super().__init__(config)
        hidden = config.hidden_size
        if config.backbone == "bert":
            self.bert = BertModel(
                BertConfig(
                    vocab_size=config.vocab_size, hidden_size=hidden, num_hidden_layers=config.num_hidden_layers,
                    num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
                    hidden_act="gelu", hidden_dropout_prob=config.hidden_dropout,
                    attention_probs_dropout_prob=config.attention_dropout,
                    max_position_embeddings=config.num_tokens + 1, layer_norm_eps=config.layer_norm_eps,
                    pad_token_id=None, initializer_range=config.initializer_range,
                    attn_implementation=config._attn_implementation,
                ),
                add_pooling_layer=False,
            )
        else:
            self.embeddings = nn.Embedding(config.vocab_size, hidden)
            self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens + 1, hidden))
            ratio = config.intermediate_size / hidden
            depth = config.num_hidden_layers // 2

            def block(skip=False):
                return TransformerBlock(config, hidden, config.num_attention_heads, ratio, config.layer_norm_eps,
                                        qkv_bias=False, skip=skip)

            self.in_blocks = nn.ModuleList(block() for _ in range(depth))
            self.mid_block = block()
            self.out_blocks = nn.ModuleList(block(skip=True) for _ in range(depth))
            self.norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(hidden, config.codebook_size)
        self.post_init()

    def get_input_embeddings(self):
        return self.bert.embeddings.word_embeddings if self.config.backbone == "bert" else self.embeddings

    def set_input_embeddings(self, value):
        if self.config.backbone == "bert":
            self.bert.embeddings.word_embeddings = value
        else:
            self.embeddings = value

    def get_output_embeddings(self):
        return None  # the head predicts codes only, not the input vocabulary [codes, mask, classes, null]

    def resize_token_embeddings(self, *args, **kwargs):
        raise ValueError(
            "MaskGIT's input vocabulary is [codes, mask token, class tokens, null class]: its size follows the "
            "tokenizer's codebook_size and num_classes (build a new config instead of resizing)")

    def class_token_ids(self, class_labels: torch.LongTensor, drop: torch.Tensor | None = None) -> torch.LongTensor:
        """Class labels -> condition tokens; ``drop`` (bool [B]) swaps in the null class (for guidance)."""
        tokens = class_labels + self.config.codebook_size + 1
        if drop is not None:
            tokens = torch.where(drop, torch.full_like(tokens, self.config.null_class_token_id), tokens)
        return tokens

    @capture_outputs
    def forward(self, input_ids: torch.LongTensor, class_labels: torch.LongTensor, drop_labels: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, generator: torch.Generator | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None) -> MaskedLMOutput | tuple:
        """``drop_labels`` forces the null class per sample; in training, labels are also dropped with
        probability ``class_label_dropout``. ``labels`` (-100 = ignore) gives a cross-entropy ``loss``."""
        self.check_inputs(input_ids, class_labels)
        if self.training and self.config.class_label_dropout > 0:
            random_drop = torch.rand(class_labels.shape, generator=generator, device=class_labels.device) < self.config.class_label_dropout
            drop_labels = random_drop if drop_labels is None else (drop_labels | random_drop)
        sequence = torch.cat([self.class_token_ids(class_labels, drop_labels)[:, None], input_ids], dim=1)
        if self.config.backbone == "bert":
            # BertModel.forward without a mask is embeddings + encoder; called directly so its layers
            # report hidden states / attentions to this forward's capture_outputs
            hidden = self.bert.encoder(self.bert.embeddings(input_ids=sequence)).last_hidden_state
        else:
            hidden = self.embeddings(sequence) + self.pos_embed[:, : sequence.shape[1]]
            skips = []
            for block in self.in_blocks:
                hidden = block(hidden)
                skips.append(hidden)
            hidden = self.mid_block(hidden)
            for block in self.out_blocks:
                hidden = block(hidden, skip=skips.pop())
            hidden = self.norm(hidden)
        logits = self.lm_head(hidden[:, 1:])
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)  # (capture_outputs adds hidden states and applies return_dict)

    def check_inputs(self, input_ids, class_labels) -> None:
        cfg = self.config
        if not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point() or input_ids.ndim != 2:
            raise ValueError(f"input_ids must be an integer tensor [B, n] with n <= {cfg.num_tokens}")
        if not 1 <= input_ids.shape[1] <= cfg.num_tokens:
            raise ValueError(f"input_ids must hold 1..{cfg.num_tokens} tokens, got {input_ids.shape[1]}")
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) > cfg.mask_token_id):
            raise ValueError(f"input_ids must lie in [0, {cfg.mask_token_id}] (codes and the mask token {cfg.mask_token_id})")
        if not isinstance(class_labels, torch.Tensor) or class_labels.is_floating_point() or class_labels.shape != input_ids.shape[:1]:
            raise ValueError(f"class_labels must be an integer tensor of shape [{input_ids.shape[0]}]")
        if class_labels.numel() and (int(class_labels.min()) < 0 or int(class_labels.max()) >= cfg.num_classes):
            raise ValueError(f"class_labels must lie in [0, {cfg.num_classes - 1}]")
