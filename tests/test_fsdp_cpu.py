"""FSDP and DeepSpeed on 2 CPU processes (gloo): `vistok train` under configs/accelerate/fsdp_cpu.yaml shards with
torch's fully_shard (accelerate would run it as DDP), checkpoints sharded state, resumes bit for bit and exports a full
save_pretrained folder; the same for DeepSpeed ZeRO-2 (configs/accelerate/deepspeed_cpu.yaml) where the deepspeed
package is installed; what ZeRO-3 needs of vistok's models; an FSDP or DeepSpeed launch that cannot run as such is an
error."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import yaml
from safetensors.torch import load_file

from vistok.training.cli import run_training
from vistok.training.tokenizer import TokenizerTrainer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"

# runs `vistok train KIND` (the CLI function) three times in the same 2 processes: 4 steps straight; 2 steps;
# a resume from that run's checkpoint to step 4
SCRIPT = """
import sys
from accelerate.state import AcceleratorState
from vistok.training.cli import run_training
from vistok.training.generator import GeneratorTrainer
from vistok.training.tokenizer import TokenizerTrainer

for kind, config, out in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    trainer_cls = {"tokenizer": TokenizerTrainer, "generator": GeneratorTrainer}[kind]
    for name, extra in (("straight", []), ("cut", ["--training.max_steps", "2", "--training.export", "false"]),
                        ("cut", ["--training.resume_from_checkpoint", "latest"])):
        AcceleratorState._reset_state(True)
        rc = run_training(kind, trainer_cls, ["--config", config, "--training.output_dir", f"{out}/{name}", *extra])
        assert rc == 0, (kind, name, rc)
"""


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label, name in enumerate(("red", "blue")):
        (root / name).mkdir()
        for i in range(6):  # 12 images: 3 batches of 2 per process and epoch, so a cut falls mid-epoch
            PIL.Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def _config(path: Path, **sections) -> str:
    base = {"training": {"batch_size": 2, "max_steps": 4, "checkpointing_steps": 2, "log_every": 1, "image_every": 2,
                         "learning_rate": 3e-3}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    path.write_text(yaml.safe_dump(base))
    return str(path)


# (ZeRO-3 on CPU processes stops inside DeepSpeed 0.19.8's first step, configs/accelerate/deepspeed_zero3.yaml: what
# vistok needs for it is tested below, one piece at a time)
@pytest.fixture(scope="module", params=["fsdp_cpu", "deepspeed_cpu"])
def launched(request, tmp_path_factory, imagefolder):
    """One `accelerate launch` of 2 CPU processes with configs/accelerate/<param>.yaml training a tokenizer and a MaskGIT
    generator (from images through a frozen TiTok): returns the config name, the output root and the launch's stderr."""
    from vistok import TiTokConfig, TiTokModel

    if request.param == "deepspeed_cpu":
        pytest.importorskip("deepspeed", reason="DeepSpeed runs only where the deepspeed package is installed")
    tmp = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    TiTokModel(TiTokConfig(image_size=16, patch_size=8, decoder_patch_size=8, num_tokens=4, codebook_size=32, token_dim=4,
                           encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2, decoder_hidden_size=32,
                           decoder_num_layers=1, decoder_num_heads=2, is_legacy=False)).save_pretrained(tmp / "titok")
    tokenizer = _config(tmp / "tok.yaml", model={"family": "one-d-piece", "config": dict(
        image_size=16, patch_size=8, decoder_patch_size=8, num_tokens=8, codebook_size=64, token_dim=4, is_legacy=False,
        encoder_hidden_size=32, encoder_num_layers=2, encoder_num_heads=2, decoder_hidden_size=32,
        decoder_num_layers=2, decoder_num_heads=2)}, data={"dataset": str(imagefolder)}, loss={"reconstruction": "l2"},
        training={"gradient_accumulation_steps": 2})
    generator = _config(tmp / "gen.yaml", model={"family": "maskgit", "config": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        sampling_defaults={"num_inference_steps": 2})},
        data={"dataset": str(imagefolder), "label_column": "label"}, loss={"tokenizer": str(tmp / "titok")})
    script = tmp / "runs.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    port = 29500 + (os.getpid() + len(request.param)) % 2000
    run = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                          str(CONFIGS / f"{request.param}.yaml"), "--main_process_port", str(port), str(script),
                          "tokenizer", tokenizer, str(tmp / "tokenizer"), "generator", generator, str(tmp / "generator")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return request.param, tmp, run.stderr


def _losses(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _checkpoint(folder: Path) -> dict:
    """A sharded (torch.distributed.checkpoint) checkpoint read back whole, offline."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    target = folder.parent / f"{folder.parent.name}-whole.pt"
    dcp_to_torch_save(str(folder), str(target))
    return torch.load(target, weights_only=True)


def _same(a: dict, b: dict) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("kind, weights_file", [("tokenizer", "model.safetensors"),
                                                 ("generator", "transformer/model.safetensors")])
def test_sharded_training_resumes_bit_exactly_and_exports_the_full_model(launched, kind, weights_file):
    name, tmp, stderr = launched
    straight, cut = tmp / kind / "straight", tmp / kind / "cut"
    # N steps straight == N/2, a resume, N/2 more: the same losses step by step and the same final weights
    first, second = _losses(straight), _losses(cut)
    assert [r["step"] for r in first] == [1, 2, 3, 4] == [r["step"] for r in second]
    assert [{k: v for k, v in r.items() if k != "images_per_s"} for r in first] == \
        [{k: v for k, v in r.items() if k != "images_per_s"} for r in second]
    assert first[0]["loss"] != first[-1]["loss"]
    assert (straight / "images" / "step-0000002.png").is_file()  # grids of the gathered model, mid-training
    exported = load_file(str(straight / "final" / weights_file))
    assert _same(exported, load_file(str(cut / "final" / weights_file)))
    checkpoint = straight / "checkpoints" / "checkpoint-4"
    if name == "fsdp_cpu":
        assert "vistok train: FSDP on CPU" in stderr and "torch.distributed.fsdp.fully_shard (FSDP2)" in stderr
        a, b = _checkpoint(checkpoint / "fsdp"), _checkpoint(cut / "checkpoints" / "checkpoint-4" / "fsdp")
        assert _same(a, b)  # model and AdamW state, bit for bit
        assert a["optimizer"]["state"] and json.loads((checkpoint / "fsdp" / "schedulers.json").read_text())
        # the checkpoint is sharded: each weight matrix is stored as one chunk per rank
        from torch.distributed.checkpoint import FileSystemReader

        metadata = FileSystemReader(str(checkpoint / "fsdp")).read_metadata()
        chunks = {k: len(v.chunks) for k, v in metadata.state_dict_metadata.items() if k.startswith("model.") and hasattr(v, "chunks")}
        assert chunks and max(chunks.values()) == 2
        assert sorted(p.name for p in (checkpoint / "fsdp").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
        # the export is the full trained model: the gathered shards of the last checkpoint
        trained = {k: v for k, v in a["model"].items() if k in exported}
        assert trained.keys() == exported.keys() and _same(exported, trained)
    else:  # ZeRO-2: the optimizer state is partitioned, one file per rank
        assert sorted(p.name for p in (checkpoint / "pytorch_model").glob("*optim_states.pt")) == [
            "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    import vistok  # noqa: F401
    from transformers import AutoModel

    model = AutoModel.from_pretrained(straight / "final" / os.path.dirname(weights_file))
    assert type(model).__name__ == ("OneDPieceModel" if kind == "tokenizer" else "MaskGITTransformer")
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in exported.items())


def test_fsdp_or_deepspeed_that_cannot_run_is_an_error_not_ddp(tmp_path, imagefolder, monkeypatch, capsys):
    from accelerate.state import AcceleratorState

    argv = ["--data.dataset", str(imagefolder), "--model.family", "one-d-piece", "--training.output_dir", str(tmp_path)]
    AcceleratorState._reset_state(True)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert run_training("tokenizer", TokenizerTrainer, argv) == 2
    assert "asked for FSDP (ACCELERATE_USE_FSDP=true) but accelerate runs DistributedType.NO on 1 process" in capsys.readouterr().err
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    AcceleratorState._reset_state(True)
    assert run_training("tokenizer", TokenizerTrainer, argv) == 2
    assert "asked for DeepSpeed (ACCELERATE_USE_DEEPSPEED=true) but this process was not started by a launcher" in capsys.readouterr().err
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    assert run_training("tokenizer", TokenizerTrainer, argv) == 2
    assert "with use_cpu: true, which makes accelerate ignore DeepSpeed" in capsys.readouterr().err
    AcceleratorState._reset_state(True)
    assert not tmp_path.joinpath("checkpoints").exists()


def test_frozen_models_load_whole_while_a_zero3_config_is_live(tmp_path):
    """transformers partitions whatever from_pretrained loads while a stage-3 DeepSpeed config is live (accelerate sets one
    for every DeepSpeed run); a generator's frozen tokenizer loads inside unpartitioned_loading, which hides the config for
    the load only and puts the same object back."""
    pytest.importorskip("deepspeed", reason="needs the deepspeed package")
    from transformers.integrations import deepspeed as hf_deepspeed

    from vistok.training.sharding import unpartitioned_loading

    config = hf_deepspeed.HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        assert hf_deepspeed.is_deepspeed_zero3_enabled()
        with unpartitioned_loading():
            assert not hf_deepspeed.is_deepspeed_zero3_enabled()
        assert hf_deepspeed.is_deepspeed_zero3_enabled() and hf_deepspeed._hf_deepspeed_config_weak_ref() is config
        with pytest.raises(RuntimeError, match="boom"), unpartitioned_loading():  # restored on errors too
            raise RuntimeError("boom")
        assert hf_deepspeed._hf_deepspeed_config_weak_ref() is config
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()
    with unpartitioned_loading():  # no DeepSpeed config: nothing to hide
        assert not hf_deepspeed.is_deepspeed_zero3_enabled()
    assert not hf_deepspeed.is_deepspeed_zero3_enabled()


def test_quantizers_are_the_zero3_leaf_modules():
    """ZeRO-3 gathers a module's own parameters around its forward; a quantizer reads its codebook Embedding's weight
    without calling it, so each quantizer (and nothing else) is marked a ZeRO-3 leaf, gathered whole."""
    pytest.importorskip("deepspeed", reason="needs the deepspeed package")
    from deepspeed.utils.z3_leaf_module import z3_leaf_module

    from vistok import TiTokConfig, TiTokModel
    from vistok.modeling.quantizers.base import Quantizer
    from vistok.training.sharding import mark_zero3_leaf_modules

    model = TiTokModel(TiTokConfig(image_size=16, patch_size=8, decoder_patch_size=8, num_tokens=4, codebook_size=32,
                                   token_dim=4, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2,
                                   decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2, is_legacy=False))
    assert mark_zero3_leaf_modules(model) == 1
    leaves = [m for m in model.modules() if z3_leaf_module(m)]
    assert len(leaves) == 1 and isinstance(leaves[0], Quantizer)


def test_quantizer_outputs_expose_their_tensors_to_hook_based_sharding():
    """DeepSpeed ZeRO-3 re-gathers a module's parameters in backward through hooks on the tensors it finds in the module's
    output (tuples, lists, dicts); a quantizer's output is a ModelOutput (a dict), so its tensors are found."""
    pytest.importorskip("deepspeed", reason="needs the deepspeed package")
    from deepspeed.runtime.zero.utils import apply_to_tensors_only

    from vistok.modeling.quantizers.vq import VectorQuantizer

    out = VectorQuantizer(16, 4)(torch.randn(2, 3, 4, requires_grad=True))
    seen = []
    apply_to_tensors_only(lambda t: seen.append(t) or t, out)
    assert any(t is out.quantized for t in seen) and any(t is out.loss for t in seen)
