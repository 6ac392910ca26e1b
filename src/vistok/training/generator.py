"""Generator training: `vistok train generator --config CFG.yaml [--section.key=value ...]`.

Also runs as ``accelerate launch -m vistok.training.generator --config ...`` or under ``torchrun``.
The objective follows ``model.family``:

* ``maskgit`` (bytedance/1d-tokenizer): per sample a mask ratio from the arccos (or cosine) schedule, at
  least one masked token, cross-entropy with label smoothing on the masked tokens only;
* ``llamagen`` (FoundationVision/LlamaGen): next-token cross-entropy over the raster-order tokens after the
  condition (the original's ``idx=z[:, :-1], targets=z``): a class token, or for text-conditional models
  the frozen T5 features of the caption column, left-padded with their mask as LlamaGen's t2i data does;
* ``var`` (FoundationVision/VAR): next-scale cross-entropy over all scales' tokens at once, teacher-forced
  with the tokenizer quantizer's running reconstruction (VAR's ``idxBl_to_var_input``), block-causal.

Class labels (captions) are dropped for classifier-free guidance with the model config's dropout probability.
Tokens come from a frozen tokenizer applied on the fly (``loss.tokenizer``) or from a dataset column
written by ``vistok tokenize`` (``data.token_column``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .models import GENERATOR_FAMILIES, build_model
from .trainer import Trainer


def mask_ratio(timesteps: torch.Tensor, schedule: str) -> torch.Tensor:
    """Fraction of tokens to mask at uniform ``timesteps`` in [0, 1): arccos (MaskGIT training) or cosine."""
    if schedule == "arccos":
        return torch.acos(timesteps) / (math.pi * 0.5)
    return torch.cos(timesteps * math.pi * 0.5)


def mask_tokens(tokens: torch.LongTensor, mask_token_id: int, schedule: str = "arccos"):
    """(masked input, boolean mask) with round(N * ratio) >= 1 random positions masked per sample."""
    batch, length = tokens.shape
    timesteps = torch.rand(batch, device=tokens.device)
    ratio = mask_ratio(timesteps, schedule).clamp(1e-6, 1.0)
    count = (length * ratio).round().clamp(min=1)
    order = torch.rand(batch, length, device=tokens.device).argsort(dim=-1)
    mask = order < count[:, None]
    return torch.where(mask, mask_token_id, tokens), mask


# family -> the diffusers pipeline its export becomes, and the tokenizer layouts it can train on
PIPELINES = {"maskgit": "MaskGITPipeline", "llamagen": "AutoregressiveImagePipeline", "var": "NextScalePipeline"}
TOKEN_LAYOUTS = {"maskgit": ("1d",), "llamagen": ("2d",), "var": ("multiscale",)}
LABEL_SMOOTHING = {"maskgit": 0.1, "llamagen": 0.0, "var": 0.0}  # the original training recipes


class GeneratorTrainer(Trainer):
    kind = "generator"

    def build_models(self) -> None:
        import vistok  # noqa: F401
        from transformers import AutoModel

        loss, data = self.config.loss, self.config.data
        self.family = self._family()
        self.tokenizer = None
        derived = {}
        if loss.tokenizer:
            self.tokenizer = AutoModel.from_pretrained(loss.tokenizer).train(False).requires_grad_(False)
            self.tokenizer.to(self.accelerator.device)
            layout = getattr(self.tokenizer.config, "token_layout", None)
            if layout not in TOKEN_LAYOUTS[self.family]:
                raise ValueError(f"a {self.family} generator takes a tokenizer with token_layout in "
                                 f"{TOKEN_LAYOUTS[self.family]}, got {layout!r}")
            tok = self.tokenizer.config
            derived["codebook_size"] = tok.codebook_size
            if self.family == "var":  # the scale layout and code width come from the VQVAE
                derived.update(z_channels=tok.z_channels, patch_nums=list(tok.patch_nums))
            else:
                derived["num_tokens"] = tok.num_tokens
        features = getattr(self.dataset, "features", None) or {}
        label_feature = features.get(data.label_column) if data.label_column else None
        if label_feature is not None and hasattr(label_feature, "num_classes"):
            derived["num_classes"] = label_feature.num_classes
            # class names (an imagefolder's folders) travel in the config, as transformers' id2label
            if getattr(label_feature, "names", None):
                derived["id2label"] = dict(enumerate(label_feature.names))
        overrides = {k: v for k, v in derived.items() if k not in self.config.model.config}
        if self.config.model.pretrained:
            overrides = {}
        self.model = build_model(self.config.model, GENERATOR_FAMILIES, "generator", **overrides)
        cfg = self.model.config
        if self.tokenizer is not None and cfg.codebook_size != self.tokenizer.config.codebook_size:
            raise ValueError(f"model.config.codebook_size={cfg.codebook_size} but the tokenizer's codebook has "
                             f"{self.tokenizer.config.codebook_size} codes")
        self.text_pipeline = None
        if getattr(cfg, "condition_type", "class") == "text":
            if data.caption_column is None or not loss.text_encoder or self.tokenizer is None:
                raise ValueError("a text-conditional LlamaGen trains on data.caption_column with loss.text_encoder "
                                 "(a T5 encoder folder) and loss.tokenizer")
            from transformers import AutoTokenizer, T5EncoderModel

            from ..pipelines import TextToImageAutoregressivePipeline

            encoder = T5EncoderModel.from_pretrained(loss.text_encoder).train(False).requires_grad_(False).to(self.accelerator.device)
            self.text_pipeline = TextToImageAutoregressivePipeline(
                image_tokenizer=self.tokenizer, transformer=self.model, text_encoder=encoder,
                tokenizer=AutoTokenizer.from_pretrained(loss.text_encoder))
        elif data.label_column is None:
            raise ValueError(f"{self.family} training is class-conditional: set data.label_column")
        if self.family == "var" and self.tokenizer is None:
            raise ValueError("VAR training needs loss.tokenizer: its teacher-forcing input comes from the VQVAE's quantizer")
        self.model.train()

    def _family(self) -> str:
        section = self.config.model
        if not section.pretrained:
            if section.family not in GENERATOR_FAMILIES:
                raise ValueError(f"model.family={section.family!r} is not a generator family; choose one of {sorted(GENERATOR_FAMILIES)}")
            return section.family
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(section.pretrained).model_type
        for family, registered in GENERATOR_FAMILIES.items():
            if registered == model_type:
                return family
        raise ValueError(f"model.pretrained={section.pretrained!r} is a {model_type}; a generator run takes one of "
                         f"{sorted(GENERATOR_FAMILIES.values())}")

    def image_size_and_range(self):
        if self.tokenizer is None:
            raise ValueError("an image dataset needs loss.tokenizer to turn images into tokens")
        return self.tokenizer.config.image_size, tuple(self.tokenizer.config.pixel_range)

    def _tokens(self, batch: dict) -> torch.LongTensor:
        column = self.config.data.token_column
        if column is not None:
            tokens = torch.as_tensor(batch[column], device=self.accelerator.device).long()
        else:
            with torch.no_grad():
                tokens = self.tokenizer.encode(batch["pixel_values"].to(self.accelerator.device)).token_ids
        tokens = tokens.flatten(1)  # 2D token grids in raster order
        num_tokens = self.accelerator.unwrap_model(self.model).config.num_tokens
        if tokens.shape[1] < num_tokens or (self.family != "maskgit" and tokens.shape[1] != num_tokens):
            raise ValueError(f"training tokens must have shape [B, {num_tokens}]"
                             f"{' (or a longer 1D sequence)' if self.family == 'maskgit' else ''}, got {tuple(tokens.shape)}")
        return tokens[:, :num_tokens]  # a variable-length 1D tokenizer's prefix

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        model_config = self.accelerator.unwrap_model(self.model).config
        tokens = self._tokens(batch)
        if self.text_pipeline is not None:
            if not hasattr(self, "_fixed_captions"):
                self._fixed_captions = list(batch["captions"])[:8]
            logits, targets = self._text_logits(tokens, batch["captions"])
        else:
            logits, targets = self._class_logits(tokens, batch["labels"].to(tokens.device), model_config)
        smoothing = self.config.loss.label_smoothing
        if smoothing is None:
            smoothing = LABEL_SMOOTHING[self.family]
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=smoothing)
        self.accelerator.backward(loss)
        self.step_optimizer(0)
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == targets).float().mean()
        return {"loss": loss.detach(), "token_accuracy": accuracy}

    def _class_logits(self, tokens, labels, model_config):
        """(logits [n, V], targets [n]) of the family's objective for class-conditional models."""
        if int(labels.min()) < 0 or int(labels.max()) >= model_config.num_classes:
            raise ValueError(f"class labels must lie in [0, {model_config.num_classes - 1}], got {labels.tolist()}")
        if self.family == "maskgit":
            inputs, mask = mask_tokens(tokens, model_config.mask_token_id, self.config.loss.mask_schedule)
            logits = self.model(input_ids=inputs, class_labels=labels).logits
            return logits[mask], tokens[mask]
        if self.family == "llamagen":  # next token: [class, t_0 .. t_{N-2}] predicts [t_0 .. t_{N-1}]
            return self.model(input_ids=tokens[:, :-1], class_labels=labels).logits.flatten(0, 1), tokens.flatten()
        # next scale: [class start, f_hat of scales < k upsampled to k] predicts every scale's tokens
        inputs = self.tokenizer.quantizer.teacher_forcing_input(tokens)
        return self.model(class_labels=labels, inputs=inputs).logits.flatten(0, 1), tokens.flatten()

    def _text_logits(self, tokens, captions):
        """Next-token logits after the left-padded T5 features of the captions (LlamaGen t2i)."""
        pipe = self.text_pipeline
        embeds, mask = pipe.left_pad(*pipe.encode_prompt(list(captions)))
        keys = torch.cat([mask.bool(), torch.ones(tokens.shape[0], tokens.shape[1] - 1, dtype=torch.bool, device=mask.device)], 1)
        logits = self.model(input_ids=tokens[:, :-1], caption_embeds=embeds, attention_mask=keys).logits
        return logits.flatten(0, 1), tokens.flatten()

    def _pipeline(self):
        if self.text_pipeline is not None:
            from ..pipelines import TextToImageAutoregressivePipeline

            pipe = self.text_pipeline
            return TextToImageAutoregressivePipeline(image_tokenizer=self.tokenizer, transformer=self.averaged_model().train(False),
                                                     text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
        from .. import pipelines

        pipeline_cls = getattr(pipelines, PIPELINES[self.family])
        return pipeline_cls(image_tokenizer=self.tokenizer, transformer=self.averaged_model().train(False))

    @torch.no_grad()
    def save_images(self, path: Path) -> None:
        if self.tokenizer is None:
            return
        from .images import save_grid

        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        pipe = self._pipeline()
        seed = torch.Generator().manual_seed(0)
        if self.text_pipeline is not None:
            captions = list(self._fixed_captions)
            pixels = pipe(prompt=captions, generator=seed, output_type="pt").images
        else:
            labels = list(range(min(8, pipe.transformer.config.num_classes)))
            pixels = pipe(class_labels=labels, generator=seed, output_type="pt").images
        model.train(was_training)
        save_grid([pixels], path)

    def export(self, path: Path) -> None:
        from .cards import render_training_card

        if self.tokenizer is None:
            model = self.averaged_model()
            model.save_pretrained(path)
        else:
            pipe = self._pipeline()
            pipe.save_pretrained(path)
            model = pipe.transformer
        (path / "README.md").write_text(render_training_card(self, model.config))


def main(argv: list[str] | None = None) -> int:
    from .cli import run_training

    return run_training("generator", GeneratorTrainer, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
