"""Generator training: `vistok train generator --config CFG.yaml [--section.key=value ...]`.

Also runs as ``accelerate launch -m vistok.training.generator --config ...`` or under ``torchrun``.
The objective is the generator family's (its descriptor's ``objective``: masked tokens, next token, next
scale, ...), a cross-entropy with the family's label smoothing. Text-conditional generators train on the
frozen text-encoder features of a caption column, left-padded with their mask.

Class labels (captions) are dropped for classifier-free guidance with the model config's dropout probability.
Tokens come from a frozen tokenizer applied on the fly (``loss.tokenizer``) or from a dataset column
written by ``vistok tokenize`` (``data.token_column``). A generator of continuous tokens (a spec whose
``token_layouts`` are ``("continuous",)``: MaskGen-KL) trains on the frozen KL tokenizer's posterior parameters
``[B, n, 2C]`` (mean, log-variance) computed on the fly, and its objective returns the loss itself (a diffusion
loss: no logits, no token accuracy).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .models import build_model, model_spec
from .sharding import unpartitioned_loading
from .trainer import Trainer


class GeneratorTrainer(Trainer):
    kind = "generator"

    def build_models(self) -> None:
        import vistok  # noqa: F401
        from transformers import AutoModel

        loss, data = self.config.loss, self.config.data
        self.spec = model_spec(self.config.model, self.kind)
        self.continuous = self.spec.token_layouts == ("continuous",)
        if self.continuous and data.token_column is not None:
            raise ValueError(f"{self.spec.name} generates continuous tokens: it trains on images through loss.tokenizer "
                             "(the KL tokenizer's posterior), not on a data.token_column of token ids")
        self.tokenizer = None
        derived = {}
        if loss.tokenizer:
            with unpartitioned_loading():  # frozen: ZeRO-3 must not partition it
                self.tokenizer = AutoModel.from_pretrained(loss.tokenizer).eval().requires_grad_(False)
            self.tokenizer.to(self.accelerator.device)
            layout = getattr(self.tokenizer.config, "token_layout", None)
            if layout not in self.spec.token_layouts:
                raise ValueError(f"a {self.spec.name} generator takes a tokenizer with token_layout in "
                                 f"{self.spec.token_layouts}, got {layout!r}")
            derived.update(self.spec.config_from_tokenizer(self.tokenizer.config))
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
        self.model = build_model(self.config.model, self.kind, **overrides)
        cfg = self.model.config
        if self.tokenizer is not None and not self.continuous and cfg.codebook_size != self.tokenizer.config.codebook_size:
            raise ValueError(f"model.config.codebook_size={cfg.codebook_size} but the tokenizer's codebook has "
                             f"{self.tokenizer.config.codebook_size} codes")
        self.text_pipeline = None
        if getattr(cfg, "condition_type", "class") == "text":
            if data.caption_column is None or not loss.text_encoder or self.tokenizer is None:
                raise ValueError(f"a text-conditional {self.spec.name} generator trains on data.caption_column with loss.text_encoder "
                                 "(a T5 encoder folder) and loss.tokenizer")
            import transformers
            from transformers import AutoTokenizer

            encoder_class = getattr(transformers, self.spec.text_encoder_class)
            with unpartitioned_loading():
                encoder = encoder_class.from_pretrained(loss.text_encoder).eval().requires_grad_(False).to(self.accelerator.device)
            self.text_pipeline = self.spec.pipeline_class(text=True)(
                image_tokenizer=self.tokenizer, transformer=self.model, text_encoder=encoder,
                tokenizer=AutoTokenizer.from_pretrained(loss.text_encoder))
        elif data.label_column is None:
            raise ValueError(f"{self.spec.name} training is class-conditional: set data.label_column")
        if self.spec.needs_tokenizer and self.tokenizer is None:
            raise ValueError(f"{self.spec.name} training needs loss.tokenizer: its objective uses the tokenizer itself")
        self.model.train()

    def image_size_and_range(self):
        if self.tokenizer is None:
            raise ValueError("an image dataset needs loss.tokenizer to turn images into tokens")
        return self.tokenizer.config.image_size, tuple(self.tokenizer.config.pixel_range)

    def _tokens(self, batch: dict) -> torch.LongTensor:
        column = self.config.data.token_column
        if self.continuous:
            return self._posterior(batch)
        if column is not None:
            tokens = torch.as_tensor(batch[column], device=self.accelerator.device).long()
        else:
            with torch.no_grad():
                tokens = self.tokenizer.encode(batch["pixel_values"].to(self.accelerator.device)).token_ids
        model_config = self.accelerator.unwrap_model(self.model).config
        num_bits = getattr(model_config, "num_bits", None)
        if not (num_bits and tokens.ndim == 3 and tokens.shape[-1] == num_bits):
            tokens = tokens.flatten(1)  # 2D token grids in raster order (binary tokens [B, n, bits] keep their bits)
        num_tokens = model_config.num_tokens
        prefix = self.spec.takes_token_prefix
        if tokens.shape[1] < num_tokens or (not prefix and tokens.shape[1] != num_tokens):
            raise ValueError(f"training tokens must have shape [B, {num_tokens}]"
                             f"{' (or a longer 1D sequence)' if prefix else ''}, got {tuple(tokens.shape)}")
        return tokens[:, :num_tokens]  # a variable-length 1D tokenizer's prefix

    def _posterior(self, batch: dict) -> torch.Tensor:
        """``[B, num_tokens, 2C]``: the frozen continuous tokenizer's posterior (mean, log-variance) of the images."""
        with torch.no_grad():
            out = self.tokenizer.encode(batch["pixel_values"].to(self.accelerator.device))
        posterior = torch.cat([out.latent_mean, out.latent_logvar], dim=-1)
        model_config = self.accelerator.unwrap_model(self.model).config
        expected = (model_config.num_tokens, 2 * model_config.token_dim)
        if tuple(posterior.shape[1:]) != expected:
            raise ValueError(f"the tokenizer's posterior has shape {tuple(posterior.shape)}; the generator takes "
                             f"[B, {expected[0]}, {expected[1]}] (num_tokens, mean and log-variance of token_dim channels)")
        return posterior

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        model_config = self.accelerator.unwrap_model(self.model).config
        tokens = self._tokens(batch)
        if self.text_pipeline is not None:
            if not hasattr(self, "_fixed_captions"):
                self._fixed_captions = list(batch["captions"])[:8]
            result = self._text_logits(tokens, batch["captions"])
        else:
            result = self._class_logits(tokens, batch["labels"].to(tokens.device), model_config)
        if self.continuous:  # the objective's own loss (continuous tokens: no logits)
            loss, terms = result, {}
        else:
            logits, targets = result
            smoothing = self.config.loss.label_smoothing
            if smoothing is None:
                smoothing = self.spec.label_smoothing
            loss = F.cross_entropy(logits.float(), targets, label_smoothing=smoothing)
            with torch.no_grad():
                terms = {"token_accuracy": (logits.argmax(-1) == targets).float().mean()}
        self.accelerator.backward(loss)
        self.step_optimizer(0)
        return {"loss": loss.detach(), **terms}

    def _class_logits(self, tokens, labels, model_config):
        """(logits [n, V], targets [n]) of the family's objective for class-conditional models."""
        if int(labels.min()) < 0 or int(labels.max()) >= model_config.num_classes:
            raise ValueError(f"class labels must lie in [0, {model_config.num_classes - 1}], got {labels.tolist()}")
        return self.spec.objective(self.model, model_config, self.tokenizer, tokens, labels, self.config.loss)

    def _text_logits(self, tokens, captions):
        """The family's text objective: (logits, targets), or the loss of a continuous-token generator; by default
        next-token logits after the left-padded T5 features of the captions (LlamaGen t2i)."""
        pipe = self.text_pipeline
        if self.spec.text_objective is not None:
            return self.spec.text_objective(self.model, self.tokenizer, tokens, pipe, list(captions), self.config.loss)
        embeds, mask = pipe.left_pad(*pipe.encode_prompt(list(captions)))
        keys = torch.cat([mask.bool(), torch.ones(tokens.shape[0], tokens.shape[1] - 1, dtype=torch.bool, device=mask.device)], 1)
        logits = self.model(input_ids=tokens[:, :-1], caption_embeds=embeds, attention_mask=keys).logits
        return logits.flatten(0, 1), tokens.flatten()

    def _pipeline(self):
        transformer = self.averaged_model().eval()
        if self.text_pipeline is not None:
            pipe = self.text_pipeline
            return type(pipe)(image_tokenizer=self.tokenizer, transformer=transformer, text_encoder=pipe.text_encoder,
                              tokenizer=pipe.tokenizer)
        return self.spec.pipeline_class()(image_tokenizer=self.tokenizer, transformer=transformer)

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
