"""MaskGen-VQ: an MM-DiT predicting TA-TiTok VQ codes from a prompt's CLIP features.

Ported from bytedance/1d-tokenizer ``modeling/maskgen.py`` (``MaskGen_VQ``). The joint-attention blocks and the
final adaptive norm are diffusers' own (``JointTransformerBlock``, ``AdaLayerNormContinuous``), as upstream.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention import JointTransformerBlock
from diffusers.models.normalization import AdaLayerNormContinuous
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import MaskedLMOutput
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_maskgen import MaskGenVQConfig


class MaskGenPreTrainedModel(PreTrainedModel):
    config_class = MaskGenVQConfig
    base_model_prefix = "maskgen"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["JointTransformerBlock"]
    # diffusers' blocks return (text stream, image stream); the image stream is the hidden state. Their attention
    # runs through diffusers' processors, which return no attention weights.
    _can_record_outputs = {"hidden_states": OutputRecorder(JointTransformerBlock, index=1)}

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.trunc_normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        if isinstance(module, AdaLayerNormContinuous):
            init.zeros_(module.linear.weight)
            init.zeros_(module.linear.bias)
        elif isinstance(module, MaskGenVQTransformer):
            init.trunc_normal_(module.pos_embed, std=std)


def aesthetic_embedding(score: torch.Tensor, dim: int, max_period: int = 1000) -> torch.Tensor:
    """[sin, cos] embedding of ``score * 100`` (diffusers' ``get_timestep_embedding`` as MaskGen writes it)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=score.device) / half
    emb = (score * 100)[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    return F.pad(emb, (0, 1, 0, 0)) if dim % 2 else emb


class MaskGenVQTransformer(MaskGenPreTrainedModel):
    """``forward(input_ids [B, n], encoder_hidden_states [B, L, text_hidden_size], pooled_projections
    [B, text_hidden_size], aesthetic_score)`` -> logits ``[B, n, codebook_size]`` (n <= num_tokens)."""

    def __init__(self, config: MaskGenVQConfig):
        super().__init__(config)
        width, heads = config.hidden_size, config.num_attention_heads
        pooled_in = config.text_hidden_size + (config.micro_condition_embed_dim if config.micro_condition else 0)
        self.text_embed_proj = nn.Linear(config.text_hidden_size, width)
        self.cond_pooled_proj = nn.Linear(pooled_in, width)
        self.blocks = nn.ModuleList(
            JointTransformerBlock(dim=width, num_attention_heads=heads, attention_head_dim=width // heads,
                                  context_pre_only=i == config.num_hidden_layers - 1)
            for i in range(config.num_hidden_layers)
        )
        self.norm = AdaLayerNormContinuous(width, width, elementwise_affine=False, eps=1e-6)
        self.embeddings = nn.Embedding(config.vocab_size, width)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens, width))
        self.lm_head = None if config.weight_tying else nn.Linear(width, config.codebook_size)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def get_output_embeddings(self):
        return None  # tied: the head is a slice of the input embedding; untied: it predicts codes only

    def resize_token_embeddings(self, *args, **kwargs):
        raise ValueError("MaskGen's input vocabulary is [codes, mask token, unused class rows]: its size follows the "
                         "tokenizer's codebook_size (build a new config instead of resizing)")

    def condition(self, pooled_projections: torch.Tensor, aesthetic_score) -> torch.Tensor:
        """The modulation vector: projected pooled text feature (with the aesthetic-score embedding)."""
        if self.config.micro_condition:
            score = torch.as_tensor(aesthetic_score, dtype=torch.float32, device=pooled_projections.device)
            score = score.expand(pooled_projections.shape[0]) if score.ndim == 0 else score
            emb = aesthetic_embedding(score, self.config.micro_condition_embed_dim).to(pooled_projections.dtype)
            pooled_projections = torch.cat([pooled_projections, emb], dim=-1)
        return self.cond_pooled_proj(pooled_projections)

    @capture_outputs
    def forward(self, input_ids: torch.LongTensor, encoder_hidden_states: torch.Tensor, pooled_projections: torch.Tensor,
                aesthetic_score: float | torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None) -> MaskedLMOutput | tuple:
        """``aesthetic_score`` (a number or ``[B]``; micro-conditioned models) defaults to the released sampling
        value; ``labels`` (-100 = ignore) gives a cross-entropy ``loss``."""
        pooled_projections = self.check_inputs(input_ids, encoder_hidden_states, pooled_projections, aesthetic_score)
        if aesthetic_score is None:
            aesthetic_score = self.config.sampling_defaults["aesthetic_score"]
        text = self.text_embed_proj(encoder_hidden_states.to(self.dtype))
        temb = self.condition(pooled_projections.to(self.dtype), aesthetic_score)
        hidden = self.embeddings(input_ids) + self.pos_embed[:, : input_ids.shape[1]]
        for block in self.blocks:
            text, hidden = block(hidden, text, temb)
        hidden = self.norm(hidden, temb)
        if self.lm_head is None:
            logits = hidden @ self.embeddings.weight[: self.config.codebook_size].t()
        else:
            logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)

    def check_inputs(self, input_ids, encoder_hidden_states, pooled_projections, aesthetic_score) -> torch.Tensor:
        cfg = self.config
        if not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point() or input_ids.ndim != 2:
            raise ValueError(f"input_ids must be an integer tensor [B, n] with n <= {cfg.num_tokens}")
        if not 1 <= input_ids.shape[1] <= cfg.num_tokens:
            raise ValueError(f"input_ids must hold 1..{cfg.num_tokens} tokens, got {input_ids.shape[1]}")
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) > cfg.mask_token_id):
            raise ValueError(f"input_ids must lie in [0, {cfg.mask_token_id}] (codes and the mask token {cfg.mask_token_id})")
        batch = input_ids.shape[0]
        if (not isinstance(encoder_hidden_states, torch.Tensor) or encoder_hidden_states.ndim != 3
                or encoder_hidden_states.shape[0] != batch or encoder_hidden_states.shape[2] != cfg.text_hidden_size):
            raise ValueError(f"encoder_hidden_states must be [{batch}, L, {cfg.text_hidden_size}] (the CLIP text model's "
                             "penultimate hidden states)")
        if isinstance(pooled_projections, torch.Tensor) and pooled_projections.ndim == 3 and pooled_projections.shape[1] == 1:
            pooled_projections = pooled_projections[:, 0]  # the original's [B, 1, D]
        if not isinstance(pooled_projections, torch.Tensor) or tuple(pooled_projections.shape) != (batch, cfg.text_hidden_size):
            raise ValueError(f"pooled_projections must be [{batch}, {cfg.text_hidden_size}] (the projected pooled CLIP text feature)")
        if aesthetic_score is not None:
            if not cfg.micro_condition:
                raise ValueError("this MaskGen has no aesthetic-score micro-conditioning: aesthetic_score must be None")
            score = torch.as_tensor(aesthetic_score)
            if score.ndim > 1 or (score.ndim == 1 and score.shape[0] != batch) or not torch.isfinite(score.float()).all():
                raise ValueError(f"aesthetic_score must be a finite number or a tensor of shape [{batch}]")
        return pooled_projections
