"""Training: tokenizer and MaskGIT objectives, 2 processes, exact resume, faults, export."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file

from vistok.training import list_checkpoints, load_train_config
from vistok.training.cli import run_training
from vistok.training.config import parse_overrides
from vistok.modeling.maskgit.training_maskgit import mask_tokens
from vistok.training.generator import GeneratorTrainer
from vistok.training.tokenizer import TokenizerTrainer
from _captioned import captioned_image_folder

TINY_TOKENIZER = {
    "family": "one-d-piece",
    "config": dict(image_size=16, patch_size=8, decoder_patch_size=8, num_tokens=8, codebook_size=64, token_dim=4,
                   is_legacy=False, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2,
                   decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2),
}


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one AcceleratorState per process; each test's run sets its own mixed precision."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory):
    """Six smooth colour images in two classes: learnable in a few steps."""
    root = tmp_path_factory.mktemp("images")
    yy, xx = np.mgrid[0:24, 0:24] / 23.0
    for label, name in enumerate(("red", "blue")):
        (root / name).mkdir()
        for i in range(3):
            image = np.stack([xx * (1 - label), yy * 0.5 + 0.1 * i, (1 - xx) * label], axis=-1)
            PIL.Image.fromarray((image * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def tokenizer_config(out, dataset, **training):
    return load_train_config("tokenizer", overrides={
        "model": TINY_TOKENIZER, "data": {"dataset": str(dataset), "crop_scale": [0.6, 1.0]},
        "training": {"output_dir": str(out), "batch_size": 2, "learning_rate": 3e-3, "log_every": 1,
                     "image_every": 1000, "checkpointing_steps": 1000, **training},
        "loss": {"reconstruction": "l2"}})


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_config_overrides_and_errors(tmp_path):
    assert parse_overrides(["--training.learning_rate=1e-4", "--data.crop_scale", "[0.5, 1.0]", "--loss.x.y=true"]) == {
        "training": {"learning_rate": 1e-4}, "data": {"crop_scale": [0.5, 1.0]}, "loss": {"x": {"y": True}}}
    with pytest.raises(ValueError, match="unknown key\\(s\\) \\['max_step'\\] in training; valid keys are"):
        load_train_config("tokenizer", overrides=["--training.max_step=3", "--data.dataset=x"])
    with pytest.raises(ValueError, match="data.dataset is required"):
        load_train_config("tokenizer")
    with pytest.raises(ValueError, match="training.mixed_precision must be"):
        load_train_config("tokenizer", overrides=["--training.mixed_precision=fp8", "--data.dataset=x"])
    # `no` as written in the help (YAML 1.1 reads it as false), in a file and on the command line
    (tmp_path / "fp32.yaml").write_text("training:\n  mixed_precision: no\n")
    for config in (load_train_config("tokenizer", tmp_path / "fp32.yaml", overrides=["--data.dataset=x"]),
                   load_train_config("tokenizer", overrides=["--training.mixed_precision", "no", "--data.dataset=x"])):
        assert config.training.mixed_precision == "no"
    with pytest.raises(ValueError, match="loss.tokenizer"):
        load_train_config("generator", overrides=["--data.dataset=x"])
    with pytest.raises(ValueError, match="expected an override like"):
        parse_overrides(["max_steps=3"])


def test_bad_dataset_or_column_fails_before_training(tmp_path, imagefolder):
    with pytest.raises(ValueError, match="does not exist"):
        TokenizerTrainer(tokenizer_config(tmp_path / "a", tmp_path / "missing", max_steps=2)).train()
    config = tokenizer_config(tmp_path / "b", imagefolder, max_steps=2)
    config.data.image_column = "picture"
    with pytest.raises(ValueError, match="image_column='picture' is not a column"):
        TokenizerTrainer(config).train()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert run_training("tokenizer", TokenizerTrainer, ["--data.dataset", str(tmp_path / "missing")]) == 2


def test_tokenizer_trains_resumes_exactly_after_sigterm_and_exports(tmp_path, imagefolder):
    # uninterrupted: 8 optimizer steps of 2 micro-batches, 3 batches per epoch
    common = dict(max_steps=8, gradient_accumulation_steps=2, ema_decay=0.9, checkpointing_steps=4)
    full = TokenizerTrainer(tokenizer_config(tmp_path / "full", imagefolder, **common)).train()
    assert full["step"] == 8 and not full["interrupted"]

    def terminate_at_5(trainer, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    # SIGTERM at step 5 (mid-epoch): checkpoint, clean return; then resume from the newest checkpoint
    cut = TokenizerTrainer(tokenizer_config(tmp_path / "cut", imagefolder, **common), step_callback=terminate_at_5).train()
    assert cut["interrupted"] and cut["step"] == 5
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["checkpoint-4", "checkpoint-5"]
    assert not (tmp_path / "cut" / "final").exists()
    resumed = TokenizerTrainer(tokenizer_config(tmp_path / "cut", imagefolder, resume_from_checkpoint="latest", **common)).train()
    assert resumed["start_step"] == 5 and resumed["step"] == 8
    a, b = weights(tmp_path / "full" / "final"), weights(tmp_path / "cut" / "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # EMA weights, bit for bit
    a, b = weights(tmp_path / "full" / "checkpoints" / "checkpoint-8"), weights(tmp_path / "cut" / "checkpoints" / "checkpoint-8")
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the export loads with the Auto classes and reconstructs
    import vistok  # noqa: F401
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(tmp_path / "full" / "final").eval()
    processor = AutoImageProcessor.from_pretrained(tmp_path / "full" / "final")
    pixels = processor(images=[PIL.Image.open(next(imagefolder.glob("red/*.png")))], return_tensors="pt").pixel_values
    assert model.decode(model.encode(pixels, num_tokens=3).token_ids).shape == (1, 3, 16, 16)
    card = (tmp_path / "full" / "final" / "README.md").read_text()
    assert "vistok train tokenizer" in card and "max_steps: 8" in card
    losses = [json.loads(line)["loss"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 8 and np.mean(losses[-2:]) < np.mean(losses[:2])


def test_decoder_retrain_keeps_the_frozen_encoder_and_so_its_token_ids(tmp_path, imagefolder):
    """model.freeze: [encoder, quantizer] on a pretrained tokenizer trains only its decoder (a second training stage):
    the token ids, which generators were trained on, are those of the pretrained model."""
    import vistok  # noqa: F401
    from transformers import AutoModel

    TokenizerTrainer(tokenizer_config(tmp_path / "base", imagefolder, max_steps=2)).train()
    pretrained = tmp_path / "base" / "final"

    def decoder_config(freeze):
        config = tokenizer_config(tmp_path / "decoder", imagefolder, max_steps=3, ema_decay=0.5)
        config.model = type(config.model)(pretrained=str(pretrained), freeze=freeze)
        return config

    TokenizerTrainer(decoder_config(["encoder", "quantizer"])).train()
    before, after = weights(pretrained), weights(tmp_path / "decoder" / "final")
    fixed = [k for k in before if not k.startswith("decoder.")]
    assert before.keys() == after.keys() and fixed and all(torch.equal(before[k], after[k]) for k in fixed)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    pixels = torch.rand(2, 3, 16, 16)  # the model's pixel_range is [0, 1]
    old, new = (AutoModel.from_pretrained(folder).eval() for folder in (pretrained, tmp_path / "decoder" / "final"))
    assert torch.equal(old.encode(pixels).token_ids, new.encode(pixels).token_ids)
    with pytest.raises(ValueError, match="'encodr' is no module or parameter"):
        TokenizerTrainer(decoder_config(["encodr"])).train()
    with pytest.raises(ValueError, match="freezes every parameter"):
        TokenizerTrainer(decoder_config(["encoder", "quantizer", "decoder"])).train()


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, imagefolder, monkeypatch):
    trainer = TokenizerTrainer(tokenizer_config(tmp_path, imagefolder, max_steps=4, checkpointing_steps=2))
    original = trainer.accelerator.save_state

    def crash_on_second(output_dir, **kwargs):
        if trainer.step == 4:
            (os.path.join(output_dir, "model.safetensors") and open(os.path.join(output_dir, "model.safetensors"), "w").write("half"))
            raise OSError("disk full")
        return original(output_dir, **kwargs)

    monkeypatch.setattr(trainer.accelerator, "save_state", crash_on_second)
    with pytest.raises(OSError, match="disk full"):
        trainer.train()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert weights(tmp_path / "checkpoints" / "checkpoint-2")  # still a readable checkpoint


def test_non_finite_loss_stops_naming_the_step(tmp_path, imagefolder):
    def poison(trainer, step):
        if step == 3:  # the weights diverge in step 3, after checkpoint-2
            with torch.no_grad():
                next(trainer.accelerator.unwrap_model(trainer.model).parameters()).fill_(float("nan"))

    config = tokenizer_config(tmp_path, imagefolder, max_steps=6, checkpointing_steps=2)
    with pytest.raises(Exception, match="non-finite loss at optimizer step 4") as err:
        TokenizerTrainer(config, step_callback=poison).train()
    assert "checkpoint-2" in str(err.value)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2"]
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "checkpoints" / "checkpoint-2").values())


def test_gan_phase_and_streaming(tmp_path, imagefolder):
    config = tokenizer_config(tmp_path, imagefolder, max_steps=3, export=False)
    config.loss.discriminator_weight = 0.5
    config.loss.discriminator_start = 1
    config.loss.discriminator_channels = 8
    config.loss.discriminator_layers = 1  # 16-pixel images
    config.data.streaming = True
    summary = TokenizerTrainer(config).train()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert summary["step"] == 3 and "discriminator_loss" not in records[0]
    assert all("discriminator_loss" in r and "generator_loss" in r for r in records[1:])
    assert (tmp_path / "checkpoints" / "checkpoint-3" / "model_1.safetensors").is_file()  # the discriminator


TWO_RANK_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_training import tokenizer_config
from vistok.training.tokenizer import TokenizerTrainer

out, dataset, streaming = sys.argv[1], sys.argv[2], sys.argv[3] == "stream"
config = tokenizer_config(out, dataset, max_steps=10 if not streaming else 4, export=False)
config.data.streaming = streaming
trainer = TokenizerTrainer(config)
trainer.train()
acc = trainer.accelerator
flat = torch.cat([p.detach().flatten() for p in acc.unwrap_model(trainer.model).parameters()])
torch.save({{"ranks": acc.num_processes, "weights": flat}}, f"{{out}}/rank{{acc.process_index}}.pt")
"""


def _run_two_ranks(tmp_path, imagefolder, mode: str) -> list[dict]:
    """torchrun 2 fresh processes (forking a pytest process that already ran torch can deadlock OpenMP);
    returns each rank's flattened weights."""
    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANK_SCRIPT.format(tests=os.path.dirname(__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    port = 29500 + (os.getpid() + len(mode)) % 2000
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                          str(script), str(tmp_path / "run"), str(imagefolder), mode],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return [torch.load(tmp_path / "run" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def test_two_process_ddp_keeps_ranks_identical_and_lowers_the_loss(tmp_path, imagefolder):
    ranks = _run_two_ranks(tmp_path, imagefolder, "map")
    assert ranks[0]["ranks"] == 2 and torch.equal(ranks[0]["weights"], ranks[1]["weights"])
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 10 and np.mean(losses[-3:]) < np.mean(losses[:3])


def test_mask_tokens_follows_the_arccos_schedule():
    torch.manual_seed(0)
    tokens = torch.randint(0, 10, (512, 16))
    inputs, mask = mask_tokens(tokens, 99, "arccos")
    assert (mask.sum(1) >= 1).all() and torch.equal(inputs[mask], torch.full_like(inputs[mask], 99))
    assert torch.equal(inputs[~mask], tokens[~mask])
    # E[acos(t) / (pi/2)] over t ~ U(0, 1) = 2/pi
    assert abs(mask.float().mean().item() - 2 / np.pi) < 0.03


def test_maskgit_generator_trains_from_images_and_from_tokenized_data(tmp_path, imagefolder):
    from vistok import MaskGITPipeline
    from vistok.training.tokenize import tokenize_dataset

    TokenizerTrainer(tokenizer_config(tmp_path / "tok", imagefolder, max_steps=2)).train()
    tokenizer = tmp_path / "tok" / "final"
    generator_model = {"family": "maskgit", "config": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                           intermediate_size=64)}
    base = {"batch_size": 2, "max_steps": 3, "log_every": 1, "image_every": 3, "learning_rate": 1e-3}
    config = load_train_config("generator", overrides={
        "model": generator_model, "data": {"dataset": str(imagefolder), "label_column": "label"},
        "training": {"output_dir": str(tmp_path / "gen"), **base}, "loss": {"tokenizer": str(tokenizer)}})
    GeneratorTrainer(config).train()
    pipe = MaskGITPipeline.from_pretrained(tmp_path / "gen" / "final")
    assert pipe.transformer.config.num_classes == 2 and pipe.transformer.config.codebook_size == 64
    # the imagefolder's class folders name the classes, as transformers' id2label
    assert pipe.transformer.config.id2label == {0: "blue", 1: "red"}
    assert pipe.get_label_ids(["red", "blue"]) == [1, 0]
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['green'\]"):
        pipe.get_label_ids("green")
    images = pipe(class_labels=[0, 1], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (2, 16, 16, 3)
    assert (tmp_path / "gen" / "images" / "step-0000003.png").is_file()

    tokenized = tokenize_dataset(str(tokenizer), str(imagefolder), str(tmp_path / "tokens"), label_column="label")
    with pytest.raises(ValueError, match="already exists"):
        tokenize_dataset(str(tokenizer), str(imagefolder), str(tmp_path / "tokens"), label_column="label")
    config = load_train_config("generator", overrides={
        "model": generator_model,
        "data": {"dataset": str(tokenized), "image_column": None, "label_column": "label", "token_column": "token_ids"},
        "training": {"output_dir": str(tmp_path / "gen2"), **base}, "loss": {"tokenizer": str(tokenizer)}})
    summary = GeneratorTrainer(config).train()
    assert summary["step"] == 3 and (tmp_path / "gen2" / "final" / "model_index.json").is_file()


def test_two_process_streaming_shards_by_node(tmp_path, imagefolder):
    # 6 images in uneven stream shards over 2 ranks: epochs end together instead of hanging
    ranks = _run_two_ranks(tmp_path, imagefolder, "stream")
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and records[-1]["epoch"] >= 1


def test_tensorboard_bf16_and_gradient_checkpointing(tmp_path, imagefolder):
    config = tokenizer_config(tmp_path, imagefolder, max_steps=2, export=False, mixed_precision="bf16",
                              gradient_checkpointing=True, report_to=["jsonl", "tensorboard"])
    trainer = TokenizerTrainer(config)
    summary = trainer.train()
    assert summary["step"] == 2 and np.isfinite(summary["last"]["loss"])
    assert trainer.accelerator.unwrap_model(trainer.model).is_activation_checkpointing
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))


def test_perceptual_term_trains_through_frozen_lpips(tmp_path, imagefolder):
    from vistok.evaluation.lpips import CHANNELS, LPIPS

    generator = torch.Generator().manual_seed(0)
    backbone = {f"features.{k}": torch.randn(v.shape, generator=generator) * 0.1
                for k, v in LPIPS("vgg").features.state_dict().items()}
    torch.save(backbone, tmp_path / "vgg16.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=generator) for i, c in enumerate(CHANNELS["vgg"])},
               tmp_path / "vgg_heads.pth")
    config = tokenizer_config(tmp_path / "run", imagefolder, max_steps=2, export=False)
    config.loss.perceptual_weight = 1.0
    config.loss.lpips_backbone = str(tmp_path / "vgg16.pth")
    config.loss.lpips_heads = str(tmp_path / "vgg_heads.pth")
    trainer = TokenizerTrainer(config)
    summary = trainer.train()
    assert summary["last"]["perceptual_loss"] > 0
    assert not any(p.requires_grad for p in trainer.perceptual.parameters())
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in trainer.perceptual.parameters()}
    missing = tokenizer_config(tmp_path / "run2", imagefolder, max_steps=2)
    missing.loss.perceptual_weight, missing.loss.lpips_backbone = 1.0, str(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="do not exist"):
        TokenizerTrainer(missing).train()


def _train_tiny_llamagen_vq(out, dataset) -> None:
    """Two steps of a tiny LlamaGen VQ (16 px, 8x8 tokens over 32 codes); the export lands in out/final."""
    TokenizerTrainer(load_train_config("tokenizer", overrides={
        "model": {"family": "llamagen-vq", "config": dict(image_size=16, codebook_size=32, token_dim=4, hidden_channels=32,
                                                           encoder_channel_mult=[1, 2], num_res_blocks=1, z_channels=32)},
        "data": {"dataset": str(dataset)},
        "training": {"output_dir": str(out), "batch_size": 2, "max_steps": 2, "image_every": 1000}})).train()


def test_llamagen_generator_trains_next_token_and_exports_a_pipeline(tmp_path, imagefolder):
    from vistok import AutoregressiveImagePipeline

    _train_tiny_llamagen_vq(tmp_path / "vq", imagefolder)
    config = load_train_config("generator", overrides={
        "model": {"family": "llamagen", "config": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)},
        "data": {"dataset": str(imagefolder), "label_column": "label"},
        "training": {"output_dir": str(tmp_path / "gpt"), "batch_size": 2, "max_steps": 3, "log_every": 1,
                     "image_every": 3, "learning_rate": 1e-3},
        "loss": {"tokenizer": str(tmp_path / "vq" / "final")}})
    trainer = GeneratorTrainer(config)
    summary = trainer.train()
    cfg = trainer.accelerator.unwrap_model(trainer.model).config
    assert (cfg.num_tokens, cfg.codebook_size, cfg.num_classes) == (64, 32, 2)
    first = json.loads((tmp_path / "gpt" / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(first["loss"] - np.log(32)) < 1.0  # next-token CE over 32 codes starts near log(32)
    pipe = AutoregressiveImagePipeline.from_pretrained(tmp_path / "gpt" / "final")
    images = pipe(class_labels=[1], generator=torch.Generator().manual_seed(0), output_type="np").images
    assert summary["step"] == 3 and images.shape == (1, 16, 16, 3)
    assert "AutoregressiveImagePipeline" in (tmp_path / "gpt" / "final" / "README.md").read_text()


def test_llamagen_generator_trains_on_1d_tokens_with_learned_positions(tmp_path, imagefolder):
    """The default AR model's recipe: a LlamaGen GPT over a 1D tokenizer's sequence (learned positions: 1D tokens
    have no grid for a 2D RoPE), sampled by AutoregressiveImagePipeline."""
    from vistok import AutoregressiveImagePipeline

    TokenizerTrainer(tokenizer_config(tmp_path / "tok", imagefolder, max_steps=1)).train()
    tokenizer = tmp_path / "tok" / "final"
    overrides = {"data": {"dataset": str(imagefolder), "label_column": "label"},
                 "training": {"output_dir": str(tmp_path / "gpt"), "batch_size": 2, "max_steps": 2, "log_every": 1,
                              "image_every": 1000}, "loss": {"tokenizer": str(tokenizer)}}
    config = load_train_config("generator", overrides={**overrides, "model": {"family": "llamagen", "config": dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, position_embedding="learned")}})
    trainer = GeneratorTrainer(config)
    assert trainer.train()["step"] == 2
    cfg = trainer.accelerator.unwrap_model(trainer.model).config
    tok_cfg = json.loads((tokenizer / "config.json").read_text())
    assert (cfg.num_tokens, cfg.codebook_size, cfg.position_embedding) == (tok_cfg["num_tokens"], tok_cfg["codebook_size"], "learned")
    pipe = AutoregressiveImagePipeline.from_pretrained(tmp_path / "gpt" / "final")
    ids = pipe(class_labels=[0, 1], generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert ids.shape == (2, tok_cfg["num_tokens"])


def test_var_vqvae_and_next_scale_generator_train_and_export(tmp_path, imagefolder):
    from vistok import NextScalePipeline

    vqvae = {"family": "var-vqvae", "config": dict(codebook_size=16, z_channels=4, channels=32, channel_mult=[1, 2],
                                                    patch_nums=[1, 2, 4])}
    tok_config = load_train_config("tokenizer", overrides={
        "model": vqvae, "data": {"dataset": str(imagefolder)},
        "training": {"output_dir": str(tmp_path / "vae"), "batch_size": 2, "max_steps": 2, "image_every": 1000}})
    TokenizerTrainer(tok_config).train()
    config = load_train_config("generator", overrides={
        "model": {"family": "var", "config": dict(depth=1, hidden_size=64, num_attention_heads=2)},
        "data": {"dataset": str(imagefolder), "label_column": "label"},
        "training": {"output_dir": str(tmp_path / "var"), "batch_size": 2, "max_steps": 3, "log_every": 1,
                     "image_every": 3, "learning_rate": 1e-3},
        "loss": {"tokenizer": str(tmp_path / "vae" / "final")}})
    trainer = GeneratorTrainer(config)
    summary = trainer.train()
    cfg = trainer.accelerator.unwrap_model(trainer.model).config
    assert (cfg.patch_nums, cfg.codebook_size, cfg.z_channels, cfg.num_classes) == ([1, 2, 4], 16, 4, 2)
    first = json.loads((tmp_path / "var" / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(first["loss"] - np.log(16)) < 1.0  # cross-entropy over 16 codes at VAR's small head init
    pipe = NextScalePipeline.from_pretrained(tmp_path / "var" / "final")
    images = pipe(class_labels=[0, 1], generator=torch.Generator().manual_seed(0), output_type="np").images
    assert summary["step"] == 3 and images.shape == (2, 8, 8, 3)
    assert (tmp_path / "var" / "images" / "step-0000003.png").is_file()


def test_text_conditional_llamagen_trains_on_captions(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    from vistok import TextToImageAutoregressivePipeline

    data = captioned_image_folder(tmp_path / "captioned", 20)
    words = ["<pad>", "</s>", "<unk>", "a", "red", "car", "dog", "cat"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(tmp_path / "t5")
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=len(words), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)).save_pretrained(tmp_path / "t5")

    _train_tiny_llamagen_vq(tmp_path / "vq", data)
    config = load_train_config("generator", overrides={
        "model": {"family": "llamagen", "config": dict(condition_type="text", caption_dim=16, num_condition_tokens=8,
                                                        hidden_size=32, num_hidden_layers=1, num_attention_heads=2)},
        "data": {"dataset": str(data), "label_column": None, "caption_column": "text"},
        "training": {"output_dir": str(tmp_path / "t2i"), "batch_size": 2, "max_steps": 2, "log_every": 1, "image_every": 2},
        "loss": {"tokenizer": str(tmp_path / "vq" / "final"), "text_encoder": str(tmp_path / "t5")}})
    summary = GeneratorTrainer(config).train()
    assert summary["step"] == 2 and np.isfinite(summary["last"]["loss"])
    pipe = TextToImageAutoregressivePipeline.from_pretrained(tmp_path / "t2i" / "final")
    images = pipe(prompt=["a red car"], top_k=5, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (1, 16, 16, 3) and (tmp_path / "t2i" / "images" / "step-0000002.png").is_file()
    config.loss.text_encoder = None
    with pytest.raises(ValueError, match="loss.text_encoder"):
        GeneratorTrainer(config).train()
