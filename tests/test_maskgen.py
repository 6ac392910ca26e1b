"""MaskGen-VQ and MaskGenPipeline against the original bytedance/1d-tokenizer ``MaskGen_VQ`` (tests/fixtures/README.md,
"maskgen/"): the original checkpoint is rebuilt from the fixture's seed and key list (tied head = embedding),
converted with ``vistok convert maskgen-vq`` beside a tiny TA-TiTok tokenizer, and compared with what the original
computed: logits within the float32 tolerances, seeded ``generate`` token ids identical."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.maskgen import MaskGenVQConfig, MaskGenVQTransformer
from vistok.modeling.maskgen.convert_maskgen import convert as convert_maskgen
from vistok.modeling.titok import TiTokConfig, TiTokModel
from vistok.pipelines import MaskGenPipeline
from _random_weights import random_state_dict
from _tolerances import assert_matches_original
from _captioned import captioned_image_folder

FIXTURES = Path(__file__).parent / "fixtures" / "maskgen"
META = json.loads((FIXTURES / "maskgen_vq.json").read_text())
EXPECTED = load_file(str(FIXTURES / "maskgen_vq.safetensors"))
TEXT_DIM, TEXT_LENGTH = 24, 5


def original_state_dict(meta=META) -> dict[str, torch.Tensor]:
    state = random_state_dict(meta["state_dict_shapes"], meta["weights_seed"])
    head, embedding = meta["tied_keys"]
    state[head] = state[embedding].clone()
    return state


def tiny_ta_titok(folder: Path) -> Path:
    """A random text-conditioned TiTok with the generator's codebook and token count."""
    torch.manual_seed(0)
    cfg = TiTokConfig(image_size=16, patch_size=8, decoder_patch_size=8, num_tokens=8, codebook_size=64, token_dim=4,
                      encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2, decoder_hidden_size=32,
                      decoder_num_layers=1, decoder_num_heads=2, is_legacy=False, use_l2_norm=False,
                      text_conditioned=True, text_hidden_size=TEXT_DIM, text_max_length=TEXT_LENGTH)
    TiTokModel(cfg).save_pretrained(folder)
    return folder


def tiny_clip(folder: Path) -> Path:
    """A random CLIP text tower (TEXT_DIM wide, TEXT_LENGTH positions) with a character-level CLIPTokenizer."""
    chars = list("abcdefghijklmnopqrstuvwxyz")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=TEXT_LENGTH).save_pretrained(folder)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=TEXT_DIM, intermediate_size=48, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=TEXT_LENGTH, projection_dim=TEXT_DIM,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(1)
    CLIPTextModelWithProjection(config).save_pretrained(folder)
    return folder


def count_linear_calls(monkeypatch) -> Counter:
    """Counts, per nn.Linear, the calls that reach its own forward (a reused output does not)."""
    computed = Counter()
    linear_forward = torch.nn.Linear.forward

    def counting(self, x):
        computed[self] += 1
        return linear_forward(self, x)

    monkeypatch.setattr(torch.nn.Linear, "forward", counting)
    return computed


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(pipeline without a text encoder, pipeline with the tiny CLIP, folders)."""
    root = tmp_path_factory.mktemp("maskgen")
    release = root / "original"
    release.mkdir()
    state = original_state_dict()
    del state["lm_head.weight"]  # PyTorchModelHubMixin's safetensors keep one name of a shared tensor
    save_file(state, str(release / "model.safetensors"))
    (release / "config.json").write_text(json.dumps(META["original_config"]))
    tokenizer = tiny_ta_titok(root / "tatitok")
    assert cli_main(["convert", "maskgen-vq", "--original", str(release), "--tokenizer", str(tokenizer),
                     "--output", str(root / "pipe")]) == 0
    clip = tiny_clip(root / "clip")
    assert cli_main(["convert", "maskgen-vq", "--original", str(release), "--tokenizer", str(tokenizer),
                     "--text-encoder", str(clip), "--output", str(root / "pipe-clip")]) == 0
    pipes = []
    for name in ("pipe", "pipe-clip"):
        pipe = MaskGenPipeline.from_pretrained(root / name)
        pipe.set_progress_bar_config(disable=True)
        pipes.append(pipe)
    return pipes[0], pipes[1], root


def test_logits_match_original(converted):
    pipe, _, root = converted
    model = AutoModel.from_pretrained(root / "pipe" / "transformer").eval()
    assert isinstance(model, MaskGenVQTransformer) and model.config.weight_tying
    e = EXPECTED
    assert_matches_original(model, lambda m: m(e["input_ids"], e["encoder_hidden_states"].to(m.dtype),
                                               e["pooled_projections"].to(m.dtype), aesthetic_score=e["aesthetic_score"]).logits,
                            e["logits"], "logits")
    # the original's [B, 1, D] pooled layout is accepted too
    with torch.no_grad():
        a = model(e["input_ids"], e["encoder_hidden_states"], e["pooled_projections"], aesthetic_score=e["aesthetic_score"]).logits
        b = model(e["input_ids"], e["encoder_hidden_states"], e["pooled_projections"][:, 0], aesthetic_score=e["aesthetic_score"]).logits
    assert torch.equal(a, b)


def test_reusing_condition_computes_the_condition_once_and_changes_no_result(converted, monkeypatch):
    """MaskGenPipeline samples within ``reusing_condition()``: the text projection and the modulations are computed
    once while the condition is unchanged (and again when it changes), the logits are those computed without it, and
    the Linears are restored on exit."""
    model = converted[0].transformer
    e = EXPECTED
    text, pooled, score = e["encoder_hidden_states"], e["pooled_projections"], e["aesthetic_score"]
    ids = [e["input_ids"], e["input_ids"].flip(1)]
    with torch.no_grad():
        expected = [model(i, text, pooled, aesthetic_score=score).logits for i in ids]
        expected.append(model(ids[0], text, pooled * 2, aesthetic_score=score).logits)
    computed = count_linear_calls(monkeypatch)
    modulations = [model.cond_pooled_proj, model.norm.linear] + [b.norm1.linear for b in model.blocks]
    modulations += [b.norm1_context.linear for b in model.blocks]
    with torch.no_grad(), model.reusing_condition():
        got = [model(i, text, pooled, aesthetic_score=score).logits for i in ids]
        assert [computed[m] for m in [model.text_embed_proj, *modulations]] == [1] * (1 + len(modulations))
        assert computed[model.blocks[0].attn.to_q] == 2
        got.append(model(ids[0], text, pooled * 2, aesthetic_score=score).logits)  # a new condition is computed
        assert [computed[m] for m in modulations] == [2] * len(modulations) and computed[model.text_embed_proj] == 1
    assert not any("forward" in m.__dict__ for m in model.modules())
    with torch.no_grad():
        model(ids[0], text, pooled, aesthetic_score=score)
    assert computed[model.text_embed_proj] == 2  # restored: computed again
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


@pytest.mark.parametrize("run", ["cosine", "linear"])
def test_seeded_samples_equal_original_generate(converted, run):
    pipe = converted[0]
    settings = META["generate_runs"][run]
    e = EXPECTED
    ids, _ = pipe.sample_tokens(
        prompt_embeds=e["encoder_hidden_states"], pooled_prompt_embeds=e["pooled_projections"],
        negative_prompt_embeds=e["null_encoder_hidden_states"].expand(2, -1, -1),
        negative_pooled_prompt_embeds=e["null_pooled_projections"].expand(2, -1, -1),
        num_inference_steps=settings["num_sample_steps"], guidance_scale=settings["guidance_scale"],
        guidance_schedule=settings["guidance_decay"], randomize_temperature=settings["randomize_temperature"],
        softmax_temperature_annealing=settings["softmax_temperature_annealing"], aesthetic_score=6.5,
        generator=torch.Generator().manual_seed(META["generate_seed"]))
    assert torch.equal(ids, e[f"generated_ids_{run}"])


def test_released_sampling_defaults_are_stored(converted):
    cfg = converted[0].transformer.config
    assert cfg.sampling_defaults["guidance_scale"] == 12.0 and cfg.sampling_defaults["num_inference_steps"] == 16
    assert cfg.sampling_defaults["aesthetic_score"] == 6.5 and cfg.sampling_defaults["guidance_schedule"] == "cosine"
    assert (cfg.codebook_size, cfg.num_tokens, cfg.num_classes, cfg.num_attention_heads) == (64, 8, 10, 2)


def test_prompt_to_image_with_the_clip_text_encoder(converted):
    _, pipe, root = converted
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    images = pipe("a red car", negative_prompt="blurry", num_inference_steps=4, generator=g(), output_type="np").images
    assert images.shape == (1, 16, 16, 3) and (0 <= images).all() and (images <= 1).all()
    # the same through precomputed features: CLIP's penultimate / pooled / last hidden state of the prompts
    feats = pipe.encode_prompt(["a red car"])
    neg = pipe.encode_prompt(["blurry"])
    again = pipe(prompt_embeds=feats.penultimate_hidden_state, pooled_prompt_embeds=feats.pooled,
                 negative_prompt_embeds=neg.penultimate_hidden_state, negative_pooled_prompt_embeds=neg.pooled,
                 decoder_prompt_embeds=feats.last_hidden_state, num_inference_steps=4, generator=g(), output_type="np").images
    assert (images == again).all()
    card = (root / "pipe-clip" / "README.md").read_text()
    assert "MaskGen-VQ" in card and "pipeline_tag: text-to-image" in card and "CLIPTextModelWithProjection" in card


def test_bad_inputs_are_refused(converted):
    pipe, clip_pipe, _ = converted
    e = EXPECTED
    with pytest.raises(ValueError, match="no text_encoder/tokenizer"):
        pipe("a red car", num_inference_steps=4, output_type="latent")
    with pytest.raises(ValueError, match="decoder_prompt_embeds"):
        pipe(prompt_embeds=e["encoder_hidden_states"], pooled_prompt_embeds=e["pooled_projections"],
             negative_prompt_embeds=e["encoder_hidden_states"], negative_pooled_prompt_embeds=e["pooled_projections"],
             num_inference_steps=2, output_type="np")
    with pytest.raises(ValueError, match="pooled_prompt_embeds must be given"):
        pipe(prompt_embeds=e["encoder_hidden_states"], num_inference_steps=4, output_type="latent")
    with pytest.raises(ValueError, match="guidance_schedule must be one of"):
        clip_pipe("a", guidance_schedule="power-cosine", num_inference_steps=4, output_type="latent")
    with pytest.raises(ValueError, match="num_inference_steps must be"):
        clip_pipe("a", num_inference_steps=9, output_type="latent")
    model = pipe.transformer
    with pytest.raises(ValueError, match="input_ids must lie in"):
        model(torch.full((1, 8), 65), e["encoder_hidden_states"][:1], e["pooled_projections"][:1])
    with pytest.raises(ValueError, match="encoder_hidden_states must be"):
        model(e["input_ids"], e["encoder_hidden_states"][:1], e["pooled_projections"])
    with pytest.raises(ValueError, match="aesthetic_score must be"):
        model(e["input_ids"], e["encoder_hidden_states"], e["pooled_projections"], aesthetic_score=torch.ones(3))
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        MaskGenVQConfig(hidden_size=30, num_attention_heads=4)


def test_pickle_checkpoint_with_yaml_and_refusals(converted, tmp_path):
    import yaml

    _, _, root = converted
    torch.save(original_state_dict(), tmp_path / "maskgen.bin")  # the pickle mirror: both names of the tied head
    (tmp_path / "maskgen.yaml").write_text(yaml.safe_dump(META["original_config"]))
    out = convert_maskgen(str(tmp_path / "maskgen.bin"), str(tmp_path / "out"), tokenizer=str(root / "tatitok"),
                          config=str(tmp_path / "maskgen.yaml"))
    a = MaskGenPipeline.from_pretrained(out).transformer.state_dict()
    b = AutoModel.from_pretrained(root / "pipe" / "transformer").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    broken = original_state_dict()
    broken["lm_head.weight"] = broken["lm_head.weight"] + 1
    torch.save(broken, tmp_path / "broken.bin")
    with pytest.raises(ConversionError, match="lm_head.weight differs"):
        convert_maskgen(str(tmp_path / "broken.bin"), str(tmp_path / "x"), tokenizer=str(root / "tatitok"),
                        config=str(tmp_path / "maskgen.yaml"))
    with pytest.raises(ConversionError, match="decoder_num_heads"):
        convert_maskgen(str(tmp_path / "maskgen.bin"), str(tmp_path / "y"), tokenizer=str(root / "tatitok"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_maskgen_trains_on_captions_and_exports_a_pipeline(tmp_path):
    """``vistok train generator`` with ``model.family: maskgen-vq``: the masked-token loss on a caption column through
    the frozen CLIP text tower (caption dropout for guidance), exported as a MaskGenPipeline that decodes with text."""
    import numpy as np

    from vistok import VistokImageProcessor
    from vistok.training import load_train_config
    from vistok.training.generator import GeneratorTrainer

    data = captioned_image_folder(tmp_path / "captioned", 16)
    tokenizer = tiny_ta_titok(tmp_path / "tatitok")
    VistokImageProcessor.from_model_config(TiTokConfig.from_pretrained(tokenizer)).save_pretrained(tokenizer)
    clip = tiny_clip(tmp_path / "clip")
    config = load_train_config("generator", overrides={
        "model": {"family": "maskgen-vq", "config": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                         text_hidden_size=TEXT_DIM, micro_condition_embed_dim=8,
                                                         num_classes=1, text_drop_prob=0.5,
                                                         sampling_defaults={"num_inference_steps": 4})},
        "data": {"dataset": str(data), "label_column": None, "caption_column": "text"},
        "training": {"output_dir": str(tmp_path / "maskgen"), "batch_size": 2, "max_steps": 2, "log_every": 1, "image_every": 2},
        "loss": {"tokenizer": str(tokenizer), "text_encoder": str(clip)}})
    trainer = GeneratorTrainer(config)
    summary = trainer.train()
    cfg = trainer.accelerator.unwrap_model(trainer.model).config
    assert (cfg.codebook_size, cfg.num_tokens) == (64, 8)
    first = json.loads((tmp_path / "maskgen" / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(first["loss"] - np.log(64)) < 1.0 and summary["step"] == 2
    pipe = MaskGenPipeline.from_pretrained(tmp_path / "maskgen" / "final")
    images = pipe(prompt=["a red car"], generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (1, 16, 16, 3) and (tmp_path / "maskgen" / "images" / "step-0000002.png").is_file()
