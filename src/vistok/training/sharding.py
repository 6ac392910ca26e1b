"""FSDP and DeepSpeed on CPU processes (gloo), where accelerate alone would train DDP.

accelerate (1.16) turns an FSDP launch into ``DistributedType.FSDP`` only for accelerator devices
(MULTI_GPU/XPU/NPU/...). Without a GPU a multi-process (gloo) group needs ``Accelerator(cpu=True)``, and
then accelerate sets MULTI_CPU and ignores the FSDP plugin: a run of ``accelerate launch --config_file
configs/accelerate/fsdp*.yaml`` would train as DistributedDataParallel.

FSDP: when the launch asked for it (``ACCELERATE_USE_FSDP=true`` and the ``FSDP_*`` variables that
``accelerate launch`` sets from the config's ``fsdp_config``) but accelerate's state is MULTI_CPU, the
trainer shards the trained model here instead (TorchFSDP), with ``torch.distributed.fsdp.fully_shard``
(FSDP2) on a CPU DeviceMesh over the process group accelerate formed, and says so in the log. Checkpoints
hold the sharded model and optimizer state (torch.distributed.checkpoint, one file per rank); the export
gathers the full state dict on rank 0.

DeepSpeed: accelerate selects it only when ``not cpu``, and with ``cpu=False`` on a machine without an
accelerator it finds no process-group backend. Asked for gloo explicitly (``InitProcessGroupKwargs``), it
lets DeepSpeed initialise its communication on DeepSpeed's CPU accelerator and runs ZeRO through its usual
DeepSpeed path (accelerator_kwargs below); needs the deepspeed package and ``use_cpu: false`` in the config.

ZeRO-3 partitions every parameter and gathers a module's own parameters only around that module's forward.
Two things in vistok read parameters elsewhere, and are handled here: a quantizer reads its codebook
(``embedding.weight``) in its own forward without calling the Embedding, so quantizers are marked ZeRO-3 leaf
modules (their whole subtree is gathered on entering their forward: :func:`mark_zero3_leaf_modules`); and
transformers' ``from_pretrained`` partitions any model loaded while a stage-3 DeepSpeed config is live, which would
leave a generator's frozen tokenizer (never handed to DeepSpeed) with empty weights, so frozen helper models load
outside it (:func:`unpartitioned_loading`).

A launch that asked for FSDP or DeepSpeed and would get anything else is an error, never a silent DDP run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

FSDP_FOLDER = "fsdp"  # inside a checkpoint folder: the torch.distributed.checkpoint shards
WRAP_POLICIES = ("TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP")


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes")


def accelerator_kwargs(cpu: bool) -> dict:
    """``cpu`` (and a gloo process group for DeepSpeed) for Accelerator: a DeepSpeed launch without a GPU runs
    with cpu=False and an explicit gloo backend, since accelerate selects DeepSpeed only when ``not cpu``."""
    if not (_flag("ACCELERATE_USE_DEEPSPEED") and cpu):
        return {"cpu": cpu}
    if _flag("ACCELERATE_USE_CPU"):
        raise ValueError("the launch asked for DeepSpeed (ACCELERATE_USE_DEEPSPEED=true) with use_cpu: true, which makes "
                         "accelerate ignore DeepSpeed and train as DistributedDataParallel; on CPU set use_cpu: false "
                         "(configs/accelerate/deepspeed_cpu.yaml)")
    if int(os.environ.get("LOCAL_RANK", -1)) == -1:
        raise ValueError("the launch asked for DeepSpeed (ACCELERATE_USE_DEEPSPEED=true) but this process was not started "
                         "by a launcher; run `accelerate launch --config_file configs/accelerate/deepspeed_cpu.yaml -m "
                         "vistok.training.tokenizer ...`")
    if importlib.util.find_spec("deepspeed") is None:
        raise ValueError("the launch asked for DeepSpeed but the deepspeed package is not installed "
                         "(pip install deepspeed==0.19.8)")
    from accelerate.utils import InitProcessGroupKwargs

    return {"cpu": False, "kwargs_handlers": [InitProcessGroupKwargs(backend="gloo")]}


def deepspeed_zero_stage(accelerator) -> int | None:
    """The ZeRO stage of a DeepSpeed run, else None."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return None
    return int(accelerator.state.deepspeed_plugin.zero_stage)


def mark_zero3_leaf_modules(module: torch.nn.Module) -> int:
    """Mark every quantizer in ``module`` a ZeRO-3 leaf (gathered whole on its forward); returns how many."""
    from deepspeed.utils import set_z3_leaf_modules

    from ..modeling.quantizers.base import Quantizer

    return len(set_z3_leaf_modules(module, [Quantizer], raise_if_not_found=False))


@contextlib.contextmanager
def unpartitioned_loading():
    """``from_pretrained`` inside this block loads whole weights even while a ZeRO-3 DeepSpeed config is live
    (transformers reads that config through a module-level weak reference, which accelerate sets whatever its
    zero3_init_flag says); for frozen models DeepSpeed never trains. A no-op without DeepSpeed."""
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:
        yield
        return
    reference = hf_deepspeed._hf_deepspeed_config_weak_ref
    live = reference() if reference is not None else None
    if live is None or not hf_deepspeed.is_deepspeed_zero3_enabled():
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(live)


def torch_fsdp_for(accelerator) -> "TorchFSDP | None":
    """The TorchFSDP to use when the launch asked for FSDP and accelerate did not enable it, else None.

    Raises ValueError when FSDP was asked for but neither accelerate nor this CPU path can run it."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if _flag("ACCELERATE_USE_DEEPSPEED") and kind != DistributedType.DEEPSPEED:
        raise ValueError(f"the launch asked for DeepSpeed (ACCELERATE_USE_DEEPSPEED=true) but accelerate runs {kind} on "
                         f"{accelerator.num_processes} process(es); vistok does not train a DeepSpeed config as anything else")
    if not _flag("ACCELERATE_USE_FSDP") or kind == DistributedType.FSDP:
        return None
    if kind == DistributedType.MULTI_CPU:
        return TorchFSDP.from_env(accelerator.num_processes)
    raise ValueError(
        f"the launch asked for FSDP (ACCELERATE_USE_FSDP=true) but accelerate runs {kind} on "
        f"{accelerator.num_processes} process(es); vistok does not train an FSDP config as anything else. Launch "
        "several processes, e.g. `accelerate launch --config_file configs/accelerate/fsdp_cpu.yaml -m "
        "vistok.training.tokenizer ...` (CPU, gloo) or configs/accelerate/fsdp.yaml on GPUs")


def plain_class(model: torch.nn.Module) -> type:
    """The model's own class (fully_shard swaps in a subclass ``FSDP<Class>``)."""
    from torch.distributed.fsdp import FSDPModule

    return next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))


class TorchFSDP:
    """fully_shard (FSDP2) of one trained model on a CPU DeviceMesh, with sharded checkpoints."""

    def __init__(self, world_size: int, *, auto_wrap_policy: str = "TRANSFORMER_BASED_WRAP",
                 layer_classes: list[str] | None = None, min_num_params: int = 100_000_000,
                 reshard_after_forward: bool = True, state_dict_type: str = "SHARDED_STATE_DICT",
                 version: str = "2"):
        if auto_wrap_policy not in WRAP_POLICIES:
            raise ValueError(f"fsdp_auto_wrap_policy={auto_wrap_policy!r}: this CPU FSDP path takes one of {WRAP_POLICIES}")
        self.world_size = world_size
        self.auto_wrap_policy = auto_wrap_policy
        self.layer_classes = layer_classes
        self.min_num_params = min_num_params
        self.reshard_after_forward = reshard_after_forward
        self.state_dict_type = state_dict_type
        self.version = version
        self.mesh = None

    @classmethod
    def from_env(cls, world_size: int) -> "TorchFSDP":
        """Read the FSDP_* variables ``accelerate launch`` sets from a config's fsdp_config."""
        env = os.environ
        if _flag("FSDP_ACTIVATION_CHECKPOINTING"):
            raise ValueError("fsdp_activation_checkpointing: true is not applied by the CPU FSDP path; set it to false "
                             "and use training.gradient_checkpointing: true")
        classes = [c.strip() for c in env.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "").split(",") if c.strip()] or None
        return cls(world_size, auto_wrap_policy=env.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP") or "NO_WRAP",
                   layer_classes=classes, min_num_params=int(env.get("FSDP_MIN_NUM_PARAMS", "100000000")),
                   reshard_after_forward=env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() not in ("false", "no_shard", "shard_grad_op"),
                   state_dict_type=env.get("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT"),
                   version=env.get("FSDP_VERSION", "1"))

    def describe(self) -> str:
        return (f"accelerate enables FSDP only on accelerator devices and would run this CPU launch (gloo, "
                f"{self.world_size} processes, distributed_type MULTI_CPU) as DistributedDataParallel; vistok shards the "
                f"model itself with torch.distributed.fsdp.fully_shard (FSDP2) on a CPU DeviceMesh "
                f"(wrap policy {self.auto_wrap_policy}, reshard_after_forward={self.reshard_after_forward}"
                + (f", the config's fsdp_version {self.version} runs as FSDP2" if self.version != "2" else "")
                + "); checkpoints are sharded (torch.distributed.checkpoint)"
                + (" whatever fsdp_state_dict_type says (the export holds the full state dict)"
                   if self.state_dict_type != "SHARDED_STATE_DICT" else "") + ", the export gathers the full state dict")

    # -- sharding ---------------------------------------------------------------------------------------
    def _wrapped_blocks(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        if self.auto_wrap_policy == "NO_WRAP":
            return []
        if self.auto_wrap_policy == "SIZE_BASED_WRAP":
            chosen, covered = [], set()
            for module in _post_order(model):
                if module is model:
                    continue
                own = sum(p.numel() for p in module.parameters() if id(p) not in covered)
                if own >= self.min_num_params:
                    chosen.append(module)
                    covered.update(id(p) for p in module.parameters())
            return chosen
        names = self.layer_classes or list(getattr(model, "_no_split_modules", None) or [])
        blocks = [m for m in model.modules() if m is not model and type(m).__name__ in names]
        if not blocks:
            raise ValueError(f"fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP found no layer of class {names} in "
                             f"{type(model).__name__}; set fsdp_transformer_layer_cls_to_wrap or fsdp_auto_wrap_policy: NO_WRAP")
        return blocks

    def shard(self, model: torch.nn.Module, forward_methods: tuple[str, ...] = ()) -> torch.nn.Module:
        """fully_shard each block (inner first) and the root, in place. Every rank must hold the same weights."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        self.mesh = init_device_mesh("cpu", (self.world_size,))
        blocks = self._wrapped_blocks(model)
        inner = set()
        for block in blocks:  # a block inside another block is sharded first
            inner.update(id(m) for m in block.modules() if m is not block)
        for block in sorted(blocks, key=lambda b: id(b) not in inner):
            fully_shard(block, mesh=self.mesh, reshard_after_forward=self.reshard_after_forward)
        fully_shard(model, mesh=self.mesh, reshard_after_forward=self.reshard_after_forward)
        from torch.distributed.fsdp import register_fsdp_forward_method

        for name in forward_methods:  # methods other than forward that training calls gather the weights too
            register_fsdp_forward_method(model, name)
        self.num_units = len(blocks) + 1
        return model

    # -- state --------------------------------------------------------------------------------------------
    def full_state_dict(self, model: torch.nn.Module) -> dict:
        """The full (unsharded) state dict on rank 0, an empty dict elsewhere: a collective on every rank."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def save(self, folder: Path, model, optimizers, schedulers, is_main_process: bool) -> None:
        """Model and optimizer shards (one file per rank) and the schedulers' states; a collective."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optimizer_state = get_state_dict(model, optimizers)
        dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(folder))
        if is_main_process:  # every rank steps its schedulers alike
            (folder / "schedulers.json").write_text(json.dumps([s.state_dict() for s in schedulers]))

    def load(self, folder: Path, model, optimizers, schedulers) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        if not (folder / ".metadata").is_file():
            raise ValueError(f"{folder.parent} is not a checkpoint of an FSDP (CPU) run: no {FSDP_FOLDER}/.metadata")
        model_state, optimizer_state = get_state_dict(model, optimizers)
        state = {"model": model_state, "optimizer": optimizer_state}
        dcp.load(state, checkpoint_id=str(folder))
        set_state_dict(model, optimizers, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        for scheduler, saved in zip(schedulers, json.loads((folder / "schedulers.json").read_text()), strict=True):
            scheduler.load_state_dict(saved)


def _post_order(module: torch.nn.Module):
    for child in module.children():
        yield from _post_order(child)
    yield module
