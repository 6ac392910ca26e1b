"""``vistok train generator`` on FlexTok tokens: FlexTok's own AR generators are not released, so a MaskGIT
generator learns a prefix of k FlexTok tokens from images (tokenized on the fly) and its exported pipeline
samples k tokens and decodes them with FlexTok's flow decoder, seeded by the pipeline's generator."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch

from vistok import MaskGITPipeline, VistokImageProcessor
from vistok.modeling.flextok import FlexTokConfig, FlexTokModel
from vistok.training import load_train_config
from vistok.training.cli import run_training
from vistok.training.generator import GeneratorTrainer

TINY_VAE = {"block_out_channels": [16, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
            "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "norm_num_groups": 8,
            "latent_channels": 4, "in_channels": 3, "out_channels": 3}


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_maskgit_trains_on_a_flextok_prefix_and_its_pipeline_decodes_with_the_flow(tmp_path):
    torch.manual_seed(0)
    config = FlexTokConfig(image_size=16, num_tokens=8, fsq_levels=[4, 4, 4], vae_config=TINY_VAE, vae_scaling_factor=0.5,
                           encoder_hidden_size=32, encoder_num_layers=1, encoder_head_dim=16, decoder_hidden_size=32,
                           decoder_num_layers=1, decoder_head_dim=16, num_inference_steps=2)
    tokenizer = tmp_path / "flextok"
    FlexTokModel(config).save_pretrained(tokenizer)
    VistokImageProcessor.from_model_config(config).save_pretrained(tokenizer)
    images = tmp_path / "images"
    yy, xx = np.mgrid[0:24, 0:24] / 23.0
    for label, name in enumerate(("red", "blue")):
        (images / name).mkdir(parents=True)
        for i in range(3):
            image = np.stack([xx * (1 - label), yy * 0.5 + 0.1 * i, (1 - xx) * label], axis=-1)
            PIL.Image.fromarray((image * 255).astype(np.uint8)).save(images / name / f"{i}.png")

    out = tmp_path / "gen"
    args = ["--model.family", "maskgit", "--model.config.hidden_size", "32", "--model.config.num_hidden_layers", "1",
            "--model.config.num_attention_heads", "2", "--model.config.intermediate_size", "64",
            "--model.config.num_tokens", "4", "--model.config.sampling_defaults.num_inference_steps", "4",
            "--data.dataset", str(images), "--data.label_column", "label",
            "--loss.tokenizer", str(tokenizer), "--training.output_dir", str(out), "--training.batch_size", "2",
            "--training.max_steps", "3", "--training.log_every", "1", "--training.image_every", "3",
            "--training.learning_rate", "1e-3"]
    assert run_training("generator", GeneratorTrainer, args) == 0
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(first["loss"]) and abs(first["loss"] - np.log(64)) < 1.5  # CE over 64 FSQ codes
    pipe = MaskGITPipeline.from_pretrained(out / "final")
    assert isinstance(pipe.image_tokenizer, FlexTokModel)
    assert (pipe.transformer.config.num_tokens, pipe.transformer.config.codebook_size) == (4, 64)
    ids = pipe(class_labels=[0, 1], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert ids.shape == (2, 4)
    first_run = pipe(class_labels=[0, 1], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    second_run = pipe(class_labels=[0, 1], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert first_run.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(first_run, second_run)  # the flow's noise comes from the pipeline's generator
    assert (out / "images" / "step-0000003.png").is_file()
