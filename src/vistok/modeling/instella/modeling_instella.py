"""Instella-T2I's binary autoencoder: 1024 px images <-> 128 tokens of 64 bits.

Ported from AMD-AGI/Instella-T2I (bae/ae_model.py, bae/llama_attn.py, bae/resize_layers.py, bae/bnl.py).
Numerics follow the original, including its RoPE: diffusers' ``FluxPosEmbed`` cos/sin (each frequency
repeated for two adjacent channels) applied with Llama's ``rotate_half`` (channel j paired with j + D/2),
which is neither the Flux nor the Llama rotation; see :func:`instella_rope`.

Tokens. ``token_ids`` are the bits, ``[B, N, num_bits]`` 0/1 int64 (bit b of token n). The packed view
``[B, N]`` int64 is ``Σ_b bit_b · 2^b`` (bit 0 least significant; with 64 bits the two's-complement pattern,
so ids may be negative): :meth:`InstellaBAEModel.pack_bits` / :meth:`InstellaBAEModel.unpack_bits`.
``decode`` takes either view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..base import VisualTokenizerEncoderOutput, VisualTokenizerMixin, VisualTokenizerOutput
from ..layers.norms import RMSNorm
from ..layers.transformer import eager_attention_forward
from ..quantizers import BinaryQuantizer, bits_to_indices, indices_to_bits
from .configuration_instella import InstellaBAEConfig


def instella_rope(ids: torch.Tensor, axes_dims, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin ``[L, sum(axes_dims)]`` for positions ``ids [L, 3]``: per axis the frequencies
    ``theta^(-2j/d)`` (fp64), each repeated for two adjacent channels (diffusers' FluxPosEmbed)."""
    cos, sin = [], []
    pos = ids.float()
    for axis, dim in enumerate(axes_dims):
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=ids.device) / dim))
        angles = torch.outer(pos[:, axis], freqs)
        cos.append(angles.cos().repeat_interleave(2, dim=1).float())
        sin.append(angles.sin().repeat_interleave(2, dim=1).float())
    return torch.cat(cos, dim=-1), torch.cat(sin, dim=-1)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_instella_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x [B, L, H, D]``; cos/sin ``[L, D]`` (interleaved layout applied with ``rotate_half``, as the original)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + _rotate_half(x) * sin


def position_ids(num_latents: int, height: int, width: int, scale: float | None, device) -> torch.Tensor:
    """``[num_latents + h*w, 3]``: latent k -> (k, 0, 0); image (i, j) -> (0, i', j') with
    ``i' = i / (h-1) * (scale-1)`` when ``scale`` is set (the original's ``get_pos_embed``)."""
    latent = torch.zeros(num_latents, 3)
    latent[:, 0] = torch.arange(num_latents)
    rows, cols = torch.arange(height), torch.arange(width)
    if scale is not None:
        rows = rows / (height - 1) * (scale - 1)
        cols = cols / (width - 1) * (scale - 1)
    image = torch.zeros(height, width, 3)
    image[..., 1] = image[..., 1] + rows[:, None]
    image[..., 2] = image[..., 2] + cols[None, :]
    return torch.cat([latent, image.reshape(height * width, 3)], dim=0).to(device)


class InstellaAttention(nn.Module):
    """Non-causal attention, q/k/v/o without bias, per-head RMSNorm on q and k, then the original's RoPE."""

    def __init__(self, config, hidden_size: int, num_heads: int):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.norm_q = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.norm_k = RMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def forward(self, hidden_states: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
        batch, length, _ = hidden_states.shape
        shape = (batch, length, self.num_heads, self.head_dim)
        query = self.norm_q(self.q_proj(hidden_states).view(shape))
        key = self.norm_k(self.k_proj(hidden_states).view(shape))
        value = self.v_proj(hidden_states).view(shape)
        cos, sin = rope
        query = apply_instella_rope(query, cos, sin).to(value.dtype).transpose(1, 2)
        key = apply_instella_rope(key, cos, sin).to(value.dtype).transpose(1, 2)
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        output, weights = attention_interface(self, query, key, value.transpose(1, 2), None, scaling=self.scaling,
                                              dropout=0.0, is_causal=False)
        return self.o_proj(output.reshape(batch, length, -1)), weights


class SwiGLU(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class InstellaBlock(GradientCheckpointingLayer):
    """x + attn(rms(x)); x + swiglu(rms(x)) (fp16 activations clipped to ±65504, as the original)."""

    def __init__(self, config, hidden_size: int, num_heads: int):
        super().__init__()
        self.input_layernorm = RMSNorm(hidden_size, eps=config.rms_norm_eps)
        self.attn = InstellaAttention(config, hidden_size, num_heads)
        self.post_attention_layernorm = RMSNorm(hidden_size, eps=config.rms_norm_eps)
        self.mlp = SwiGLU(hidden_size, int(hidden_size * config.mlp_ratio))

    def forward(self, hidden_states: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        hidden_states = hidden_states + self.attn(self.input_layernorm(hidden_states), rope)[0]
        hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))
        if hidden_states.dtype == torch.float16:
            hidden_states = hidden_states.clip(-65504, 65504)
        return hidden_states


class DCDownBlock2d(nn.Module):
    """Halve the grid: conv3x3 stride 2 + (pixel_unshuffle(2), mean over groups of 4 channels)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, h, w, C] -> [B, h*w/4, C]
        x = x.permute(0, 3, 1, 2)
        shortcut = F.pixel_unshuffle(x, 2).unflatten(1, (-1, 4)).mean(dim=2)
        return (self.conv(x) + shortcut).flatten(2).transpose(1, 2)


class DCUpBlock2d(nn.Module):
    """Double the grid: conv3x3 to 4C + pixel_shuffle(2), shortcut = repeat_interleave(4) + pixel_shuffle(2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim * 4, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, h, w, C] -> [B, 4*h*w, C]
        x = x.permute(0, 3, 1, 2)
        out = F.pixel_shuffle(self.conv(x), 2) + F.pixel_shuffle(x.repeat_interleave(4, dim=1), 2)
        return out.flatten(2).transpose(1, 2)


class InstellaBAEPreTrainedModel(PreTrainedModel):
    config_class = InstellaBAEConfig
    base_model_prefix = "instella_bae"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["InstellaBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # encoder then decoder blocks
    _can_record_outputs = {"hidden_states": InstellaBlock, "attentions": OutputRecorder(InstellaAttention, index=1)}

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, InstellaBAEEncoder):
            init.normal_(module.latent_tokens, std=0.02)
        elif isinstance(module, InstellaBAEDecoder):
            init.normal_(module.mask_tokens, std=0.02)
        elif isinstance(module, BinaryQuantizer):
            init.normal_(module.embed, std=0.02)
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)


class InstellaBAEEncoder(nn.Module):
    def __init__(self, config: InstellaBAEConfig):
        super().__init__()
        width = config.encoder_hidden_size
        self.config = config
        self.num_latents = config.num_tokens
        self.patch_embedder = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size)
        self.latent_tokens = nn.Parameter(torch.zeros(1, config.num_tokens, width))
        self.transformer_blocks = nn.ModuleList(
            InstellaBlock(config, width, config.encoder_num_heads) for _ in range(config.encoder_num_layers))
        self.down_layers = nn.ModuleList(DCDownBlock2d(width) for _ in config.downsample_layers)
        self.norm_out = RMSNorm(width, eps=config.rms_norm_eps)
        self.proj_out = nn.Linear(width, width)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, H, W] -> latent features [B, N, D_enc]."""
        c = self.config
        hidden = self.patch_embedder(pixel_values)
        batch, _, height, width = hidden.shape
        scale = c.rope_scale
        rope = instella_rope(position_ids(self.num_latents, height, width, scale, hidden.device), c.axes_dims_rope, c.rope_theta)
        hidden = torch.cat([self.latent_tokens.expand(batch, -1, -1), hidden.flatten(2).transpose(1, 2)], dim=1)
        down = 0
        for index, block in enumerate(self.transformer_blocks):
            hidden = block(hidden, rope)
            if index in c.downsample_layers:
                latents, image = hidden[:, : self.num_latents], hidden[:, self.num_latents :]
                image = self.down_layers[down](image.reshape(batch, height, width, -1))
                hidden = torch.cat([latents, image], dim=1)
                down, height, width = down + 1, height // 2, width // 2
                scale = scale // 2 if scale is not None else None
                rope = instella_rope(position_ids(self.num_latents, height, width, scale, hidden.device),
                                     c.axes_dims_rope, c.rope_theta)
        return self.proj_out(self.norm_out(hidden[:, : self.num_latents]))


class InstellaBAEDecoder(nn.Module):
    def __init__(self, config: InstellaBAEConfig):
        super().__init__()
        width = config.decoder_hidden_size
        self.config = config
        self.input_layer = nn.Sequential(RMSNorm(config.encoder_hidden_size, eps=config.rms_norm_eps),
                                         nn.Linear(config.encoder_hidden_size, width))
        self.transformer_blocks = nn.ModuleList(
            InstellaBlock(config, width, config.decoder_num_heads) for _ in range(config.decoder_num_layers))
        self.up_layers = nn.ModuleList(DCUpBlock2d(width) for _ in config.upsample_layers)
        self.norm_out = RMSNorm(width, eps=config.rms_norm_eps)
        self.mask_tokens = nn.Parameter(torch.zeros(1, 1, width))

    def forward(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """latents [B, N, D_enc], the patch grid ``height x width`` -> features [B, height*width, D_dec]."""
        c = self.config
        latents = self.input_layer(latents)
        batch, num_latents, _ = latents.shape
        scale = c.rope_scale
        if c.upsample_layers:
            height, width = height // 2, width // 2
            scale = scale // 2 if scale is not None else None
        rope = instella_rope(position_ids(num_latents, height, width, scale, latents.device), c.axes_dims_rope, c.rope_theta)
        hidden = torch.cat([latents, self.mask_tokens.expand(batch, height * width, -1)], dim=1)
        up = 0
        for index, block in enumerate(self.transformer_blocks):
            hidden = block(hidden, rope)
            if index in c.upsample_layers:
                kept, image = hidden[:, :num_latents], hidden[:, num_latents:]
                image = self.up_layers[up](image.reshape(batch, height, width, -1))
                hidden = torch.cat([kept, image], dim=1)
                up, height, width = up + 1, height * 2, width * 2
                scale = scale * 2 if scale is not None else None
                rope = instella_rope(position_ids(num_latents, height, width, scale, hidden.device),
                                     c.axes_dims_rope, c.rope_theta)
        return self.norm_out(hidden[:, num_latents:])


class InstellaBAEModel(VisualTokenizerMixin, InstellaBAEPreTrainedModel):
    """Instella-T2I binary tokenizer: ``token_ids`` ``[B, 128, 64]`` bits (see the module docstring for the
    packed view). In eval a bit is ``sigmoid(logit) > 0.5``; in training (``model.train()``) bits are drawn
    ``Bernoulli(sigmoid(logit / train_temperature))`` from ``generator``, with straight-through gradients."""

    def __init__(self, config: InstellaBAEConfig):
        super().__init__(config)
        self.encoder = InstellaBAEEncoder(config)
        self.quantizer = BinaryQuantizer(config.num_bits, config.encoder_hidden_size,
                                         train_temperature=config.train_temperature)
        self.decoder = InstellaBAEDecoder(config)
        self.to_pixel = nn.Linear(config.decoder_hidden_size, config.patch_size**2 * 3)
        self.post_init()

    # -- bit views ------------------------------------------------------------------------------
    @staticmethod
    def pack_bits(bits: torch.Tensor) -> torch.LongTensor:
        """``[..., num_bits]`` bits -> ``[...]`` int64 ``Σ_b bit_b 2^b`` (two's complement with 64 bits)."""
        return bits_to_indices(bits)

    def unpack_bits(self, packed: torch.Tensor) -> torch.LongTensor:
        """``[...]`` packed ids -> ``[..., num_bits]`` 0/1 int64 bits."""
        return indices_to_bits(packed.long(), self.config.num_bits).long()

    # -- VisualTokenizer hooks --------------------------------------------------------------------
    def _encode(self, pixel_values, generator: torch.Generator | None = None, deterministic: bool = False):
        q = self.quantizer(self.encoder(pixel_values), generator=generator, deterministic=deterministic)
        bits = self.unpack_bits(q.indices)
        return VisualTokenizerEncoderOutput(token_ids=bits, latents=q.quantized, quantizer_loss=q.loss,
                                            codebook_loss=q.codebook_loss)

    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: torch.Tensor, num_tokens: int | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool | None = None, **kwargs) -> VisualTokenizerOutput | tuple:
        """The mixin's forward, reconstructing at the input's size (any multiple of ``downsample_factor``)."""
        enc = self.encode(pixel_values, num_tokens=num_tokens, **kwargs)
        return VisualTokenizerOutput(reconstruction=self._decode_latents(enc.latents, pixel_values.shape[-1]), **dict(enc.items()))

    def check_token_ids(self, token_ids) -> None:
        """Bits ``[B, N, num_bits]`` (0/1) or packed ids ``[B, N]``."""
        if not isinstance(token_ids, torch.Tensor):
            raise TypeError(f"token_ids must be a torch.LongTensor, got {type(token_ids).__name__}")
        if token_ids.is_floating_point() or token_ids.is_complex():
            raise TypeError(f"token_ids must be an integer (or bool) tensor, got {token_ids.dtype}")
        n, bits = self.config.num_tokens, self.config.num_bits
        if token_ids.ndim == 3:
            if tuple(token_ids.shape[1:]) != (n, bits):
                raise ValueError(f"bit token_ids must have shape [B, {n}, {bits}], got {tuple(token_ids.shape)}")
            if token_ids.numel() and token_ids.dtype != torch.bool and (int(token_ids.min()) < 0 or int(token_ids.max()) > 1):
                raise ValueError("bit token_ids must be 0 or 1")
        elif token_ids.ndim == 2:
            if token_ids.dtype == torch.bool:
                raise TypeError("packed token_ids must be an integer tensor, not bool")
            self._check_length("token_ids", int(token_ids.shape[1]))
            if bits < 64 and token_ids.numel() and (int(token_ids.min()) < 0 or int(token_ids.max()) >= 2**bits):
                raise ValueError(f"packed token_ids must lie in [0, {2**bits - 1}], "
                                 f"got [{int(token_ids.min())}, {int(token_ids.max())}]")
        else:
            raise ValueError(f"token_ids must be bits [B, {n}, {bits}] or packed ids [B, {n}], got {tuple(token_ids.shape)}")
        if token_ids.shape[0] == 0:
            raise ValueError("token_ids is an empty batch: expected at least one sequence")

    def _token_ids_to_latents(self, token_ids):
        bits = token_ids if token_ids.ndim == 3 else self.unpack_bits(token_ids)
        return self.quantizer.bits_to_codes(bits.to(torch.float32))

    def decode(self, token_ids: torch.LongTensor, image_size: int | None = None) -> torch.Tensor:
        """Pixels [B, 3, S, S] (unclamped, in [-1, 1] nominally) from bits or packed ids; ``image_size``
        (default ``config.image_size``) any multiple of ``downsample_factor``: the tokens do not fix the size."""
        self.check_token_ids(token_ids)
        return self._decode_latents(self._token_ids_to_latents(token_ids), image_size)

    def decode_latents(self, latents: torch.Tensor, image_size: int | None = None) -> torch.Tensor:
        self.check_latents(latents)
        return self._decode_latents(latents.to(self.dtype), image_size)

    def _decode_latents(self, latents, image_size: int | None = None):
        size = self.config.image_size if image_size is None else image_size
        self.check_image_size(size, size)
        patch = self.config.patch_size
        grid = size // patch
        hidden = self.to_pixel(self.decoder(latents.to(self.dtype), grid, grid))
        batch = hidden.shape[0]
        pixels = hidden.view(batch, grid, grid, patch, patch, 3).permute(0, 5, 1, 3, 2, 4)
        return pixels.reshape(batch, 3, grid * patch, grid * patch)
