"""The training loop every vistok objective shares, on accelerate.

What it owns: the accelerator (DDP/FSDP/DeepSpeed come from ``accelerate launch`` configs, mixed
precision and gradient accumulation from the training config; on CPU processes an FSDP launch, which
accelerate would run as DDP, shards with torch's fully_shard instead, and DeepSpeed needs a gloo group:
sharding.py), data loading, optimizer-step counting, checkpoints, exact resume, fault handling, logging
and image grids. An objective (tokenizer.py, generator.py) supplies the models, the loss of one batch,
the grids and the export.

Exact resume: the sampler is seedable and re-seeded per epoch, augmentations draw from per-example
generators seeded by (seed, epoch, index), and accelerate restores the global RNG, so a run resumed
from a checkpoint continues bit for bit like the uninterrupted run.

No lost work: a checkpoint is written to a scratch folder and renamed into place, so a crash while
saving leaves the previous checkpoints intact; SIGTERM/SIGINT end the current step, save a checkpoint
and return; a non-finite loss stops the run naming the step, without saving over the last good
checkpoint.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
import os
import shutil
import signal
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

from ..data import ImageTransform, collate_examples, load_image_dataset
from .models import EMAWeights
from .sharding import (FSDP_FOLDER, accelerator_kwargs, deepspeed_zero_stage, mark_zero3_leaf_modules, plain_class,
                       torch_fsdp_for)

CHECKPOINT_PREFIX = "checkpoint-"
INDEX_COLUMN = "__vistok_index__"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the message names the optimizer step."""


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``output_dir/checkpoints``, oldest first (scratch folders are ignored)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
             and p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


class Trainer(ABC):
    """Subclasses set ``kind`` and implement build_models, compute_loss, save_images and export."""

    kind = ""

    def __init__(self, config, *, step_callback=None):
        self.config = config
        t = config.training
        self.output_dir = Path(t.output_dir).expanduser()
        self.step_callback = step_callback  # called with (trainer, step) after each optimizer step (tests, hooks)
        if "tensorboard" in t.report_to:
            try:
                import tensorboard  # noqa: F401
            except ImportError as err:
                raise ValueError("training.report_to includes 'tensorboard' but the tensorboard package is not "
                                 "installed (pip install 'vistok[train]')") from err
        self.accelerator = Accelerator(
            # without a GPU, accelerate only forms a multi-process (gloo) group under torchrun when told cpu=True
            # (DeepSpeed: cpu=False and an explicit gloo group, see sharding.py)
            **accelerator_kwargs(cpu=not torch.cuda.is_available()),
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            mixed_precision=t.mixed_precision,
            log_with="tensorboard" if "tensorboard" in t.report_to else None,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        # an FSDP launch that accelerate runs as MULTI_CPU: vistok shards with torch's fully_shard (or refuses)
        self.torch_fsdp = torch_fsdp_for(self.accelerator)
        if self.torch_fsdp is not None and self.accelerator.is_main_process:
            import logging

            logging.getLogger(__name__).warning("vistok train: FSDP on CPU: %s", self.torch_fsdp.describe())
        self.step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self._stop_signal = None

    # -- hooks for objectives ---------------------------------------------------------------------
    @abstractmethod
    def build_models(self) -> None:
        """Create self.model (the trained model) and any auxiliary modules; may read self.dataset."""

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        """Modules that get their own optimizer, by name; the first is the main model."""
        return {"model": self.model}

    @abstractmethod
    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Run one micro-batch forward and backward; return the logged terms (``loss`` first)."""

    @abstractmethod
    def save_images(self, path: Path) -> None:
        """Write a PNG grid (reconstructions or samples) to ``path``."""

    @abstractmethod
    def export(self, path: Path) -> None:
        """Write the trained model as a from_pretrained folder (with processor and card) into ``path``."""

    def data_columns(self) -> dict:
        d = self.config.data
        return dict(image_column=d.image_column, label_column=d.label_column, caption_column=d.caption_column)

    @abstractmethod
    def image_size_and_range(self) -> tuple[int, tuple[float, float]]:
        """The pixel size and range the image transform produces for this model."""

    # -- setup --------------------------------------------------------------------------------------
    def _load_data(self):
        d, t = self.config.data, self.config.training
        columns = self.data_columns()
        extra = (d.token_column,) if d.token_column else ()
        dataset = load_image_dataset(d.dataset, split=d.split, streaming=d.streaming, extra_columns=extra, **columns)
        self.dataset = dataset
        self.build_models()
        passthrough = extra
        if d.image_column is not None:
            size, pixel_range = self.image_size_and_range()
            self.transform = ImageTransform(size, pixel_range, crop_scale=d.crop_scale, crop_ratio=d.crop_ratio,
                                            random_flip=d.random_flip, passthrough_columns=passthrough, **columns)
        else:
            self.transform = _ColumnsOnly(d.label_column, passthrough)
        self.transform.seed = t.seed
        if d.streaming:
            from datasets.distributed import split_dataset_by_node

            shard = split_dataset_by_node(dataset.shuffle(seed=t.seed, buffer_size=1000),
                                          rank=self.accelerator.process_index, world_size=self.accelerator.num_processes)
            self._streaming = shard
            transform = self.transform
            return torch.utils.data.DataLoader(shard, batch_size=t.batch_size, num_workers=d.num_workers,
                                               collate_fn=lambda examples: transform(_to_columns(examples)))
        self._streaming = None
        indexed = dataset.add_column(INDEX_COLUMN, list(range(len(dataset)))).with_transform(self.transform)
        # the loader's own generator: creating an iterator must not draw from the global RNG, whose
        # sequence (masking, tail-token drop) has to be the same in a resumed run
        loader = torch.utils.data.DataLoader(indexed, batch_size=t.batch_size, shuffle=True, drop_last=True,
                                             num_workers=d.num_workers, collate_fn=collate_examples,
                                             generator=torch.Generator().manual_seed(t.seed))
        if len(loader) == 0 or len(dataset) < t.batch_size * self.accelerator.num_processes:
            raise ValueError(f"dataset {d.dataset} has {len(dataset)} examples: fewer than one batch of "
                             f"{t.batch_size} per process on {self.accelerator.num_processes} process(es)")
        return loader

    def _optimizers(self):
        t = self.config.training
        from transformers import get_scheduler

        optimizers, schedulers = [], []
        for name, module in self.trainable_modules().items():
            lr = self.learning_rate_for(name)
            params = [p for p in module.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=lr, betas=tuple(t.adam_betas), weight_decay=t.weight_decay)
            # accelerate steps a prepared scheduler once per process per optimizer step
            scheduler = get_scheduler(t.lr_schedule, optimizer, num_warmup_steps=t.warmup_steps * self.accelerator.num_processes,
                                      num_training_steps=t.max_steps * self.accelerator.num_processes)
            optimizers.append(optimizer)
            schedulers.append(scheduler)
        return optimizers, schedulers

    def learning_rate_for(self, name: str) -> float:
        return self.config.training.learning_rate

    def fsdp_forward_methods(self) -> tuple[str, ...]:
        """Methods of the main model, besides forward, that compute_loss calls (a sharded model gathers for them)."""
        return ()

    # -- checkpoints ----------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """accelerate state + trainer state into a scratch folder, renamed into place when complete."""
        acc = self.accelerator
        root = self.output_dir / "checkpoints"
        final = root / f"{CHECKPOINT_PREFIX}{self.step}"
        scratch = root / f".partial-{CHECKPOINT_PREFIX}{self.step}"
        if acc.is_main_process:
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
        acc.wait_for_everyone()
        try:
            acc.save_state(str(scratch))  # with torch_fsdp: RNG and sampler states (the model is not prepared)
            if self.torch_fsdp is not None:
                self.torch_fsdp.save(scratch / FSDP_FOLDER, self.model, self.optimizers, self.schedulers, acc.is_main_process)
            if acc.is_main_process:
                self.save_extra_state(scratch)
                state = {"step": self.step, "epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch}
                (scratch / "trainer_state.json").write_text(json.dumps(state))
        except BaseException:
            if acc.is_main_process:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        acc.wait_for_everyone()
        if acc.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            os.replace(scratch, final)
            limit = self.config.training.checkpoints_total_limit
            if limit:
                for old in list_checkpoints(self.output_dir)[:-limit]:
                    shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def _resume(self, loader) -> None:
        target = self.config.training.resume_from_checkpoint
        if not target:
            return
        if target == "latest":
            found = list_checkpoints(self.output_dir)
            if not found:
                self.accelerator.print(f"no checkpoint in {self.output_dir / 'checkpoints'}: starting from step 0")
                return
            folder = found[-1]
        else:
            folder = Path(target).expanduser()
            if not (folder / "trainer_state.json").is_file():
                raise ValueError(f"resume_from_checkpoint={target!r} is not a complete vistok checkpoint folder "
                                 "(no trainer_state.json); pass 'latest' or a checkpoints/checkpoint-N folder")
        self.accelerator.load_state(str(folder))
        if self.torch_fsdp is not None:
            self.torch_fsdp.load(folder / FSDP_FOLDER, self.model, self.optimizers, self.schedulers)
        state = json.loads((folder / "trainer_state.json").read_text())
        self.step, self.epoch, self.batches_in_epoch = state["step"], state["epoch"], state["batches_in_epoch"]
        self.load_extra_state(folder)
        self.accelerator.print(f"resumed from {folder} at step {self.step}")

    # -- the loop ---------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        self._stop_signal = signum

    def train(self) -> dict:
        """Train to ``max_steps`` (or until a signal); returns a summary (steps, interrupted, last losses)."""
        acc, t = self.accelerator, self.config.training
        set_seed(t.seed)  # identical initial weights on every process
        loader = self._load_data()
        if t.ema_decay > 0 and self._sharded:
            raise ValueError("training.ema_decay > 0 is not supported with FSDP/DeepSpeed (the EMA would see only "
                             "this rank's shard); train with DDP or set training.ema_decay: 0")
        self.ema = EMAWeights(self.model, t.ema_decay) if t.ema_decay > 0 else None
        modules = self.trainable_modules()
        if t.gradient_checkpointing:
            for module in modules.values():
                if getattr(module, "supports_gradient_checkpointing", False):
                    module.activation_checkpointing_enable()  # (transformers 5 name)
        if self.torch_fsdp is not None or deepspeed_zero_stage(acc) is not None:
            self._check_one_sharded_model(modules)
        if self.torch_fsdp is not None:
            # before the optimizer: it must hold the sharded parameters
            self.torch_fsdp.shard(self.model, forward_methods=self.fsdp_forward_methods())
        if deepspeed_zero_stage(acc) == 3:
            for module in modules.values():  # before DeepSpeed installs its gather hooks
                mark_zero3_leaf_modules(module)
        optimizers, schedulers = self._optimizers()
        if self.torch_fsdp is not None:
            # accelerate prepares only the loader: it would wrap the model in DDP and save the optimizer from rank 0
            # alone; step_optimizer keeps accelerate's accumulation and scheduler semantics
            self.prepared_modules = dict(modules)
            self.optimizers, self.schedulers = optimizers, schedulers
            loader = acc.prepare(loader) if self._streaming is None else loader
        else:
            prepared = acc.prepare(*modules.values(), *optimizers, *schedulers,
                                   *([loader] if self._streaming is None else []))
            count = len(modules)
            self.prepared_modules = dict(zip(modules, prepared[:count]))
            self.model = self.prepared_modules["model"]
            self.optimizers = list(prepared[count: 2 * count])
            self.schedulers = list(prepared[2 * count: 3 * count])
            loader = prepared[-1] if self._streaming is None else loader
        set_seed(t.seed, device_specific=True)  # decorrelate ranks' masking/dropout draws; a resume restores the saved RNG
        self._resume(loader)
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.yaml").write_text(_dump_config(self.config))
        if "tensorboard" in t.report_to:
            acc.init_trackers(self.kind or "vistok")

        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in previous:
            signal.signal(s, self._on_signal)
        summary = {"start_step": self.step, "interrupted": False}
        try:
            self._loop(loader, summary)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if "tensorboard" in t.report_to:
                acc.end_training()
        if not summary["interrupted"] and t.export and self.step >= t.max_steps:
            acc.wait_for_everyone()
            # FSDP/DeepSpeed hold shards: gathering the full state dict is a collective on every rank
            self._gathered_state = self._gather_full_state()
            if acc.is_main_process:
                from ..utils.io import atomic_output_dir

                with atomic_output_dir(self.output_dir / "final", overwrite=True) as scratch:
                    self.export(Path(scratch))
            acc.wait_for_everyone()
            summary["export"] = str(self.output_dir / "final")
        summary["step"] = self.step
        return summary

    def _batches(self, loader):
        """Yield (epoch, batch) from the resume point on, forever."""
        while True:
            self.transform.epoch = self.epoch
            if self._streaming is not None:
                self._streaming.set_epoch(self.epoch)
                iterator = iter(loader)
                for _ in range(self.batches_in_epoch):
                    next(iterator, None)
            else:
                loader.set_epoch(self.epoch)
                iterator = iter(self.accelerator.skip_first_batches(loader, self.batches_in_epoch)
                                if self.batches_in_epoch else loader)
            for batch in self._synchronized(iterator):
                self.batches_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batches_in_epoch = 0

    def _synchronized(self, iterator):
        """Stream shards can hold different numbers of batches; an epoch ends on every rank when one runs out
        (a rank waiting in a collective for a batch that never comes would hang the run)."""
        if self._streaming is None or self.accelerator.num_processes == 1:
            yield from iterator
            return
        while True:
            batch = next(iterator, None)
            have = torch.tensor(0.0 if batch is None else 1.0, device=self.accelerator.device)
            if float(self.accelerator.reduce(have, reduction="sum")) < self.accelerator.num_processes:
                return
            yield batch

    def _loop(self, loader, summary) -> None:
        acc, t = self.accelerator, self.config.training
        from tqdm.auto import tqdm

        progress = tqdm(total=t.max_steps, initial=self.step, disable=not acc.is_local_main_process, desc=f"train {self.kind}")
        metrics_path = self.output_dir / "metrics.jsonl"
        window_images, window_start = 0, time.perf_counter()
        logged: dict[str, float] = {}
        if self.step >= t.max_steps:
            progress.close()
            return
        import contextlib

        # a prepared model runs forward under the mixed-precision autocast; the torch_fsdp model is not prepared
        autocast = acc.autocast if self.torch_fsdp is not None else contextlib.nullcontext
        for batch in self._batches(loader):
            with acc.accumulate(*self.prepared_modules.values()), autocast():
                terms = self.compute_loss(batch)
            local_bad = torch.tensor(0.0 if all(torch.isfinite(v).all() for v in terms.values()) else 1.0, device=acc.device)
            if float(acc.reduce(local_bad, reduction="sum")) > 0:
                bad = {k: float(v) for k, v in terms.items()}
                raise NonFiniteLossError(
                    f"non-finite loss at optimizer step {self.step + 1} (terms: {bad}); stopped without saving. "
                    f"The last good checkpoint is {_newest(self.output_dir)}")
            window_images += int(next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0]) * acc.num_processes
            for key, value in terms.items():
                logged[key] = logged.get(key, 0.0) + float(value.detach()) / t.gradient_accumulation_steps
            if not acc.sync_gradients:
                continue
            self.step += 1
            self.after_optimizer_step()
            progress.update(1)
            if self.step % t.log_every == 0 or self.step == t.max_steps:
                elapsed = time.perf_counter() - window_start
                record = {"step": self.step, "epoch": self.epoch, **{k: round(v, 6) for k, v in logged.items()},
                          "lr": self.schedulers[0].get_last_lr()[0], "images_per_s": round(window_images / max(elapsed, 1e-9), 3)}
                progress.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}", img_s=f"{record['images_per_s']:.1f}")
                if acc.is_main_process:
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                if "tensorboard" in t.report_to:
                    acc.log({k: v for k, v in record.items() if k != "step"}, step=self.step)
                summary["last"] = record
                window_images, window_start = 0, time.perf_counter()
            logged = {}
            if self.step % t.image_every == 0:
                # a sharded model runs forward only on every rank together: gather a full copy first
                self._gathered_state = self._gather_full_state()
                if acc.is_main_process:
                    path = self.output_dir / "images" / f"step-{self.step:07d}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self.save_images(path)
                self._gathered_state = None
            if self.step_callback is not None:
                self.step_callback(self, self.step)
            stop = torch.tensor(float(self._stop_signal is not None), device=acc.device)
            stopping = float(acc.reduce(stop, reduction="sum")) > 0
            if self.step % t.checkpointing_steps == 0 or self.step == t.max_steps or stopping:
                self.save_checkpoint()
            if stopping:
                acc.print(f"stopped by signal at step {self.step}; checkpoint saved")
                summary["interrupted"] = True
                break
            if self.step >= t.max_steps:
                break
        progress.close()

    def step_optimizer(self, index: int = 0) -> None:
        """Clip, step and zero the ``index``-th optimizer (accelerate makes these no-ops while accumulating)."""
        acc, t = self.accelerator, self.config.training
        module = list(self.prepared_modules.values())[index]
        if self.torch_fsdp is not None:
            # what accelerate's AcceleratedOptimizer/Scheduler do: act only on the synchronising micro-batch and
            # step the scheduler once per process (its warmup and length count process-steps)
            if not acc.sync_gradients:
                return
            if t.max_grad_norm:
                acc.clip_grad_norm_(module.parameters(), t.max_grad_norm)  # DTensor-aware: the norm of all shards
            self.optimizers[index].step()
            for _ in range(acc.num_processes):
                self.schedulers[index].step()
            self.optimizers[index].zero_grad(set_to_none=True)
            return
        if acc.sync_gradients and t.max_grad_norm:
            acc.clip_grad_norm_(module.parameters(), t.max_grad_norm)
        self.optimizers[index].step()
        self.schedulers[index].step()
        self.optimizers[index].zero_grad(set_to_none=True)

    def after_optimizer_step(self) -> None:
        if self.ema is not None:
            self.ema.update(self.accelerator.unwrap_model(self.model))

    def save_extra_state(self, folder: Path) -> None:
        """EMA weights (not a prepared module) as safetensors; objectives may add more."""
        if self.ema is not None:
            self.ema.save(folder / "ema.safetensors")

    def load_extra_state(self, folder: Path) -> None:
        if self.ema is not None:
            self.ema.load(folder / "ema.safetensors")

    def averaged_model(self):
        """The trained model for export and grids: a copy holding the EMA weights when EMA is on."""
        model = self.accelerator.unwrap_model(self.model)
        if self._sharded and getattr(self, "_gathered_state", None) is not None:
            with torch.random.fork_rng(devices=[]):  # building the copy must not draw from rank 0's global RNG
                full = plain_class(model)(model.config)
            full.load_state_dict(self._gathered_state)
            return full
        if self.ema is None:
            return model
        import copy

        model = copy.deepcopy(model)
        self.ema.copy_to(model)
        return model

    @property
    def _sharded(self) -> bool:
        from accelerate.utils import DistributedType

        return self.torch_fsdp is not None or self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)

    def _gather_full_state(self):
        """The main model's full state dict on the main process (a collective on every rank) when sharded, else None."""
        if not self._sharded:
            return None
        if self.torch_fsdp is not None:
            return self.torch_fsdp.full_state_dict(self.model)
        return self.accelerator.get_state_dict(self.model)

    def _check_one_sharded_model(self, modules: dict) -> None:
        """Sharded runs (the CPU FSDP path, DeepSpeed through one accelerate plugin) train one model."""
        if len(modules) > 1:
            kind = "FSDP" if self.torch_fsdp is not None else "DeepSpeed"
            raise ValueError(f"{kind} trains one model here; this run also trains {sorted(modules)[1:]} "
                             "(e.g. loss.discriminator_weight > 0): use DDP (configs/accelerate/cpu_2proc.yaml) for it")


class _ColumnsOnly:
    """Transform for datasets without images (pre-tokenized): labels and passthrough columns as tensors."""

    def __init__(self, label_column, passthrough):
        self.label_column, self.passthrough_columns = label_column, passthrough
        self.seed = self.epoch = 0

    def __call__(self, batch: dict) -> dict:
        out = {name: torch.as_tensor(batch[name]) for name in self.passthrough_columns}
        if self.label_column is not None:
            out["labels"] = torch.as_tensor(batch[self.label_column], dtype=torch.long)
        return out


def _to_columns(examples: list[dict]) -> dict:
    return {key: [example[key] for example in examples] for key in examples[0]}


def _newest(output_dir: Path) -> str:
    found = list_checkpoints(output_dir)
    return str(found[-1]) if found else "none (no checkpoint was written yet)"


def _dump_config(config) -> str:
    import dataclasses

    import yaml

    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
