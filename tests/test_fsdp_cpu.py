"""FSDP and DeepSpeed on 2 CPU processes (gloo): `vistok train` under configs/accelerate/fsdp_cpu.yaml shards with
torch's fully_shard (accelerate would run it as DDP), checkpoints sharded state, resumes bit for bit and exports a full
save_pretrained folder; the same for DeepSpeed ZeRO-2 (configs/accelerate/deepspeed_cpu.yaml) where the deepspeed
package is installed; an FSDP or DeepSpeed launch that cannot run as such is an error."""

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
