"""FlexTok: ordered 1D FSQ tokens of flexible length over a VAE latent, decoded by a rectified flow.

Ported from apple/ml-flextok (flextok/flextok_wrapper.py and the modules its hydra config assembles). The
original packs every image of a batch into one FlexAttention sequence; here each image is a batch row with
an additive mask (the encoder's prefix-LM mask: patches see patches, register i sees the patches and
registers 0..i), which computes the same function. The VAE is a diffusers ``AutoencoderKL`` component.

Decoding (:meth:`FlexTokModel.decode`) integrates the flow from pure noise at t = 1 to t = 0 with Euler
steps, classifier-free guidance against the decoder's null condition and, by default, adaptive projected
guidance (APG, arXiv 2410.02416), as ``MinRFPipeline`` does; the noise of image i is drawn from ``generator``
before that of image i + 1, so a seeded decode equals the original's.
"""

from __future__ import annotations

import inspect
import math

import torch
from diffusers import AutoencoderKL
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..base import VisualTokenizerEncoderOutput, VisualTokenizerMixin, VisualTokenizerOutput
from ..layers.modulated_transformer import Fp32LayerNorm, ModulatedTransformerBlock, QKNormAttention, modulate
from ..quantizers import FSQ
from .configuration_flextok import FlexTokConfig


def sincos_position_embedding_2d(height: int, width: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """MoCo-v3 2D sine-cosine embedding ``[1, dim, height, width]`` (the original's ``build_2d_sincos_posemb``)."""
    if dim % 4:
        raise ValueError(f"a 2D sin-cos position embedding needs a width divisible by 4, got {dim}")
    grid_w, grid_h = torch.meshgrid(torch.arange(width, dtype=torch.float32), torch.arange(height, dtype=torch.float32),
                                    indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    out_w = grid_w.reshape(-1)[:, None] * omega[None]
    out_h = grid_h.reshape(-1)[:, None] * omega[None]
    emb = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)  # [(h w), dim]
    return emb.reshape(height, width, dim).permute(2, 0, 1)[None]


def patchify(latents: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H/p, W/p, p*p*C]`` (patch rows, patch columns, channels: the original's order)."""
    batch, channels, height, width = latents.shape
    x = latents.permute(0, 2, 3, 1).reshape(batch, height // patch, patch, width // patch, patch, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height // patch, width // patch, patch * patch * channels)


def unpatchify(patches: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, h, w, p*p*C]`` -> ``[B, C, h*p, w*p]``."""
    batch, rows, cols, dim = patches.shape
    channels = dim // (patch * patch)
    x = patches.reshape(batch, rows, cols, patch, patch, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, rows * patch, cols * patch, channels).permute(0, 3, 1, 2)


def timestep_embedding(t: torch.Tensor, dim: int, max_timestep: float, max_period: float) -> torch.Tensor:
    """DiT's sinusoidal embedding of ``t`` ``[B]`` (cos first), frequencies scaled by ``1000 / max_timestep``."""
    half = dim // 2
    freqs = (1000.0 / max_timestep) * torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def _mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean ``[L, L]`` (True: may attend) -> additive ``[1, 1, L, L]`` float mask."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)[None, None]


def prefix_lm_mask(prefix: int, length: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The first ``prefix`` positions attend to each other; every later one to the prefix and causally."""
    index = torch.arange(length, device=device)
    allowed = (index[None, :] <= index[:, None]) | (index[None, :] < prefix)
    return _mask(allowed, dtype)


def adaptive_projected_guidance(cond: torch.Tensor, uncond: torch.Tensor, scale: float, running: torch.Tensor | None,
                                momentum: float, eta: float, norm_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """APG (Sadat et al. 2024) per image ``[B, C, H, W]``: the momentum-averaged guidance direction, its norm
    capped at ``norm_threshold``, keeps its component orthogonal to ``cond`` (plus ``eta`` times the parallel one).
    Returns (guided prediction, new running average)."""
    diff = cond - uncond
    running = diff if running is None else diff + momentum * running
    diff = running
    dims = (1, 2, 3)
    if norm_threshold > 0:
        norm = diff.norm(p=2, dim=dims, keepdim=True)
        diff = diff * torch.minimum(torch.ones_like(diff), norm_threshold / norm)
    unit = F.normalize(cond.double(), dim=dims)
    diff64 = diff.double()
    parallel = (diff64 * unit).sum(dim=dims, keepdim=True) * unit
    orthogonal = (diff64 - parallel).to(diff.dtype)
    update = orthogonal + eta * parallel.to(diff.dtype)
    return cond + (scale - 1) * update, running


class FlexTokPreTrainedModel(PreTrainedModel):
    config_class = FlexTokConfig
    base_model_prefix = "flextok"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ModulatedTransformerBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False  # the encoder's prefix-LM mask is an additive float mask
    _supports_flex_attn = False
    _supports_attention_backend = True
    # The hidden states and attentions of a FlexTok tokenizer are its encoder's (what a token is computed from);
    # the decoder is a velocity model run num_inference_steps times (twice with guidance) inside the sampler.
    _can_record_outputs = {
        "hidden_states": OutputRecorder(ModulatedTransformerBlock, layer_name="encoder"),
        "attentions": OutputRecorder(QKNormAttention, index=1, layer_name="encoder"),
    }

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, FlexTokEncoder):
            init.copy_(module.position_embedding, sincos_position_embedding_2d(
                module.grid_size, module.grid_size, module.position_embedding.shape[1]))
            init.trunc_normal_(module.registers, std=std)
        elif isinstance(module, FlexTokDecoder):
            init.copy_(module.position_embedding, sincos_position_embedding_2d(
                module.grid_size, module.grid_size, module.position_embedding.shape[1]))
            for param in (module.register_position_embedding, module.mask_token, module.null_condition):
                init.trunc_normal_(param, std=std)
            init.zeros_(module.head_modulation.weight)
            init.zeros_(module.head_modulation.bias)
        elif isinstance(module, ModulatedTransformerBlock) and module.num_segments:  # adaLN-zero
            init.zeros_(module.adaln_modulation.weight)
            init.zeros_(module.adaln_modulation.bias)
        elif isinstance(module, nn.Linear) and not _in_vae(module):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)


def _in_vae(module: nn.Module) -> bool:
    return getattr(module, "_vistok_in_vae", False)


class FlexTokEncoder(nn.Module):
    """VAE latent -> ``num_tokens`` register features ``[B, N, token_dim]`` (before FSQ)."""

    def __init__(self, config: FlexTokConfig):
        super().__init__()
        width = config.encoder_hidden_size
        self.patch_size = config.patch_size
        self.grid_size = config.grid_size
        self.patch_embed = nn.Linear(config.latent_channels * config.patch_size**2, width)
        # the original's sin-cos table is a (frozen) parameter of its checkpoint
        self.position_embedding = nn.Parameter(torch.zeros(1, width, config.grid_size, config.grid_size), requires_grad=False)
        self.registers = nn.Parameter(torch.zeros(config.num_tokens, width))
        scaling = 8.0 / config.encoder_head_dim if config.mup_attention_scale else None
        self.layers = nn.ModuleList(
            ModulatedTransformerBlock(config, width, config.encoder_head_dim, config.mlp_ratio, config.qk_norm, scaling,
                                      config.attention_bias, config.mlp_bias, 0, config.layer_norm_eps)
            for _ in range(config.encoder_num_layers)
        )
        self.head_norm = Fp32LayerNorm(width, config.layer_norm_eps) if config.encoder_head_norm else nn.Identity()
        self.to_latents = nn.Linear(width, config.token_dim)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(patchify(latents, self.patch_size))
        rows, cols = patches.shape[1:3]
        patches = patches + self.position_embedding[:, :, :rows, :cols].permute(0, 2, 3, 1)
        patches = patches.flatten(1, 2)
        batch, num_patches = patches.shape[:2]
        hidden = torch.cat([patches, self.registers.to(patches.dtype).expand(batch, -1, -1)], dim=1)
        mask = prefix_lm_mask(num_patches, hidden.shape[1], hidden.dtype, hidden.device)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return self.to_latents(self.head_norm(hidden[:, num_patches:]))


class FlexTokDecoder(nn.Module):
    """The rectified-flow velocity model: noised VAE latent ``[B, C, H, W]``, time ``[B]`` and register tokens
    ``[B, N, D]`` (from :meth:`embed_registers`) -> velocity ``[B, C, H, W]``. Patches and registers attend to
    each other freely; the time embedding modulates them (adaLN-zero) with separate parameters."""

    def __init__(self, config: FlexTokConfig):
        super().__init__()
        width = config.decoder_hidden_size
        self.config = config
        self.patch_size = config.patch_size
        self.grid_size = config.grid_size
        self.input_norm = Fp32LayerNorm(config.token_dim, config.layer_norm_eps) if config.decoder_input_norm else nn.Identity()
        self.from_latents = nn.Linear(config.token_dim, width)
        self.register_position_embedding = nn.Parameter(torch.zeros(config.num_tokens, width))
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.null_condition = nn.Parameter(torch.zeros(width))
        self.patch_embed = nn.Linear(config.latent_channels * config.patch_size**2, width)
        self.position_embedding = nn.Parameter(torch.zeros(1, width, config.grid_size, config.grid_size), requires_grad=False)
        self.time_embed = nn.Sequential(nn.Linear(config.timestep_frequency_size, width), nn.SiLU(), nn.Linear(width, width))
        scaling = 8.0 / config.decoder_head_dim if config.mup_attention_scale else None
        self.layers = nn.ModuleList(
            ModulatedTransformerBlock(config, width, config.decoder_head_dim, config.mlp_ratio, config.qk_norm, scaling,
                                      config.attention_bias, config.mlp_bias, 2, config.layer_norm_eps)
            for _ in range(config.decoder_num_layers)
        )
        self.head_norm = Fp32LayerNorm(width, config.layer_norm_eps)
        self.head_modulation = nn.Linear(width, 2 * width)
        self.head = nn.Linear(width, config.latent_channels * config.patch_size**2)

    def embed_registers(self, codes: torch.Tensor, keep: torch.Tensor, unconditional: bool = False) -> torch.Tensor:
        """FSQ codes ``[B, N, token_dim]`` -> register tokens; positions ``>= keep[b]`` become the mask token
        (nested dropout); ``unconditional``: the null condition instead (the guidance's second pass)."""
        batch, length = codes.shape[:2]
        if unconditional:
            null = self.null_condition.to(codes.dtype)
            if self.config.null_condition_single_token:
                return null.expand(batch, 1, -1)
            return null.expand(batch, length, -1)
        registers = self.from_latents(self.input_norm(codes))
        position = self.register_position_embedding[:length].to(registers.dtype)
        kept = (torch.arange(length, device=codes.device)[None, :] < keep[:, None])[..., None]
        if self.config.mask_token_posemb:
            return torch.where(kept, registers, self.mask_token.to(registers.dtype)) + position
        return torch.where(kept, registers + position, self.mask_token.to(registers.dtype))

    def forward(self, noised: torch.Tensor, timesteps: torch.Tensor, registers: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        patches = self.patch_embed(patchify(noised, self.patch_size))
        rows, cols = patches.shape[1:3]
        patches = (patches + self.position_embedding[:, :, :rows, :cols].permute(0, 2, 3, 1)).flatten(1, 2)
        num_patches = patches.shape[1]
        condition = self.time_embed(timestep_embedding(timesteps, cfg.timestep_frequency_size, cfg.timestep_max,
                                                       cfg.timestep_max_period).to(patches.dtype))
        hidden = torch.cat([patches, registers.to(patches.dtype)], dim=1)
        segments = (num_patches, registers.shape[1])
        for layer in self.layers:
            hidden = layer(hidden, None, condition, segments)
        shift, scale = self.head_modulation(F.silu(condition))[:, None].chunk(2, dim=-1)
        out = self.head(modulate(self.head_norm(hidden[:, :num_patches]), shift, scale))
        return unpatchify(out.reshape(out.shape[0], rows, cols, -1), self.patch_size)


class FlexTokModel(VisualTokenizerMixin, FlexTokPreTrainedModel):
    """FlexTok tokenizer: ``encode(pixel_values, num_tokens=k)`` gives the first k of ``num_tokens`` ordered FSQ
    tokens (the encoder's causal registers make any prefix the tokens of a shorter encoding), and ``decode`` of
    any prefix runs the flow decoder (``num_inference_steps``, ``guidance_scale``, ``use_apg``, ``apg_*``,
    ``generator``; defaults from the config, the released settings).

    The VAE encodes with its posterior mode by default (``sample_posterior=True`` samples it with ``generator``).
    """

    def __init__(self, config: FlexTokConfig):
        super().__init__(config)
        self.vae = AutoencoderKL(**_vae_kwargs(config.vae_config))
        for module in self.vae.modules():
            module._vistok_in_vae = True
        self.encoder = FlexTokEncoder(config)
        self.quantizer = FSQ(config.fsq_levels)
        self.decoder = FlexTokDecoder(config)
        self.post_init()

    # -- the mixin's hooks --------------------------------------------------------------------
    def _encode(self, pixel_values, sample_posterior: bool = False, generator: torch.Generator | None = None):
        posterior = self.vae.encode(pixel_values).latent_dist
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        q = self.quantizer(self.encoder(latents * self.config.vae_scaling_factor).float())
        return VisualTokenizerEncoderOutput(token_ids=q.indices, latents=q.quantized, quantizer_loss=q.loss)

    def _token_ids_to_latents(self, token_ids):
        return self.quantizer.indices_to_codes(token_ids)

    def _decode_latents(self, latents, **kwargs):
        return self.decode_vae(self.generate_vae_latents(latents, **kwargs))

    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: torch.Tensor, num_tokens: int | None = None,
                generator: torch.Generator | list[torch.Generator] | None = None, flow_noise: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None, **kwargs):
        """Reconstruct ``pixel_values`` through the first ``num_tokens`` tokens (the flow's starting ``flow_noise``,
        or noise drawn from ``generator``).
        FlexTok trains with a rectified-flow objective, not a reconstruction loss: a training-mode forward with
        gradients is refused rather than returning a reconstruction no gradient reaches."""
        if self.training and torch.is_grad_enabled():
            raise ValueError(
                "FlexTok's decoder is a rectified flow trained with a flow-matching objective, which vistok's "
                "reconstruction-based tokenizer training does not implement (the original release has no training "
                "code either); use a converted FlexTok to tokenize, evaluate, and train generators on its tokens")
        enc = self.encode(pixel_values, num_tokens=num_tokens, **kwargs)
        # (capture_outputs adds the encoder's hidden states / attentions and applies return_dict)
        return VisualTokenizerOutput(reconstruction=self._decode_latents(enc.latents, generator=generator, flow_noise=flow_noise),
                                     **{k: v for k, v in enc.items()})

    # -- decoding options reach the flow ------------------------------------------------------
    def decode(self, token_ids: torch.LongTensor, generator: torch.Generator | list[torch.Generator] | None = None,
               **kwargs) -> torch.Tensor:
        """Pixels from ``token_ids [B, k]`` (any k in 1..num_tokens); the flow's noise comes from ``generator``;
        ``kwargs``: the other settings of :meth:`generate_vae_latents`."""
        self.check_token_ids(token_ids)
        return self._decode_latents(self._token_ids_to_latents(token_ids), generator=generator, **kwargs)

    def decode_latents(self, latents: torch.Tensor, **kwargs) -> torch.Tensor:
        """Pixels from the FSQ codes ``[B, k, token_dim]`` that ``encode`` returned; ``kwargs`` as for ``decode``."""
        self.check_latents(latents)
        return self._decode_latents(latents.to(self.dtype), **kwargs)

    @torch.no_grad()
    def generate_vae_latents(self, codes: torch.Tensor, num_inference_steps: int | None = None,
                             guidance_scale: float | None = None, use_apg: bool | None = None,
                             apg_momentum: float | None = None, apg_eta: float | None = None,
                             apg_norm_threshold: float | None = None,
                             generator: torch.Generator | list[torch.Generator] | None = None,
                             flow_noise: torch.Tensor | None = None) -> torch.Tensor:
        """Integrate the flow from noise (t = 1) to a VAE latent (t = 0) conditioned on ``codes [B, k, token_dim]``.

        ``guidance_scale`` 1 runs no unconditional pass; otherwise classifier-free guidance, or APG when
        ``use_apg`` (momentum, eta and norm threshold as in the original's ``normalized_guidance``). Noise
        ``[1, C, h, w]`` per image from ``generator`` (one, or one per image), image 0 first — or the starting
        ``flow_noise [B, C, h, w]`` given (as diffusers pipelines take ``latents``), which makes decoding deterministic.
        """
        cfg = self.config
        steps = cfg.num_inference_steps if num_inference_steps is None else num_inference_steps
        scale = cfg.guidance_scale if guidance_scale is None else guidance_scale
        apg = cfg.use_apg if use_apg is None else use_apg
        momentum = cfg.apg_momentum if apg_momentum is None else apg_momentum
        eta = cfg.apg_eta if apg_eta is None else apg_eta
        threshold = cfg.apg_norm_threshold if apg_norm_threshold is None else apg_norm_threshold
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {steps!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ValueError(f"guidance_scale must be a finite number, got {scale!r}")
        batch, keep = codes.shape[:2]
        if isinstance(generator, (list, tuple)) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} images: pass one, or one per image")
        device = codes.device
        full = torch.zeros(batch, cfg.num_tokens, codes.shape[-1], dtype=codes.dtype, device=device)
        full[:, :keep] = codes
        keep_k = torch.full((batch,), keep, device=device)
        side = cfg.latent_size
        if flow_noise is None:
            flow_noise = torch.cat([torch.randn((1, cfg.latent_channels, side, side), device=device,
                                           generator=generator[i] if isinstance(generator, (list, tuple)) else generator)
                               for i in range(batch)])
        elif tuple(flow_noise.shape) != (batch, cfg.latent_channels, side, side):
            raise ValueError(f"flow_noise must have shape {(batch, cfg.latent_channels, side, side)} (one VAE latent "
                             f"per image), got {tuple(flow_noise.shape)}")
        x = flow_noise.to(device=device, dtype=self.dtype)
        registers = self.decoder.embed_registers(full.to(self.dtype), keep_k)
        guided = scale != 1.0
        if guided:
            uncond = self.decoder.embed_registers(full.to(self.dtype), keep_k, unconditional=True)
            joint = uncond.shape[1] == registers.shape[1]
        running, dt = None, 1.0 / steps
        for i in range(steps, 0, -1):
            t = torch.full((batch,), i / steps, device=device)
            if not guided:
                velocity = self.decoder(x, t, registers)
            else:
                if joint:  # both passes in one batch
                    cond_v, uncond_v = self.decoder(torch.cat([x, x]), torch.cat([t, t]),
                                                    torch.cat([registers, uncond])).chunk(2)
                else:
                    cond_v, uncond_v = self.decoder(x, t, registers), self.decoder(x, t, uncond)
                if apg:
                    velocity, running = adaptive_projected_guidance(cond_v, uncond_v, scale, running, momentum, eta, threshold)
                else:
                    velocity = uncond_v + scale * (cond_v - uncond_v)
            x = x - dt * velocity
        return x

    def decode_vae(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latents (scaled, as the flow produces them) -> pixels."""
        return self.vae.decode(latents / self.config.vae_scaling_factor).sample


def _vae_kwargs(vae_config: dict) -> dict:
    """The ``AutoencoderKL.__init__`` arguments of a diffusers config dict (``_class_name`` etc. dropped)."""
    accepted = set(inspect.signature(AutoencoderKL.__init__).parameters) - {"self"}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vae_config.items() if k in accepted}
