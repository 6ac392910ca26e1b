"""The VisualTokenizer contract shared by every tokenizer family.

A tokenizer is a transformers ``PreTrainedModel`` that also inherits :class:`VisualTokenizerMixin`.
The mixin validates inputs once, for every family, and fixes the output types; a family implements
``_encode``, ``_decode_latents`` and ``_token_ids_to_latents``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput
from transformers.utils.output_capturing import capture_outputs

TOKEN_LAYOUTS = ("1d", "2d", "multiscale", "continuous")


@dataclass
class VisualTokenizerTerms:
    """The eight fields ``encode`` and ``forward`` share, defined once.

    token_ids: ``[B, N]`` (1D), ``[B, h, w]`` (2D) or ``[B, L]`` (multi-scale); ``None`` for continuous models.
    latents: the quantized vectors (or the posterior sample of a continuous model), tokens-first:
        ``[B, N, C]`` for 1D layouts.
    latent_mean / latent_logvar: the posterior of a continuous (KL) model.
    quantizer_loss / commitment_loss / codebook_loss / kl_loss: the regulariser's training terms.
    """

    token_ids: torch.LongTensor | None = None
    latents: torch.FloatTensor | None = None
    latent_mean: torch.FloatTensor | None = None
    latent_logvar: torch.FloatTensor | None = None
    quantizer_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    kl_loss: torch.FloatTensor | None = None


@dataclass
class _ReconstructionField:
    reconstruction: torch.FloatTensor | None = None


@dataclass
class _CapturedFields:
    """Per-layer outputs ``forward`` returns when asked (``output_hidden_states`` / ``output_attentions``):
    the blocks the family lists in ``_can_record_outputs``, encoder then decoder; the first hidden state is
    the first block's input."""

    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# Dataclass fields follow the reverse MRO, so ``reconstruction`` stays the first field (and the first
# element of ``to_tuple()``) of VisualTokenizerOutput, followed by the shared terms in their order.
@dataclass
class VisualTokenizerEncoderOutput(ModelOutput, VisualTokenizerTerms):
    """What ``encode`` returns: the fields of :class:`VisualTokenizerTerms`."""


@dataclass
class VisualTokenizerOutput(ModelOutput, _CapturedFields, VisualTokenizerTerms, _ReconstructionField):
    """What ``forward`` returns: the reconstruction, the fields of :class:`VisualTokenizerTerms`, then the
    hidden states and attentions when asked for."""


class VisualTokenizerMixin:
    """``encode`` / ``decode`` / ``decode_latents`` with the checks every family shares.

    Config fields read here: ``image_size``, ``num_tokens``, ``codebook_size``, ``token_layout``,
    ``variable_length`` and ``pixel_range``.
    """

    main_input_name = "pixel_values"

    # A family implements three hooks; the layout logic (prefixes, grids, scales) and every check live here:
    #   _encode(pixel_values, **kwargs) -> VisualTokenizerEncoderOutput   (all tokens)
    #   _token_ids_to_latents(token_ids, **kwargs) -> latents   ([B, n, C]; multi-scale: the feature map)
    #   _decode_latents(latents) -> pixels

    # -- public API ---------------------------------------------------------------------------
    @property
    def is_continuous(self) -> bool:
        return self.config.token_layout == "continuous"

    @property
    def supported_num_tokens(self) -> range:
        """The token counts ``encode(num_tokens=k)`` and ``decode`` of a ``[B, k]`` prefix accept: ``1..num_tokens``
        for a variable-length 1D tokenizer (``config.variable_length``), else only
        ``config.num_tokens``. ``max(model.supported_num_tokens) == model.config.num_tokens`` always."""
        maximum = self.config.num_tokens
        return range(1, maximum + 1) if getattr(self.config, "variable_length", False) else range(maximum, maximum + 1)

    def encode(self, pixel_values: torch.Tensor, num_tokens: int | None = None, return_dict: bool | None = None,
               **kwargs) -> VisualTokenizerEncoderOutput | tuple:
        """Tokenize images in the model's pixel range; ``num_tokens`` keeps a prefix (1D variable-length);
        ``return_dict=False`` returns the output's non-None fields as a tuple (transformers' convention)."""
        self.check_pixel_values(pixel_values)
        if num_tokens is not None and self.config.token_layout in ("2d", "multiscale"):
            kind = "2D" if self.config.token_layout == "2d" else "multi-scale"
            raise ValueError(f"{type(self).__name__} is a fixed-length {kind} tokenizer: num_tokens "
                             "must be None (the token count follows the image size)")
        num_tokens = self.check_num_tokens(num_tokens)
        out = self._encode(pixel_values.to(self.dtype), **kwargs)
        if self.config.token_layout in ("1d", "continuous") and num_tokens < self.config.num_tokens:
            for name in ("token_ids", "latents", "latent_mean", "latent_logvar"):
                value = getattr(out, name)
                if value is not None:
                    out[name] = value[:, :num_tokens]
        return out if return_dict is not False else out.to_tuple()

    def decode(self, token_ids: torch.LongTensor, **kwargs) -> torch.Tensor:
        """Pixels (unclamped, as the original decoder computes them) from token ids or a prefix of them;
        ``kwargs`` are the family's decoding options (multi-scale: ``up_to_scale``)."""
        if self.is_continuous:
            raise ValueError(f"{type(self).__name__} is continuous (KL); decode its latents with decode_latents()")
        self.check_token_ids(token_ids)
        return self._decode_latents(self._token_ids_to_latents(token_ids, **kwargs))

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels from the ``latents`` that ``encode`` returned (``[B, N, C]``; multi-scale: the feature map)."""
        self.check_latents(latents)
        return self._decode_latents(latents.to(self.dtype))

    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: torch.Tensor, num_tokens: int | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> VisualTokenizerOutput | tuple:
        """Reconstruct ``pixel_values`` with the regulariser's training terms; in training, variable-length models
        decode a random prefix (One-D-Piece's tail token drop, drawn from ``generator``) unless ``num_tokens`` is given.
        ``output_hidden_states`` / ``output_attentions`` / ``return_dict`` as in transformers."""
        if num_tokens is None and self.training and self.config.variable_length:
            num_tokens = int(torch.randint(1, self.config.num_tokens + 1, (1,), generator=kwargs.get("generator")))
        enc = self.encode(pixel_values, num_tokens=num_tokens, **kwargs)
        # (capture_outputs adds the hidden states / attentions and applies return_dict)
        return VisualTokenizerOutput(reconstruction=self._decode_latents(enc.latents), **{k: v for k, v in enc.items()})

    # -- hub ----------------------------------------------------------------------------------
    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        tags: list[str] | None = None,
        image_processor=None,
        model_card=None,
    ) -> str:
        """Upload the tokenizer with its image processor and a vistok model card; returns the commit URL.

        Takes transformers' ``push_to_hub`` arguments, plus ``image_processor`` (default: a
        ``VistokImageProcessor`` for the config's ``image_size``/``pixel_range``) and ``model_card``
        (README text; default: the card of the local folder the model came from, else a minimal one).
        """
        from ..utils.hub import push_tokenizer_to_hub

        return push_tokenizer_to_hub(
            self, repo_id, image_processor=image_processor, model_card=model_card,
            max_shard_size=max_shard_size, tags=tags, commit_message=commit_message,
            commit_description=commit_description, private=private, token=token,
            revision=revision, create_pr=create_pr,
        )

    # -- validation ---------------------------------------------------------------------------
    def check_pixel_values(self, pixel_values) -> None:
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"pixel_values must be a torch.Tensor of shape [B, 3, H, W], got {type(pixel_values).__name__}")
        if not pixel_values.is_floating_point():
            raise TypeError(f"pixel_values must be a floating-point tensor in {tuple(self.config.pixel_range)}, got {pixel_values.dtype}")
        if pixel_values.ndim != 4:
            raise ValueError(f"pixel_values must have shape [B, 3, H, W], got {tuple(pixel_values.shape)}")
        batch, channels, height, width = pixel_values.shape
        if batch == 0:
            raise ValueError("pixel_values is an empty batch: expected at least one image")
        if channels != 3:
            raise ValueError(f"pixel_values must have 3 (RGB) channels, got {channels}")
        self.check_image_size(height, width)
        if not torch.isfinite(pixel_values).all():
            raise ValueError("pixel_values contains NaN or inf values")
        self.check_pixel_range(pixel_values)

    # Values may leave pixel_range by up to this fraction of its span: resampling (bicubic/Lanczos overshoot
    # ~10% at sharp edges), augmentation noise and reconstructions fed back stay within it, while a wrong
    # convention (0..255 for 0..1, -1..1 for 0..1, 0..255 for -1..1) overshoots by a whole span or more.
    PIXEL_RANGE_MARGIN = 0.25

    def check_pixel_range(self, pixel_values: torch.Tensor) -> None:
        """Pixels far outside the config's ``pixel_range`` were scaled for another model: a clear error, not ids."""
        low, high = (float(v) for v in self.config.pixel_range)
        margin = self.PIXEL_RANGE_MARGIN * (high - low)
        seen_low, seen_high = float(pixel_values.min()), float(pixel_values.max())
        if seen_low < low - margin or seen_high > high + margin:
            raise ValueError(
                f"pixel_values must lie in the model's pixel_range [{low:g}, {high:g}] (up to {margin:g} beyond), "
                f"got values in [{seen_low:g}, {seen_high:g}]; the model's image processor (VistokImageProcessor, "
                "AutoImageProcessor.from_pretrained of the model's folder) produces that range"
            )

    def check_image_size(self, height: int, width: int) -> None:
        """Exactly ``image_size`` square; a fully convolutional tokenizer (one with a ``downsample_factor``) takes
        any square side that is a multiple of it."""
        factor = getattr(self.config, "downsample_factor", None)
        if factor is not None:
            if height != width or height < factor or height % factor:
                raise ValueError(f"{type(self).__name__} takes square images whose side is a multiple of {factor} "
                                 f"(e.g. {self.config.image_size}x{self.config.image_size}), got {height}x{width}")
            return
        size = self.config.image_size
        if (height, width) != (size, size):
            raise ValueError(
                f"{type(self).__name__} takes {size}x{size} images, got {height}x{width}; "
                "resize with the model's image processor first"
            )

    def check_num_tokens(self, num_tokens: int | None) -> int:
        maximum = self.config.num_tokens
        if num_tokens is None:
            return maximum
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int):
            raise TypeError(f"num_tokens must be an int in 1..{maximum}, got {num_tokens!r}")
        if self.config.token_layout == "2d":  # a square grid of any side (fully convolutional)
            if num_tokens < 1 or math.isqrt(num_tokens) ** 2 != num_tokens:
                raise ValueError(f"a 2D tokenizer takes a square number of tokens (e.g. {maximum}), got {num_tokens}")
            return num_tokens
        if self.config.variable_length:
            if not 1 <= num_tokens <= maximum:
                raise ValueError(f"num_tokens must be in 1..{maximum}, got {num_tokens}")
        elif num_tokens != maximum:
            raise ValueError(
                f"{type(self).__name__} is a fixed-length tokenizer: num_tokens must be {maximum}, got {num_tokens}"
            )
        return num_tokens

    def _check_length(self, name: str, length: int) -> None:
        """The token count of ``name`` is one the model takes (the error names the argument)."""
        try:
            self.check_num_tokens(length)
        except ValueError as err:
            raise ValueError(f"{name} holds {length} tokens per image: {err}") from None

    def check_token_ids(self, token_ids) -> None:
        if not isinstance(token_ids, torch.Tensor):
            raise TypeError(f"token_ids must be a torch.LongTensor, got {type(token_ids).__name__}")
        if token_ids.is_floating_point() or token_ids.is_complex() or token_ids.dtype == torch.bool:
            raise TypeError(f"token_ids must be an integer tensor, got {token_ids.dtype}")
        layout = self.config.token_layout
        if layout == "1d":
            if token_ids.ndim != 2:
                raise ValueError(f"token_ids must have shape [B, N], got {tuple(token_ids.shape)}")
            self._check_length("token_ids", int(token_ids.shape[1]))
        elif layout == "2d" and (token_ids.ndim != 3 or token_ids.shape[1] != token_ids.shape[2]):
            side = math.isqrt(self.config.num_tokens)
            raise ValueError(f"token_ids must be a square grid [B, h, h] (e.g. [B, {side}, {side}]), got {tuple(token_ids.shape)}")
        elif layout == "multiscale" and token_ids.ndim != 2:
            raise ValueError(f"token_ids must have shape [B, {self.config.num_tokens}] (scales concatenated, "
                             f"coarse first), got {tuple(token_ids.shape)}")
        if token_ids.shape[0] == 0:
            raise ValueError("token_ids is an empty batch: expected at least one sequence")
        size = self.config.codebook_size
        if token_ids.numel() and (int(token_ids.min()) < 0 or int(token_ids.max()) >= size):
            raise ValueError(
                f"token_ids must lie in [0, {size - 1}] (codebook_size={size}), "
                f"got values in [{int(token_ids.min())}, {int(token_ids.max())}]"
            )

    def check_latents(self, latents) -> None:
        if self.config.token_layout == "multiscale":  # the quantized feature map f_hat
            side, dim = self.config.patch_nums[-1], self.config.z_channels
            if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
                raise TypeError(f"latents must be a floating-point tensor [B, {dim}, {side}, {side}]")
            if latents.ndim != 4 or tuple(latents.shape[1:]) != (dim, side, side) or latents.shape[0] == 0:
                raise ValueError(f"latents must have shape [B, {dim}, {side}, {side}], got {tuple(latents.shape)}")
            if not torch.isfinite(latents).all():
                raise ValueError("latents contains NaN or inf values")
            return
        if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
            raise TypeError("latents must be a floating-point torch.Tensor of shape [B, N, C]")
        if latents.ndim != 3 or latents.shape[-1] != self.config.token_dim:
            raise ValueError(
                f"latents must have shape [B, N, {self.config.token_dim}], got {tuple(latents.shape)}"
            )
        if latents.shape[0] == 0:
            raise ValueError("latents is an empty batch: expected at least one sequence")
        self._check_length("latents", int(latents.shape[1]))
        if not torch.isfinite(latents).all():
            raise ValueError("latents contains NaN or inf values")
