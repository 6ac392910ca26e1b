"""Tokenizer training: `vistok train tokenizer --config CFG.yaml [--section.key=value ...]`.

Also runs as ``accelerate launch -m vistok.training.tokenizer --config ...`` or under ``torchrun``.
Objective: L1/L2 reconstruction, the quantizer's own loss terms, optional LPIPS, an optional semantic
regularisation against a frozen teacher (models with a semantic head), and an optional PatchGAN (hinge loss, VQGAN's adaptive weight, switched on at ``discriminator_start``). Variable-length
1D tokenizers train with tail-token drop: their forward decodes a random prefix in training mode.
Works for any family implementing the VisualTokenizer contract (forward -> reconstruction + losses).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .models import PatchDiscriminator, build_model, last_decoder_weight, model_spec
from .sharding import unpartitioned_loading
from .trainer import Trainer


class TokenizerTrainer(Trainer):
    kind = "tokenizer"

    def build_models(self) -> None:
        loss = self.config.loss
        self.spec = model_spec(self.config.model, self.kind)
        self.model = build_model(self.config.model, self.kind)
        self.model.train()
        self.discriminator = None
        if loss.discriminator_weight > 0:
            self.discriminator = PatchDiscriminator(loss.discriminator_channels, loss.discriminator_layers)
        self.perceptual = None
        if loss.perceptual_weight > 0:
            from ..evaluation.lpips import LPIPS

            try:
                self.perceptual = LPIPS.load(loss.lpips_backbone, loss.lpips_heads).requires_grad_(False).eval()
            except FileNotFoundError as err:
                raise ValueError(str(err)) from err
        self.teacher = None
        if loss.semantic_weight > 0:
            if not hasattr(self.model, "semantic_features"):
                raise ValueError(f"loss.semantic_weight > 0 needs a tokenizer with a semantic head (semantic_features); "
                                 f"{type(self.model).__name__} has none")
            if not loss.semantic_teacher:
                raise ValueError("loss.semantic_weight > 0 needs loss.semantic_teacher: a local vision model folder (DINOv2)")
            from transformers import AutoModel

            with unpartitioned_loading():  # frozen: ZeRO-3 must not partition it
                self.teacher = AutoModel.from_pretrained(loss.semantic_teacher).requires_grad_(False).eval()
        self._fixed_batch = None

    def image_size_and_range(self):
        return self.model.config.image_size, tuple(self.model.config.pixel_range)

    def trainable_modules(self):
        modules = {"model": self.model}
        if self.discriminator is not None:
            modules["discriminator"] = self.discriminator
        return modules

    def fsdp_forward_methods(self):
        return ("semantic_features",) if self.teacher is not None else ()

    def learning_rate_for(self, name: str) -> float:
        if name == "discriminator" and self.config.loss.discriminator_learning_rate is not None:
            return self.config.loss.discriminator_learning_rate
        return self.config.training.learning_rate

    def _to_unit_range(self, pixels: torch.Tensor) -> torch.Tensor:
        low, high = self.model_config.pixel_range
        return (pixels - low) / (high - low)

    @property
    def model_config(self):
        return self.accelerator.unwrap_model(self.model).config

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        acc, loss_cfg = self.accelerator, self.config.loss
        pixels = batch["pixel_values"]
        if self._fixed_batch is None:
            self._fixed_batch = pixels[:8].detach().clone()
        gan_on = self.discriminator is not None and self.step >= loss_cfg.discriminator_start
        out = self.model(pixels)
        reconstruction = out.reconstruction.float()
        if loss_cfg.reconstruction == "l1":
            rec_loss = (reconstruction - pixels).abs().mean()
        else:
            rec_loss = F.mse_loss(reconstruction, pixels)
        terms = {"reconstruction_loss": rec_loss}
        nll = loss_cfg.reconstruction_weight * rec_loss
        if self.perceptual is not None:
            self.perceptual.to(pixels.device)
            perceptual = self.perceptual(self._to_unit_range(reconstruction), self._to_unit_range(pixels)).mean()
            terms["perceptual_loss"] = perceptual
            nll = nll + loss_cfg.perceptual_weight * perceptual
        total = nll
        for name in ("quantizer_loss", "kl_loss"):
            value = getattr(out, name, None)
            if value is not None:
                terms[name] = value
                total = total + loss_cfg.quantizer_weight * value
        if self.teacher is not None:
            semantic = self._semantic_loss(pixels, out.latents)
            terms["semantic_loss"] = semantic
            total = total + loss_cfg.semantic_weight * semantic
        if gan_on:
            # the discriminator's weights are constants here: this term trains only the tokenizer
            disc = self.accelerator.unwrap_model(self.discriminator)
            frozen = {name: p.detach() for name, p in disc.named_parameters()}
            generator_loss = -torch.func.functional_call(disc, frozen, (reconstruction,)).mean()
            weight = torch.tensor(loss_cfg.discriminator_weight, device=pixels.device)
            if loss_cfg.adaptive_weight:
                weight = weight * self._adaptive_weight(nll, generator_loss)
            terms["generator_loss"] = generator_loss
            total = total + weight * generator_loss
        acc.backward(total)
        self.step_optimizer(0)
        if gan_on:
            logits_real = self.discriminator(pixels.detach())
            logits_fake = self.discriminator(reconstruction.detach())
            d_loss = 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
            terms["discriminator_loss"] = d_loss
            acc.backward(d_loss)
            self.step_optimizer(1)
        return {"loss": total.detach(), **{k: v.detach() for k, v in terms.items()}}

    def _semantic_loss(self, pixels: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Mean over tokens of -cos(student, teacher): the tokenizer's semantic head on its quantized latents
        against the frozen teacher's ``n`` patch tokens (after its class/register tokens), teacher input
        ImageNet-normalised then resized (the REPA-style recipe). A model with its own recipe for this teacher
        (``semantic_distillation_loss(teacher, pixels, latents)`` returning the term, or None for a teacher it
        does not know) computes the term itself."""
        model = self.accelerator.unwrap_model(self.model)
        self.teacher.to(pixels.device)
        if hasattr(model, "semantic_distillation_loss"):
            own = model.semantic_distillation_loss(self.teacher, pixels, latents)
            if own is not None:
                return own
        student = model.semantic_features(latents)
        with torch.no_grad():
            mean = torch.tensor([0.485, 0.456, 0.406], device=pixels.device)[:, None, None]
            std = torch.tensor([0.229, 0.224, 0.225], device=pixels.device)[:, None, None]
            x = (self._to_unit_range(pixels.float()) - mean) / std
            size = self.config.loss.semantic_image_size
            x = F.interpolate(x, size=(size, size), mode="bicubic")
            target = self.teacher(pixel_values=x.to(self.teacher.dtype)).last_hidden_state
        n = student.shape[1]
        prefix = 1 + getattr(self.teacher.config, "num_register_tokens", 0)  # the class token (and DINOv2 registers)
        if target.shape[1] - prefix != n or target.shape[-1] != student.shape[-1]:
            raise ValueError(f"the semantic teacher gives {tuple(target.shape[1:])} features but the tokenizer's head "
                             f"{tuple(student.shape[1:])}: match loss.semantic_image_size to the head's grid and the "
                             "head's width (distill_dim) to the teacher's")
        target = target[:, -n:].float()
        return -(F.normalize(student.float(), dim=-1) * F.normalize(target, dim=-1)).sum(-1).mean()

    def _adaptive_weight(self, nll: torch.Tensor, generator_loss: torch.Tensor) -> torch.Tensor:
        last = last_decoder_weight(self.accelerator.unwrap_model(self.model))
        nll_grad = torch.autograd.grad(nll, last, retain_graph=True)[0]
        gan_grad = torch.autograd.grad(generator_loss, last, retain_graph=True)[0]
        return (nll_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()

    @torch.no_grad()
    def save_images(self, path: Path) -> None:
        from .images import save_grid

        model = self.averaged_model()
        was_training = model.training
        model.eval()
        pixels = self._fixed_batch
        rows = [pixels]
        counts = [model.config.num_tokens]
        if model.config.variable_length:
            counts = sorted({max(1, model.config.num_tokens // 2**i) for i in range(4)})
        for k in counts:
            if model.is_continuous:
                rows.append(model.decode_latents(model.encode(pixels, num_tokens=k).latents))
            else:
                rows.append(model.decode(model.encode(pixels, num_tokens=k).token_ids))
        model.train(was_training)
        save_grid([self._to_unit_range(r) for r in rows], path)

    def export(self, path: Path) -> None:
        from ..image_processing import VistokImageProcessor
        from .cards import render_training_card

        model = self.averaged_model()
        model.save_pretrained(path)
        VistokImageProcessor.from_model_config(model.config).save_pretrained(path)
        (path / "README.md").write_text(render_training_card(self, model.config))


def main(argv: list[str] | None = None) -> int:
    from .cli import run_training

    return run_training("tokenizer", TokenizerTrainer, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
