"""MaskGen-KL and MaskGenKLPipeline against the original bytedance/1d-tokenizer ``MaskGen_KL`` (tests/fixtures/README.md,
"maskgen/", ``maskgen_kl.*``): the original checkpoint is rebuilt from the fixture's seed and key list, converted with
``vistok convert maskgen-kl`` beside a tiny TA-TiTok KL tokenizer, and compared with what the original computed on
CPU: the transformer's per-token conditions, the diffusion head and its training loss within the float32
tolerances, seeded ``sample_tokens`` runs equal given the same generation orders and torch seed, and one original
training step (loss and gradients) equal to ``vistok train generator``'s objective; then a tiny training run that
exports, samples and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.maskgen import MaskGenKLConfig, MaskGenKLTransformer
from vistok.modeling.maskgen.convert_maskgen import KL_RELEASES, convert_kl, render_kl_card
from vistok.modeling.maskgen.modeling_maskgen import respaced_timesteps
from vistok.modeling.titok import TiTokConfig, TiTokModel
from vistok.pipelines import MaskGenKLPipeline
from _random_weights import random_state_dict
from _tolerances import assert_close_to_fp32_fixture, assert_matches_original, float64_copy, rounding_error
from test_maskgen import TEXT_DIM, TEXT_LENGTH, count_linear_calls, tiny_clip
from _captioned import captioned_image_folder

FIXTURES = Path(__file__).parent / "fixtures" / "maskgen"
META = json.loads((FIXTURES / "maskgen_kl.json").read_text())
EXPECTED = load_file(str(FIXTURES / "maskgen_kl.safetensors"))


def original_state_dict(meta=META) -> dict[str, torch.Tensor]:
    return random_state_dict(meta["state_dict_shapes"], meta["weights_seed"])


def tiny_ta_titok_kl(folder: Path) -> Path:
    """A random text-conditioned KL TiTok with the generator's token count and channels."""
    torch.manual_seed(0)
    cfg = TiTokConfig(image_size=16, patch_size=8, decoder_patch_size=8, num_tokens=8, codebook_size=None, token_dim=4,
                      quantize_mode="vae", encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2,
                      decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2, is_legacy=False,
                      use_l2_norm=False, text_conditioned=True, text_hidden_size=TEXT_DIM, text_max_length=TEXT_LENGTH)
    TiTokModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(pipeline without a text encoder, pipeline with the tiny CLIP, folders)."""
    root = tmp_path_factory.mktemp("maskgen_kl")
    release = root / "original"
    release.mkdir()
    save_file(original_state_dict(), str(release / "model.safetensors"))
    (release / "config.json").write_text(json.dumps(META["original_config"]))
    tokenizer = tiny_ta_titok_kl(root / "tatitok")
    assert cli_main(["convert", "maskgen-kl", "--original", str(release), "--tokenizer", str(tokenizer),
                     "--output", str(root / "pipe")]) == 0
    clip = tiny_clip(root / "clip")
    assert cli_main(["convert", "maskgen-kl", "--original", str(release), "--tokenizer", str(tokenizer),
                     "--text-encoder", str(clip), "--output", str(root / "pipe-clip")]) == 0
    pipes = []
    for name in ("pipe", "pipe-clip"):
        pipe = MaskGenKLPipeline.from_pretrained(root / name)
        pipe.set_progress_bar_config(disable=True)
        pipes.append(pipe)
    return pipes[0], pipes[1], root


def test_conditions_head_and_loss_match_original(converted):
    _, _, root = converted
    model = AutoModel.from_pretrained(root / "pipe" / "transformer").eval()
    assert isinstance(model, MaskGenKLTransformer)
    e = EXPECTED
    assert_matches_original(model, lambda m: m(e["latents"].to(m.dtype), e["mask"], e["encoder_hidden_states"].to(m.dtype),
                                               e["pooled_projections"].to(m.dtype),
                                               aesthetic_score=e["aesthetic_score"]).last_hidden_state,
                            e["condition"], "forward_mae_decoder")
    assert_matches_original(model, lambda m: m.diffusion_head(e["head_x"].to(m.dtype), e["head_t"], e["head_c"].to(m.dtype)),
                            e["head_output"], "diffusion head")
    # GaussianDiffusion.training_losses (noise MSE + the frozen-mean bound; the decoder NLL at t = 0)
    with torch.no_grad():
        loss = model.diffusion_head_losses(e["head_x"], e["head_c"], e["head_t"], e["head_noise"])
    torch.testing.assert_close(loss, e["head_training_loss"], rtol=1e-5, atol=1e-5)
    # a boolean mask, a float one and the original's [B, 1, D] pooled layout give the same result
    with torch.no_grad():
        a = model(e["latents"], e["mask"].bool(), e["encoder_hidden_states"], e["pooled_projections"][:, 0],
                  aesthetic_score=e["aesthetic_score"]).last_hidden_state
    assert torch.equal(a, model(e["latents"], e["mask"], e["encoder_hidden_states"], e["pooled_projections"],
                                aesthetic_score=e["aesthetic_score"]).last_hidden_state)


@pytest.mark.parametrize("run", ["linear", "unguided"])
def test_seeded_samples_equal_original_sample_tokens(converted, run, monkeypatch):
    pipe = converted[0]
    settings = META["sample_runs"][run]
    e = EXPECTED
    # the original shuffles its orders with NumPy; the same orders, and the same torch seed for the noise
    monkeypatch.setattr(pipe, "generation_orders", lambda batch, generator, device: e[f"orders_{run}"])
    latents = pipe(prompt_embeds=e["encoder_hidden_states"], pooled_prompt_embeds=e["pooled_projections"],
                   negative_prompt_embeds=e["null_encoder_hidden_states"].expand(2, -1, -1),
                   negative_pooled_prompt_embeds=e["null_pooled_projections"].expand(2, -1, -1),
                   num_inference_steps=settings["num_iter"], guidance_scale=settings["cfg"],
                   guidance_schedule=settings["cfg_schedule"], temperature=settings["temperature"],
                   aesthetic_score=settings["aes_scores"], output_type="latent",
                   generator=torch.Generator().manual_seed(META["sample_seeds"][run])).images
    # the original returns unpatchified [B, C, 1, n] latents divided by scale_factor
    expected = e[f"sampled_{run}"][:, :, 0].transpose(1, 2)
    # the same operations in the same order on the same draws (bitwise equal on the machine that made the fixture).
    # fp32 BLAS results depend on memory alignment and the random-weight diffusion head amplifies tokens to ~1e5,
    # so the check is equality up to 1e-4 of the sample's scale (a wrong draw or step is off by the scale itself)
    assert latents.shape == expected.shape
    assert ((latents - expected).abs() <= 1e-4 * expected.abs().max()).all()


def test_reusing_condition_computes_the_modulations_once_and_changes_no_result(converted, monkeypatch):
    """MaskGenKLPipeline samples within ``reusing_condition()``: with the projected condition fixed over the rounds,
    every adaptive norm's modulation Linear runs once (again when the condition changes), the other Linears every
    round, the outputs are those computed without it, and the Linears are restored on exit."""
    model = converted[0].transformer
    e = EXPECTED
    with torch.no_grad():
        pooled = e["pooled_projections"]
        pooled = pooled[:, 0] if pooled.ndim == 3 else pooled  # (the original's [B, 1, D] layout)
        condition = model.project_condition(e["encoder_hidden_states"], pooled, e["aesthetic_score"])
        other = (condition[0], condition[1] * 2)
        rounds = [(e["latents"], e["mask"], condition), (e["latents"] * 2, e["mask"], condition),
                  (e["latents"], e["mask"], other)]
        expected = [model(x, m, projected_condition=c).last_hidden_state for x, m, c in rounds]
    computed = count_linear_calls(monkeypatch)
    modulations = [model.decoder_norm.linear] + [b.norm1.linear for b in model.decoder_blocks]
    with torch.no_grad(), model.reusing_condition():
        got = [model(*rounds[0][:2], projected_condition=rounds[0][2]).last_hidden_state,
               model(*rounds[1][:2], projected_condition=rounds[1][2]).last_hidden_state]
        assert [computed[m] for m in modulations] == [1] * len(modulations)
        assert computed[model.z_proj] == 2
        got.append(model(*rounds[2][:2], projected_condition=rounds[2][2]).last_hidden_state)  # a new condition
        assert [computed[m] for m in modulations] == [2] * len(modulations)
    assert not any("forward" in m.__dict__ for m in model.modules())
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


def test_released_sampling_defaults_and_respacing(converted):
    cfg = converted[0].transformer.config
    assert cfg.sampling_defaults == {"num_inference_steps": 32, "num_diffusion_steps": 10, "guidance_scale": 3.0,
                                     "guidance_schedule": "linear", "temperature": 1.0, "aesthetic_score": 6.5}
    assert (cfg.token_dim, cfg.num_tokens, cfg.hidden_size, cfg.diffusion_head_width, cfg.diffusion_head_depth) == (4, 8, 32, 24, 2)
    assert cfg.scale_factor == 0.7525
    assert MaskGenKLConfig().sampling_defaults["num_diffusion_steps"] == 100  # DiffLoss' default
    # improved-DDPM's space_timesteps(1000, "100"): 0, 10, 20, ..., 999 with its float stride
    steps = respaced_timesteps(1000, 100)
    assert len(steps) == 100 and steps[:3] == [0, 10, 20] and steps[-1] == 999


def test_prompt_to_image_with_the_clip_text_encoder(converted):
    _, pipe, root = converted
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    seen = []
    images = pipe("a red car", negative_prompt="blurry", num_inference_steps=3, num_diffusion_steps=4, generator=g(),
                  output_type="np", callback_on_step_end=lambda p, s, t, kw: seen.append(int(kw["mask"].sum())) or kw,
                  callback_on_step_end_tensor_inputs=["latents", "mask"]).images
    assert images.shape == (1, 16, 16, 3) and (0 <= images).all() and (images <= 1).all()
    assert seen == [6, 4, 0]  # floor(8 cos(pi/2 * s/3)) tokens still masked after round s
    feats = pipe.encode_prompt(["a red car"])
    neg = pipe.encode_prompt(["blurry"])
    again = pipe(prompt_embeds=feats.penultimate_hidden_state, pooled_prompt_embeds=feats.pooled,
                 negative_prompt_embeds=neg.penultimate_hidden_state, negative_pooled_prompt_embeds=neg.pooled,
                 decoder_prompt_embeds=feats.last_hidden_state, num_inference_steps=3, num_diffusion_steps=4,
                 generator=g(), output_type="np").images
    assert (images == again).all()
    # the released 32 rounds over 8 tokens: the surplus rounds generate nothing (as upstream)
    seen.clear()
    pipe("a", num_diffusion_steps=2, generator=g(), output_type="latent",
         callback_on_step_end=lambda p, s, t, kw: seen.append(int(kw["mask"].sum())) or kw,
         callback_on_step_end_tensor_inputs=["mask"])
    assert len(seen) == 32 and seen[-1] == 0 and seen == sorted(seen, reverse=True)
    two = pipe(["a red car", "a dog"], num_images_per_prompt=2, num_inference_steps=2, num_diffusion_steps=3,
               generator=[torch.Generator().manual_seed(i) for i in range(4)], output_type="latent").images
    assert two.shape == (4, 8, 4) and torch.isfinite(two).all()
    card = (root / "pipe-clip" / "README.md").read_text()
    assert "MaskGen-KL" in card and "pipeline_tag: text-to-image" in card and "num_diffusion_steps" in card


def test_bad_inputs_are_refused(converted, tmp_path):
    pipe, clip_pipe, root = converted
    e = EXPECTED
    with pytest.raises(ValueError, match="no text_encoder/tokenizer"):
        pipe("a red car", num_inference_steps=2, output_type="latent")
    with pytest.raises(ValueError, match="decoder_prompt_embeds"):
        pipe(prompt_embeds=e["encoder_hidden_states"], pooled_prompt_embeds=e["pooled_projections"],
             negative_prompt_embeds=e["encoder_hidden_states"], negative_pooled_prompt_embeds=e["pooled_projections"],
             num_inference_steps=1, num_diffusion_steps=1, output_type="np")
    with pytest.raises(ValueError, match="guidance_schedule must be one of"):
        clip_pipe("a", guidance_schedule="cosine", num_inference_steps=2, output_type="latent")
    with pytest.raises(ValueError, match="num_inference_steps must be"):
        clip_pipe("a", num_inference_steps=0, output_type="latent")
    with pytest.raises(ValueError, match="num_diffusion_steps must be"):
        clip_pipe("a", num_inference_steps=2, num_diffusion_steps=0, output_type="latent")
    model = pipe.transformer
    with pytest.raises(ValueError, match="latents must be"):
        model(torch.zeros(2, 8, 5), e["mask"], e["encoder_hidden_states"], e["pooled_projections"])
    with pytest.raises(ValueError, match="mask must be"):
        model(e["latents"], e["mask"][:, :4], e["encoder_hidden_states"], e["pooled_projections"])
    with pytest.raises(ValueError, match="pooled_projections must be"):
        model(e["latents"], e["mask"], e["encoder_hidden_states"], e["pooled_projections"][:1])
    with pytest.raises(ValueError, match="labels must be"):
        model(e["latents"], e["mask"], e["encoder_hidden_states"], e["pooled_projections"], labels=torch.zeros(2, 8, 3))
    with pytest.raises(ValueError, match="continuous"):
        MaskGenKLPipeline(image_tokenizer=TiTokModel(TiTokConfig(image_size=16, patch_size=8, decoder_patch_size=8, num_tokens=8,
                                                                 codebook_size=64, token_dim=4, encoder_hidden_size=32,
                                                                 encoder_num_layers=1, encoder_num_heads=2,
                                                                 decoder_hidden_size=32, decoder_num_layers=1,
                                                                 decoder_num_heads=2, is_legacy=False)),
                          transformer=model)
    with pytest.raises(ValueError, match="micro_condition_embed_dim must be even"):
        MaskGenKLConfig(micro_condition_embed_dim=7)


def test_training_loss_backpropagates(converted):
    model = AutoModel.from_pretrained(converted[2] / "pipe" / "transformer")
    model.train()
    e = EXPECTED
    out = model(e["latents"], e["mask"], e["encoder_hidden_states"], e["pooled_projections"], labels=e["latents"])
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.z_proj.weight.grad is not None
    assert model.diffusion_head.final_layer.linear.weight.grad.abs().sum() > 0


def test_pickle_checkpoint_with_yaml_and_refusals(converted, tmp_path):
    import yaml

    _, _, root = converted
    torch.save(original_state_dict(), tmp_path / "maskgen_kl.bin")
    (tmp_path / "maskgen_kl.yaml").write_text(yaml.safe_dump(META["original_config"]))
    out = convert_kl(str(tmp_path / "maskgen_kl.bin"), str(tmp_path / "out"), tokenizer=str(root / "tatitok"),
                     config=str(tmp_path / "maskgen_kl.yaml"))
    a = MaskGenKLPipeline.from_pretrained(out).transformer.state_dict()
    b = AutoModel.from_pretrained(root / "pipe" / "transformer").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("diffusion_head.res_blocks.1.") for k in a)
    # a release preset stands in for a missing config, and its settings are checked against the weights
    with pytest.raises(ConversionError, match="config token_size 16 but z_proj reads 4 channels"):
        convert_kl(str(tmp_path / "maskgen_kl.bin"), str(tmp_path / "preset"), tokenizer=str(root / "tatitok"),
                   preset="maskgen-kl-l")
    release = KL_RELEASES["maskgen-kl-xl"]
    card = render_kl_card(MaskGenKLConfig(hidden_size=1280, num_hidden_layers=20, diffusion_head_width=1280),
                          TiTokConfig.from_pretrained(root / "tatitok"), release.repo, "someone/maskgen-kl-xl", release, None)
    assert "turkeyju/generator_maskgen_kl_xl" in card and "6.53" in card and "0.55" in card and "8 x 1280" in card
    with pytest.raises(ConversionError, match="decoder_num_heads"):
        convert_kl(str(tmp_path / "maskgen_kl.bin"), str(tmp_path / "y"), tokenizer=str(root / "tatitok"))
    vq_like = {k: v for k, v in original_state_dict().items() if not k.startswith("diffloss.")}
    torch.save(vq_like, tmp_path / "nohead.bin")
    with pytest.raises(ConversionError, match="not a MaskGen-KL checkpoint"):
        convert_kl(str(tmp_path / "nohead.bin"), str(tmp_path / "z"), tokenizer=str(root / "tatitok"),
                   config=str(tmp_path / "maskgen_kl.yaml"))
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_release_checkpoint_layout_converts():
    """The released MaskGen-KL-L's keys and shapes (the original built at release size on the meta device): the
    config inferred from them and the release yaml builds a model with exactly those keys (renamed) and shapes."""
    from vistok.modeling.maskgen.convert_maskgen import convert_kl_state_dict, infer_kl_config

    release = META["release_maskgen_kl_l"]
    original = {k: torch.empty(shape, device="meta") for k, shape in release["state_dict_shapes"].items()}
    state = convert_kl_state_dict(original)
    cfg = MaskGenKLConfig(**infer_kl_config(state, release["config"]))
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.token_dim, cfg.num_tokens) == (1024, 16, 16, 16, 32)
    assert (cfg.diffusion_head_width, cfg.diffusion_head_depth, cfg.text_hidden_size, cfg.micro_condition_embed_dim) == (1024, 8, 768, 256)
    assert cfg.sampling_defaults == KL_RELEASES["maskgen-kl-l"].sampling and cfg.scale_factor == 0.7525
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in MaskGenKLTransformer(cfg).state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in state.items()}


class RecordedText:
    """The text side of a MaskGenKLPipeline for the training objective: ``encode_prompt`` returns the fixture's CLIP
    features per caption ("" -> the empty prompt's), as the fixture script's lookup stands in for the original's
    ``open_clip_text_encoding`` (no CLIP model on either side)."""

    def __init__(self, captions, e):
        text, pooled = e["train_encoder_hidden_states"], e["train_pooled_projections"][:, 0]
        self.rows = {c: (text[i], pooled[i]) for i, c in enumerate(captions)}
        self.rows[""] = (e["null_encoder_hidden_states"][0], e["null_pooled_projections"][0, 0])

    def encode_prompt(self, prompts):
        from vistok.modeling.layers.clip_text import CLIPTextFeatures

        rows = [self.rows[p] for p in prompts]
        return CLIPTextFeatures(last_hidden_state=None, penultimate_hidden_state=torch.stack([r[0] for r in rows]),
                                pooled=torch.stack([r[1] for r in rows]))


def test_training_step_loss_and_gradients_match_original(converted, monkeypatch):
    """The objective ``vistok train generator`` runs for MaskGen-KL against one original training step
    (``preprocess_condition`` + ``MaskGen_KL.forward`` in train mode, fixture ``training_step``): the same posterior
    parameters, captions (one dropped for guidance under the seed), generation orders and torch seed give the same
    mask, the same diffusion loss and the same gradients."""
    from vistok.modeling.maskgen import training_maskgen

    step, e = META["training_step"], EXPECTED
    model = AutoModel.from_pretrained(converted[2] / "pipe" / "transformer")
    model.config.text_drop_prob = step["text_drop_prob"]
    assert model.config.sampling_defaults["aesthetic_score"] == step["aesthetic_score"]  # the micro-condition used
    model.train()
    n, c = model.config.num_tokens, model.config.token_dim
    # the original's pretokenized rows are [2C, 1, n] (mean channels, then log-variance); vistok's posterior is
    # tokens-first [B, n, 2C], as TiTokModel.encode gives latent_mean / latent_logvar
    posterior = e["train_posterior"].reshape(step["batch"], 2 * c, n).transpose(1, 2)
    text = RecordedText(step["captions"], e)
    masks = []
    batch_random_mask = training_maskgen.batch_random_mask
    monkeypatch.setattr(training_maskgen, "batch_random_mask", lambda *a: masks.append(batch_random_mask(*a)) or masks[-1])
    drawn = []
    monkeypatch.setattr(text, "encode_prompt", lambda p, f=text.encode_prompt: drawn.append(list(p)) or f(p))

    def loss_of(m):
        torch.manual_seed(step["torch_seed"])
        return training_maskgen.diffusion_text_objective(m, None, posterior, text, step["captions"], None,
                                                         orders=e["train_orders"]).reshape(1)

    assert_matches_original(model, loss_of, e["train_loss"], "training-step loss")
    assert torch.equal(masks[0], e["train_mask"].bool()) and int(masks[0].sum(1)[0]) < n
    assert drawn[0] == ["", *step["captions"][1:]]  # the seeded caption dropout
    loss = loss_of(model)
    loss.backward()
    grads = {"z_proj": (model.z_proj.weight.grad, e["train_z_proj_grad"]),
             "diffusion head output": (model.diffusion_head.final_layer.linear.weight.grad, e["train_head_out_grad"])}
    reference = float64_copy(model)
    loss_of(reference).backward()
    for what, (ours, expected) in grads.items():
        ref = reference.z_proj.weight.grad if what == "z_proj" else reference.diffusion_head.final_layer.linear.weight.grad
        assert_close_to_fp32_fixture(ours, expected, rounding_error(ours, ref), f"{what} gradient")


def test_maskgen_kl_trains_on_captions_exports_and_resumes(tmp_path):
    """``vistok train generator`` with ``model.family: maskgen-kl`` on a tiny caption dataset through the frozen TA-TiTok
    KL tokenizer and CLIP text tower: the exported folder loads as a MaskGenKLPipeline that samples from a prompt,
    and a run stopped at step 2 and resumed from its checkpoint ends with the weights of the uninterrupted run."""
    import numpy as np
    from accelerate.state import AcceleratorState

    from vistok import VistokImageProcessor
    from vistok.training import load_train_config
    from vistok.training.generator import GeneratorTrainer

    data = captioned_image_folder(tmp_path / "captioned", 16)
    tokenizer = tiny_ta_titok_kl(tmp_path / "tatitok")
    VistokImageProcessor.from_model_config(TiTokConfig.from_pretrained(tokenizer)).save_pretrained(tokenizer)
    clip = tiny_clip(tmp_path / "clip")

    def config(out, max_steps, **training):
        return load_train_config("generator", overrides={
            "model": {"family": "maskgen-kl", "config": dict(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, text_hidden_size=TEXT_DIM,
                micro_condition_embed_dim=8, diffusion_head_width=16, diffusion_head_depth=1, text_drop_prob=0.5,
                sampling_defaults={"num_inference_steps": 2, "num_diffusion_steps": 3})},
            "data": {"dataset": str(data), "label_column": None, "caption_column": "text"},
            "training": {"output_dir": str(out), "batch_size": 2, "max_steps": max_steps, "log_every": 1,
                         "image_every": 3, "learning_rate": 1e-3, **training},
            "loss": {"tokenizer": str(tokenizer), "text_encoder": str(clip)}})

    AcceleratorState._reset_state(True)
    trainer = GeneratorTrainer(config(tmp_path / "kl", 3))
    summary = trainer.train()
    cfg = trainer.accelerator.unwrap_model(trainer.model).config
    assert (cfg.token_dim, cfg.num_tokens) == (4, 8) and summary["step"] == 3
    records = [json.loads(line) for line in (tmp_path / "kl" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in records)
    assert "token_accuracy" not in records[0]  # a diffusion loss: no logits
    assert (tmp_path / "kl" / "images" / "step-0000003.png").is_file()
    final = tmp_path / "kl" / "final"
    pipe = MaskGenKLPipeline.from_pretrained(final)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(prompt=["a red car"], generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (1, 16, 16, 3) and np.isfinite(images).all()
    card = (final / "README.md").read_text()
    assert "vistok train generator" in card and 'pipe(prompt=["a red car"]' in card and "MaskGenKLPipeline" in card

    AcceleratorState._reset_state(True)
    GeneratorTrainer(config(tmp_path / "cut", 2)).train()
    AcceleratorState._reset_state(True)
    resumed = GeneratorTrainer(config(tmp_path / "cut", 3, resume_from_checkpoint="latest")).train()
    assert resumed["start_step"] == 2 and resumed["step"] == 3
    a = load_file(str(final / "transformer" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "final" / "transformer" / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    AcceleratorState._reset_state(True)

    # a data.token_column of ids is refused (vistok tokenize writes ids; this generator reads the KL posterior)
    refused = config(tmp_path / "ids", 1)
    refused.data.token_column = "token_ids"
    trainer = GeneratorTrainer(refused)
    trainer.dataset = None
    with pytest.raises(ValueError, match="continuous tokens: it trains on images through loss.tokenizer"):
        trainer.build_models()
    AcceleratorState._reset_state(True)
