"""The model card of a model exported at the end of a training run."""

from __future__ import annotations

import json
import shlex
import sys

from ..hub.cards import render_model_card
from .trainer import _dump_config

_USAGE = {
    "tokenizer": """import torch, vistok
from transformers import AutoModel, AutoImageProcessor

tokenizer = AutoModel.from_pretrained("PATH").eval()
processor = AutoImageProcessor.from_pretrained("PATH")
pixel_values = processor(images=[image], return_tensors="pt").pixel_values
with torch.no_grad():
    token_ids = tokenizer.encode(pixel_values).token_ids
    reconstruction = tokenizer.decode(token_ids)""",
    "generator": """import torch
from vistok import PIPELINE

pipe = PIPELINE.from_pretrained("PATH")
images = pipe(class_labels=[0, 1], generator=torch.Generator().manual_seed(0)).images""",
}


def render_training_card(trainer, model_config) -> str:
    config, acc = trainer.config, trainer.accelerator
    last = {}
    metrics = trainer.output_dir / "metrics.jsonl"
    if metrics.is_file():
        lines = metrics.read_text().strip().splitlines()
        last = json.loads(lines[-1]) if lines else {}
    family = trainer.spec.name
    return render_model_card(
        "trained",
        metadata={"library_name": "vistok", "license": "apache-2.0", "pipeline_tag": None,
                  "tags": ["vistok", trainer.kind, family], "datasets": [config.data.dataset],
                  "base_model": config.model.pretrained},
        model_name=f"{family} {trainer.kind}",
        kind=trainer.kind,
        kind_command=trainer.kind,
        architecture=f"{family} ({model_config.model_type}); " + ", ".join(
            f"{k}={getattr(model_config, k)}" for k in ("image_size", "num_tokens", "codebook_size") if hasattr(model_config, k)),
        dataset=config.data.dataset,
        split=config.data.split,
        steps=trainer.step,
        batch_size=config.training.batch_size,
        processes=acc.num_processes,
        accumulation=config.training.gradient_accumulation_steps,
        final_loss=f"{last['loss']:.4f} (step {last['step']})" if "loss" in last else "not logged",
        usage=_usage(trainer),
        command=" ".join(shlex.quote(a) for a in ["vistok", "train", trainer.kind, *getattr(trainer, "argv", sys.argv[1:])]),
        config=_dump_config(config).strip(),
    )


def _usage(trainer) -> str:
    usage = _USAGE[trainer.kind].replace("PATH", str(trainer.output_dir / "final")).replace("PIPELINE", _pipeline_name(trainer))
    if getattr(trainer, "text_pipeline", None) is not None:  # a text-to-image generator takes prompts, not class labels
        usage = usage.replace("class_labels=[0, 1]", 'prompt=["a red car"]')
    return usage


def _pipeline_name(trainer) -> str:
    if trainer.kind != "generator":
        return ""
    text = getattr(trainer, "text_pipeline", None) is not None
    return trainer.spec.text_pipeline if text else trainer.spec.pipeline
