"""Argument handling shared by ``vistok train tokenizer|generator`` and the ``-m`` entry points."""

from __future__ import annotations

import argparse
import sys

COMMON_KEYS = """common overrides (any config key works as --section.key=value or --section.key value):
  --data.dataset SRC                hub dataset id, imagefolder, or save_to_disk folder
  --data.streaming true             stream the dataset (sharded with split_dataset_by_node)
  --data.image_column / --data.label_column / --data.caption_column NAME
  --training.output_dir DIR         checkpoints/, metrics.jsonl, images/, final/
  --training.max_steps N            optimizer steps
  --training.batch_size N           per process
  --training.gradient_accumulation_steps N
  --training.mixed_precision no|bf16|fp16
  --training.resume_from_checkpoint latest|DIR
  --training.checkpointing_steps N  --training.checkpoints_total_limit N
"""


def parser(kind: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"vistok train {kind}", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Train a {kind} with accelerate (also: accelerate launch -m vistok.training.{kind} ...).",
        epilog=COMMON_KEYS)
    p.add_argument("--config", metavar="CFG.yaml", help="training config (see configs/ in the repository)")
    return p


def run_training(kind: str, trainer_cls, argv: list[str]) -> int:
    from .config import load_train_config
    from .trainer import NonFiniteLossError

    args, overrides = parser(kind).parse_known_args(argv)
    try:
        config = load_train_config(kind, args.config, overrides)
        trainer = trainer_cls(config)
        trainer.argv = list(argv)
        summary = trainer.train()
    except NonFiniteLossError as err:
        print(f"vistok train {kind}: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as err:
        print(f"vistok train {kind}: error: {err}", file=sys.stderr)
        return 2
    if trainer.accelerator.is_main_process:
        done = "interrupted; resume with --training.resume_from_checkpoint latest" if summary["interrupted"] else "done"
        print(f"vistok train {kind}: {done} at step {summary['step']}" + (f"; model in {summary['export']}" if "export" in summary else ""))
    return 0
