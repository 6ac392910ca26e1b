"""MaskGen-VQ: an MM-DiT predicting TA-TiTok VQ codes from a prompt's CLIP features; MaskGen-KL: the same MM-DiT over
continuous TA-TiTok KL tokens, conditioning a per-token diffusion head (MAR's "diffusion loss").

Ported from bytedance/1d-tokenizer ``modeling/maskgen.py`` (``MaskGen_VQ``, ``MaskGen_KL``) and, for the KL head,
``modeling/modules/blocks.py`` (``SimpleMLPAdaLN``) and ``modeling/diffusion`` (the DDPM of ``DiffLoss``). The
joint-attention blocks and the final adaptive norm are diffusers' own (``JointTransformerBlock``,
``AdaLayerNormContinuous``), as upstream.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from diffusers.models.attention import JointTransformerBlock
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import MaskedLMOutput
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from dataclasses import dataclass

import numpy as np
from diffusers.models.embeddings import get_timestep_embedding
from transformers.utils import ModelOutput

from ..layers.modulated_transformer import modulate
from .configuration_maskgen import MaskGenKLConfig, MaskGenVQConfig



def check_text_condition(cfg, batch: int, encoder_hidden_states, pooled_projections, aesthetic_score, name: str):
    """The CLIP text condition both MaskGen generators take (checked alike); returns ``pooled_projections`` as
    ``[B, D]`` (the original passes ``[B, 1, D]``)."""
    if (not isinstance(encoder_hidden_states, torch.Tensor) or encoder_hidden_states.ndim != 3
            or encoder_hidden_states.shape[0] != batch or encoder_hidden_states.shape[2] != cfg.text_hidden_size):
        raise ValueError(f"encoder_hidden_states must be [{batch}, L, {cfg.text_hidden_size}] (the CLIP text model's "
                         "penultimate hidden states)")
    if isinstance(pooled_projections, torch.Tensor) and pooled_projections.ndim == 3 and pooled_projections.shape[1] == 1:
        pooled_projections = pooled_projections[:, 0]
    if not isinstance(pooled_projections, torch.Tensor) or tuple(pooled_projections.shape) != (batch, cfg.text_hidden_size):
        raise ValueError(f"pooled_projections must be [{batch}, {cfg.text_hidden_size}] (the projected pooled CLIP text feature)")
    if aesthetic_score is not None:
        if not cfg.micro_condition:
            raise ValueError(f"this {name} has no aesthetic-score micro-conditioning: aesthetic_score must be None")
        score = torch.as_tensor(aesthetic_score)
        if score.ndim > 1 or (score.ndim == 1 and score.shape[0] != batch) or not torch.isfinite(score.float()).all():
            raise ValueError(f"aesthetic_score must be a finite number or a tensor of shape [{batch}]")
    return pooled_projections

def _version(tensor) -> int | None:
    try:
        return tensor._version
    except RuntimeError:  # an inference tensor has no version counter
        return None


@contextlib.contextmanager
def reuse_linear_outputs(linears):
    """Within the context, each of ``linears`` called outside autograd on an input equal (``torch.equal``: same shape,
    dtype, device and values) to its previous input, with its weights unchanged, returns its previous output instead of
    recomputing it: the same tensor the same computation gave, so results are unchanged. For the Linears that read only
    a condition that stays fixed over a sampling loop (text projection, adaptive-norm modulations). The Linears'
    ``forward`` is restored on exit (a forward set on the instance before, e.g. by an offload hook, is kept)."""
    patched = []
    try:
        for linear in linears:
            own = linear.__dict__.get("forward")
            forward = linear.forward
            memo = {}

            def cached(x, forward=forward, linear=linear, memo=memo):
                if torch.is_grad_enabled():
                    return forward(x)
                key = (_version(linear.weight), None if linear.bias is None else _version(linear.bias))
                last = memo.get("input")
                if (last is not None and None not in key and memo["key"] == key and last.shape == x.shape
                        and last.dtype == x.dtype and last.device == x.device and torch.equal(last, x)):
                    return memo["output"]
                out = forward(x)
                memo.update(input=x, key=key, output=out)
                return out

            linear.forward = cached
            patched.append((linear, own))
        yield
    finally:
        for linear, own in patched:
            if own is None:
                del linear.forward
            else:
                linear.forward = own



def modulation_linears(model: nn.Module) -> list[nn.Linear]:
    """The Linears of every adaptive norm in ``model`` (they read only the modulation vector)."""
    return [m.linear for m in model.modules() if isinstance(m, (AdaLayerNormZero, AdaLayerNormContinuous))]


def pooled_condition_width(config) -> int:
    """Width of the pooled condition: the pooled text feature, plus the aesthetic-score embedding when on."""
    return config.text_hidden_size + (config.micro_condition_embed_dim if config.micro_condition else 0)


def joint_blocks(config) -> nn.ModuleList:
    """MaskGen's MM-DiT trunk (VQ and KL alike): diffusers' joint-attention blocks, the last one image-only."""
    width, heads = config.hidden_size, config.num_attention_heads
    return nn.ModuleList(
        JointTransformerBlock(dim=width, num_attention_heads=heads, attention_head_dim=width // heads,
                              context_pre_only=i == config.num_hidden_layers - 1)
        for i in range(config.num_hidden_layers)
    )


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
        width = config.hidden_size
        pooled_in = pooled_condition_width(config)
        self.text_embed_proj = nn.Linear(config.text_hidden_size, width)
        self.cond_pooled_proj = nn.Linear(pooled_in, width)
        self.blocks = joint_blocks(config)
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

    def reusing_condition(self):
        """A context in which the Linears that read only the text condition (``text_embed_proj``,
        ``cond_pooled_proj`` and every block's and the final norm's modulation) reuse their previous output while their
        input is unchanged (:func:`reuse_linear_outputs`): a sampling loop with a fixed prompt computes them once
        instead of every step, with the same results. MaskGenPipeline samples within it."""
        return reuse_linear_outputs([self.text_embed_proj, self.cond_pooled_proj, *modulation_linears(self)])

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
        return check_text_condition(cfg, input_ids.shape[0], encoder_hidden_states, pooled_projections, aesthetic_score,
                                    "MaskGen")


# ------------------------------------------------------------------------------------------------------------------
# MaskGen-KL
# ------------------------------------------------------------------------------------------------------------------


class DiffusionHeadResBlock(nn.Module):
    """MAR's ``ResBlock``: an AdaLN-modulated (shift, scale, gate) two-layer MLP with a residual."""

    def __init__(self, width: int):
        super().__init__()
        self.in_ln = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.in_ln(x), shift, scale))


class DiffusionHeadFinalLayer(nn.Module):
    def __init__(self, width: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiffusionHeadTimeEmbedding(nn.Module):
    """DiT's ``TimestepEmbedder``: [cos, sin] frequencies of the (integer) timestep through a SiLU MLP."""

    def __init__(self, width: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = get_timestep_embedding(t, self.frequency_size, flip_sin_to_cos=True, downscale_freq_shift=0)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class MaskGenKLDiffusionHead(nn.Module):
    """MAR's ``SimpleMLPAdaLN``: ``forward(x [N, C], t [N], c [N, hidden_size]) -> [N, 2C]`` (the predicted noise and
    the learned-range variance interpolation, in [-1, 1])."""

    def __init__(self, config: MaskGenKLConfig):
        super().__init__()
        width, channels = config.diffusion_head_width, config.token_dim
        self.in_channels = channels
        self.time_embed = DiffusionHeadTimeEmbedding(width)
        self.cond_embed = nn.Linear(config.hidden_size, width)
        self.input_proj = nn.Linear(channels, width)
        self.res_blocks = nn.ModuleList(DiffusionHeadResBlock(width) for _ in range(config.diffusion_head_depth))
        self.final_layer = DiffusionHeadFinalLayer(width, 2 * channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(x)
        y = self.time_embed(t) + self.cond_embed(c)
        for block in self.res_blocks:
            x = block(x, y)
        return self.final_layer(x, y)

    def forward_with_guidance(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, guidance_scale) -> torch.Tensor:
        """MAR's ``forward_with_cfg``: rows ``[cond; uncond]`` denoise the cond half's ``x``; the noise of both halves
        becomes ``uncond + s (cond - uncond)``, the variance values stay each row's own."""
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half]), t, c)
        eps, rest = out[:, : self.in_channels], out[:, self.in_channels :]
        cond_eps, uncond_eps = eps.chunk(2)
        guided = uncond_eps + guidance_scale * (cond_eps - uncond_eps)
        return torch.cat([torch.cat([guided, guided]), rest], dim=1)


def _cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    alpha_bar = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    return np.array([min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
                     for i in range(num_timesteps)])


def respaced_timesteps(num_timesteps: int, num_steps: int) -> list[int]:
    """The training timesteps kept by ``space_timesteps(num_timesteps, str(num_steps))`` (improved-DDPM's even
    striding with its float accumulation and rounding), ascending."""
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"the diffusion steps must lie in [1, {num_timesteps}], got {num_steps}")
    stride = 1 if num_steps <= 1 else (num_timesteps - 1) / (num_steps - 1)
    taken, index = [], 0.0
    for _ in range(num_steps):
        taken.append(round(index))
        index += stride
    return sorted(set(taken))


class DDPMTokenSampler:
    """The reverse process MaskGen-KL samples with (``DiffLoss.gen_diffusion.p_sample_loop``): the cosine-schedule
    DDPM of ``num_train_timesteps`` steps respaced to ``num_steps``, epsilon prediction, learned-range variance,
    no clipping, the noise scaled by ``temperature``. Its tables are float64 and read as float32, as upstream."""

    def __init__(self, num_train_timesteps: int, num_steps: int):
        base = np.cumprod(1.0 - _cosine_betas(num_train_timesteps), axis=0)
        self.timestep_map = respaced_timesteps(num_train_timesteps, num_steps)
        betas, last = [], 1.0
        for i in self.timestep_map:
            betas.append(1 - base[i] / last)
            last = base[i]
        betas = np.array(betas, dtype=np.float64)
        cumprod = np.cumprod(1.0 - betas, axis=0)
        prev = np.append(1.0, cumprod[:-1])
        variance = betas * (1.0 - prev) / (1.0 - cumprod)
        clipped = np.log(np.append(variance[1], variance[1:])) if len(variance) > 1 else np.zeros(1)
        tables = {
            "sqrt_alphas_cumprod": np.sqrt(cumprod),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - cumprod),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / cumprod),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / cumprod - 1),
            "posterior_log_variance_clipped": clipped,
            "log_betas": np.log(betas),
            "posterior_mean_coef1": betas * np.sqrt(prev) / (1.0 - cumprod),
            "posterior_mean_coef2": (1.0 - prev) * np.sqrt(1.0 - betas) / (1.0 - cumprod),
        }
        self.tables = {k: torch.from_numpy(v).float() for k, v in tables.items()}
        self.num_steps = len(self.timestep_map)

    def step(self, model_output: torch.Tensor, x: torch.Tensor, i: int, noise: torch.Tensor | None,
             temperature: float) -> torch.Tensor:
        """x_{i-1} from x_i and the head's output ``[N, 2C]`` (``noise`` unused at i = 0)."""
        tab = {k: v[i].to(x.device) for k, v in self.tables.items()}
        eps, values = model_output.split(x.shape[1], dim=1)
        frac = (values + 1) / 2
        log_variance = frac * tab["log_betas"] + (1 - frac) * tab["posterior_log_variance_clipped"]
        x_start = tab["sqrt_recip_alphas_cumprod"] * x - tab["sqrt_recipm1_alphas_cumprod"] * eps
        mean = tab["posterior_mean_coef1"] * x_start + tab["posterior_mean_coef2"] * x
        if i == 0:
            return mean
        return mean + torch.exp(0.5 * log_variance) * noise * temperature

    def sample(self, head: MaskGenKLDiffusionHead, condition: torch.Tensor, noise_fn, temperature: float = 1.0,
               guidance_scale=None) -> torch.Tensor:
        """Token latents ``[N, C]`` for the conditions ``[N, D]`` (``[2N, D]`` = ``[cond; uncond]`` with
        ``guidance_scale``). ``noise_fn(rows)`` draws ``[rows, C]`` standard normal noise: first the start
        ``[N, C]``, then one ``[len(condition), C]`` per step, the last included (upstream draws noise for the
        unconditional half too and discards its rows, and draws at t = 0 without using it), in upstream's order."""
        guided = guidance_scale is not None
        rows = condition.shape[0] // 2 if guided else condition.shape[0]
        x = noise_fn(rows).float()
        for i in reversed(range(self.num_steps)):
            t = torch.full((condition.shape[0],), self.timestep_map[i], dtype=torch.long, device=condition.device)
            xin = (torch.cat([x, x]) if guided else x).to(condition.dtype)
            out = head.forward_with_guidance(xin, t, condition, guidance_scale) if guided else head(xin, t, condition)
            noise = noise_fn(condition.shape[0])[:rows].float()  # drawn at i = 0 too (and unused), as upstream
            x = self.step(out[:rows].float(), x, i, noise, temperature)
        return x


def _approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """improved-DDPM's decoder log-likelihood (nats) of ``x`` in bins of 2/255 (the t = 0 term of the bound)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log((cdf_plus - cdf_min).clamp(min=1e-12))))


def micro_condition_embedding(score: torch.Tensor, dim: int) -> torch.Tensor:
    """MaskGen-KL's aesthetic-score embedding: interleaved ``[sin, cos]`` of ``score * 100`` at wavelengths
    ``10000^(-2i/dim)`` (``MaskGen_KL.get_sinusoidal_encoding``; MaskGen-VQ's differs)."""
    x = (score.float() * 100)[:, None]
    wavelengths = torch.pow(10000, -torch.arange(0, dim, 2, dtype=torch.float, device=score.device) / dim)
    arg = x * wavelengths
    out = torch.zeros(score.shape[0], dim, device=score.device)
    out[:, 0::2] = torch.sin(arg)
    out[:, 1::2] = torch.cos(arg)
    return out


@dataclass
class MaskGenKLOutput(ModelOutput):
    """``last_hidden_state`` ``[B, n, hidden_size]``: each token's condition for the diffusion head (the MM-DiT
    output plus the diffusion position embedding); ``loss``: the diffusion loss on the masked tokens (with
    ``labels``)."""

    loss: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class MaskGenKLPreTrainedModel(PreTrainedModel):
    config_class = MaskGenKLConfig
    base_model_prefix = "maskgen_kl"
    main_input_name = "latents"
    supports_gradient_checkpointing = False
    _no_split_modules = ["JointTransformerBlock"]
    _can_record_outputs = {"hidden_states": OutputRecorder(JointTransformerBlock, index=1)}

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):  # xavier as MAR (the JAX ViT's)
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        if isinstance(module, DiffusionHeadTimeEmbedding):
            init.normal_(module.mlp[0].weight, std=std)
            init.normal_(module.mlp[2].weight, std=std)
        elif isinstance(module, (DiffusionHeadResBlock, DiffusionHeadFinalLayer)):
            init.zeros_(module.adaLN_modulation[-1].weight)
            init.zeros_(module.adaLN_modulation[-1].bias)
            if isinstance(module, DiffusionHeadFinalLayer):
                init.zeros_(module.linear.weight)
                init.zeros_(module.linear.bias)
        elif isinstance(module, MaskGenKLTransformer):
            for param in (module.mask_token, module.decoder_pos_embed_learned, module.diffusion_pos_embed_learned):
                init.normal_(param, std=std)


class MaskGenKLTransformer(MaskGenKLPreTrainedModel):
    """``forward(latents [B, n, token_dim], mask [B, n], encoder_hidden_states [B, L, text_hidden_size],
    pooled_projections [B, text_hidden_size], aesthetic_score)`` -> ``last_hidden_state`` ``[B, n, hidden_size]``,
    the diffusion head's per-token condition. ``latents`` are the tokenizer's latents times ``scale_factor``;
    ``mask`` (True/1 = to generate) replaces them by the mask token. :meth:`sample_latents` denoises tokens from
    those conditions (``diffusion_head`` + :class:`DDPMTokenSampler`)."""

    def __init__(self, config: MaskGenKLConfig):
        super().__init__(config)
        width = config.hidden_size
        pooled_in = pooled_condition_width(config)
        self.text_emb = nn.Linear(config.text_hidden_size, width)
        self.text_pooled_emb = nn.Linear(pooled_in, width)
        self.decoder_blocks = joint_blocks(config)
        self.decoder_norm = AdaLayerNormContinuous(width, width, elementwise_affine=False, eps=1e-6)
        self.z_proj = nn.Linear(config.token_dim, width)
        self.z_proj_ln = nn.LayerNorm(width, eps=1e-6)
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, config.num_tokens, width))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.diffusion_pos_embed_learned = nn.Parameter(torch.zeros(1, config.num_tokens, width))
        self.diffusion_head = MaskGenKLDiffusionHead(config)
        self._samplers: dict[int, DDPMTokenSampler] = {}
        self.post_init()

    def get_input_embeddings(self):
        return self.z_proj

    def set_input_embeddings(self, value):
        self.z_proj = value

    def get_output_embeddings(self):
        return None  # continuous tokens: no vocabulary

    def resize_token_embeddings(self, *args, **kwargs):
        raise ValueError("MaskGen-KL generates continuous tokens: it has no vocabulary to resize")

    def condition(self, pooled_projections: torch.Tensor, aesthetic_score) -> torch.Tensor:
        if self.config.micro_condition:
            score = torch.as_tensor(aesthetic_score, dtype=torch.float32, device=pooled_projections.device)
            score = score.expand(pooled_projections.shape[0]) if score.ndim == 0 else score
            emb = micro_condition_embedding(score, self.config.micro_condition_embed_dim).to(pooled_projections.dtype)
            pooled_projections = torch.cat([pooled_projections, emb], dim=-1)
        return self.text_pooled_emb(pooled_projections)

    def project_condition(self, encoder_hidden_states: torch.Tensor, pooled_projections: torch.Tensor,
                          aesthetic_score=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(text stream [B, L, hidden_size], modulation [B, hidden_size])``: the projected text features and pooled
        feature (with the aesthetic-score embedding). The pipeline projects each prompt set once, as upstream."""
        if aesthetic_score is None:
            aesthetic_score = self.config.sampling_defaults["aesthetic_score"]
        return (self.text_emb(encoder_hidden_states.to(self.dtype)),
                self.condition(pooled_projections.to(self.dtype), aesthetic_score))

    def reusing_condition(self):
        """A context in which every block's and the final norm's modulation Linear reuses its previous output while
        its input (the modulation vector of :meth:`project_condition`, fixed over a sampling run) is unchanged
        (:func:`reuse_linear_outputs`): computed once instead of every round, with the same results.
        MaskGenKLPipeline samples within it."""
        return reuse_linear_outputs(modulation_linears(self))

    @capture_outputs
    def forward(self, latents: torch.Tensor, mask: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                pooled_projections: torch.Tensor | None = None, aesthetic_score: float | torch.Tensor | None = None,
                labels: torch.Tensor | None = None, projected_condition: tuple[torch.Tensor, torch.Tensor] | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None) -> MaskGenKLOutput | tuple:
        """``aesthetic_score`` (a number or ``[B]``) defaults to the released sampling value. ``projected_condition``:
        :meth:`project_condition`'s output instead of the three text inputs. ``labels``: the clean (scaled) latents
        ``[B, n, token_dim]``; the loss is MAR's diffusion loss over the masked tokens (:meth:`diffusion_loss`; its
        random timesteps and noise come from a fixed seed in eval mode)."""
        if projected_condition is not None:
            if encoder_hidden_states is not None or pooled_projections is not None or aesthetic_score is not None:
                raise ValueError("pass either projected_condition or encoder_hidden_states/pooled_projections/aesthetic_score")
            mask = self.check_latents(latents, mask)
            text, temb = projected_condition
            batch = latents.shape[0]
            if (not isinstance(text, torch.Tensor) or text.ndim != 3 or text.shape[0] != batch or text.shape[2] != self.config.hidden_size
                    or not isinstance(temb, torch.Tensor) or tuple(temb.shape) != (batch, self.config.hidden_size)):
                raise ValueError(f"projected_condition must be (text [{batch}, L, {self.config.hidden_size}], modulation "
                                 f"[{batch}, {self.config.hidden_size}]) from project_condition()")
        else:
            mask, pooled_projections = self.check_inputs(latents, mask, encoder_hidden_states, pooled_projections, aesthetic_score)
            text, temb = self.project_condition(encoder_hidden_states, pooled_projections, aesthetic_score)
        x = self.z_proj_ln(self.z_proj(latents.to(self.dtype)))
        x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        x = x + self.decoder_pos_embed_learned[:, : x.shape[1]]
        for block in self.decoder_blocks:
            text, x = block(x, text, temb)
        z = self.decoder_norm(x, temb) + self.diffusion_pos_embed_learned[:, : x.shape[1]]
        loss = None
        if labels is not None:
            # in eval mode the loss draws its timesteps and noise from a fixed seed: a reproducible validation loss
            generator = None if self.training else torch.Generator(device=z.device).manual_seed(0)
            loss = self.diffusion_loss(z, labels, mask, generator)
        return MaskGenKLOutput(loss=loss, last_hidden_state=z)

    def sampler(self, num_steps: int) -> DDPMTokenSampler:
        if num_steps not in self._samplers:
            self._samplers[num_steps] = DDPMTokenSampler(self.config.num_train_timesteps, num_steps)
        return self._samplers[num_steps]

    def diffusion_loss(self, z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, generator=None) -> torch.Tensor:
        """MAR's ``DiffLoss`` training loss on the masked tokens: each token repeated ``diffusion_batch_mul`` times at
        uniform random timesteps, :meth:`diffusion_head_losses` averaged over the masked ones. (Upstream's
        ``MaskGen_KL.forward_loss`` passes ``DiffLoss.forward`` an argument it does not take; this is the loss
        ``DiffLoss.forward`` computes.)"""
        cfg = self.config
        if not isinstance(target, torch.Tensor) or tuple(target.shape) != (*z.shape[:2], cfg.token_dim):
            raise ValueError(f"labels must be the clean scaled latents [B, n, {cfg.token_dim}]")
        mul = cfg.diffusion_batch_mul
        target = target.reshape(-1, cfg.token_dim).to(z.dtype).repeat(mul, 1)
        cond = z.reshape(-1, z.shape[-1]).repeat(mul, 1)
        weight = mask.reshape(-1).to(z.dtype).repeat(mul)
        t = torch.randint(0, cfg.num_train_timesteps, (target.shape[0],), device=z.device, generator=generator)
        # float32 draws whatever the model's dtype (upstream's randn_like of its float32 latents): the same noise in
        # bf16/fp16 or a float64 copy
        noise = torch.randn(target.shape, device=z.device, generator=generator).to(target.dtype)
        loss = self.diffusion_head_losses(target, cond, t, noise)
        return (loss * weight).sum() / weight.sum().clamp(min=1)

    def diffusion_head_losses(self, target: torch.Tensor, condition: torch.Tensor, t: torch.Tensor,
                              noise: torch.Tensor) -> torch.Tensor:
        """Per-row ``GaussianDiffusion.training_losses`` of the un-respaced process (loss type MSE, learned-range
        variance): noise MSE plus the variational bound in bits with the mean frozen (the discretized Gaussian
        decoder NLL at t = 0, as upstream)."""
        tables = self.sampler(self.config.num_train_timesteps).tables
        tab = {k: v.to(target.device)[t][:, None] for k, v in tables.items()}
        x_t = tab["sqrt_alphas_cumprod"] * target + tab["sqrt_one_minus_alphas_cumprod"] * noise
        out = self.diffusion_head(x_t, t, condition)
        eps, values = out.split(target.shape[1], dim=1)
        mse = ((noise - eps) ** 2).mean(dim=1)
        x_start = tab["sqrt_recip_alphas_cumprod"] * x_t - tab["sqrt_recipm1_alphas_cumprod"] * eps.detach()
        mean = tab["posterior_mean_coef1"] * x_start + tab["posterior_mean_coef2"] * x_t
        true_mean = tab["posterior_mean_coef1"] * target + tab["posterior_mean_coef2"] * x_t
        true_logvar = tab["posterior_log_variance_clipped"]
        frac = (values + 1) / 2
        logvar = frac * tab["log_betas"] + (1 - frac) * true_logvar
        kl = 0.5 * (-1.0 + logvar - true_logvar + torch.exp(true_logvar - logvar) + (true_mean - mean) ** 2 * torch.exp(-logvar))
        kl = kl.mean(dim=1) / np.log(2.0)
        nll = -discretized_gaussian_log_likelihood(target, mean, 0.5 * logvar).mean(dim=1) / np.log(2.0)
        return mse + torch.where(t == 0, nll, kl)

    @torch.no_grad()
    def sample_latents(self, condition: torch.Tensor, noise_fn, num_diffusion_steps: int | None = None,
                       temperature: float = 1.0, guidance_scale=None) -> torch.Tensor:
        """Denoise token latents ``[N, token_dim]`` for the per-token conditions ``[N, hidden_size]`` (rows
        ``[cond; uncond]`` with ``guidance_scale``) with the respaced DDPM (``DiffLoss.sample``)."""
        steps = self.config.sampling_defaults["num_diffusion_steps"] if num_diffusion_steps is None else num_diffusion_steps
        return self.sampler(int(steps)).sample(self.diffusion_head, condition, noise_fn, temperature, guidance_scale)

    def check_latents(self, latents, mask) -> torch.Tensor:
        cfg = self.config
        if (not isinstance(latents, torch.Tensor) or not latents.is_floating_point() or latents.ndim != 3
                or latents.shape[2] != cfg.token_dim or not 1 <= latents.shape[1] <= cfg.num_tokens):
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents must be a float tensor [B, n, {cfg.token_dim}] with n <= {cfg.num_tokens}, got {got}")
        batch = latents.shape[0]
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(latents.shape[:2]):
            raise ValueError(f"mask must be a tensor [{batch}, {latents.shape[1]}] (True or 1 = a masked token)")
        if mask.is_floating_point() and not ((mask == 0) | (mask == 1)).all():
            raise ValueError("a float mask must hold only 0 and 1")
        return mask.bool()

    def check_inputs(self, latents, mask, encoder_hidden_states, pooled_projections, aesthetic_score):
        cfg = self.config
        mask = self.check_latents(latents, mask)
        return mask, check_text_condition(cfg, latents.shape[0], encoder_hidden_states, pooled_projections,
                                          aesthetic_score, "MaskGen-KL")
