"""TokenFlow: the dual-codebook shared-mapping multi-scale tokenizer.

Parity with the original ByteFlow-AI/TokenFlow code (tests/fixtures/README.md, "tokenflow/"): the original
checkpoints are rebuilt from the fixture's seeds and key lists (wrapped in ``{"ema": ...}`` as released),
converted with ``vistok convert tokenflow``, and compared with what the original computed: token ids
identical at every scale, semantic features, latents, reconstructions and the quantizer's training terms
within the float32 rounding bound of tests/_tolerances.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import vistok  # noqa: F401  (registers the model types)
from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.quantizers import SharedMappingMultiScaleQuantizer
from vistok.modeling.tokenflow import TokenFlowModel
from vistok.modeling.tokenflow.convert_tokenflow import convert
from _random_weights import random_state_dict
from _tolerances import assert_close_to_fp32_fixture, float64_copy, rounding_error

FIXTURES = Path(__file__).parent / "fixtures" / "tokenflow"
META = json.loads((FIXTURES / "tokenflow.json").read_text())
TENSORS = load_file(str(FIXTURES / "tokenflow.safetensors"))
VARIANTS = tuple(META["variants"])
TEACHER = {"clipb_224": "clip", "siglip_384": "siglip"}


def expected(name: str) -> dict[str, torch.Tensor]:
    return {k[len(name) + 1:]: v for k, v in TENSORS.items() if k.startswith(name + ".")}


def original_state(meta: dict) -> dict[str, torch.Tensor]:
    shapes = meta["state_dict_shapes"]
    buffers = {k: torch.tensor(v).reshape(shapes[k]) for k, v in meta["buffers"].items()}
    weights = {k: v for k, v in shapes.items() if k not in buffers and not k.endswith("codebook_used")}
    state = {**random_state_dict(weights, meta["weights_seed"]), **buffers}
    state["quantize.codebook_used"] = torch.zeros(shapes["quantize.codebook_used"])
    return state


@pytest.fixture(scope="module")
def tokenflow_converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenflow")
    out = {}
    for name in VARIANTS:
        meta = META["variants"][name]
        torch.save({"ema": original_state(meta), "model": {"unused": torch.zeros(1)}}, root / f"{name}.pt")
        folder = root / name
        assert cli_main(["convert", "tokenflow", "--original", str(root / f"{name}.pt"), "--output", str(folder),
                         "--patch-nums", ",".join(map(str, meta["scales"])), "--image-size", str(meta["image_size"])]) == 0
        model = AutoModel.from_pretrained(folder)
        assert isinstance(model, TokenFlowModel) and model.config.semantic_encoder_type == TEACHER[meta["teacher"]]
        out[name] = (model.eval(), expected(name), folder, float64_copy(model).eval())
    return out


def check(models, compute, expected_value, what):
    """``compute(model)`` (ours, float32) against the original's fixture within tests/_tolerances.py's bound, the
    rounding error measured against the float64 copy made once per variant."""
    model, _, _, model64 = models
    with torch.no_grad():
        ours, reference = compute(model), compute(model64)
    assert_close_to_fp32_fixture(ours, expected_value, rounding_error(ours, reference), what)


@pytest.mark.parametrize("name", VARIANTS)
def test_token_ids_and_features_match_the_original(tokenflow_converted, name):
    model, exp, *_ = tokenflow_converted[name]
    x = exp["pixel_values"]
    check(tokenflow_converted[name], lambda m: m._tower_tokens(x.to(m.dtype)), exp["tower_tokens"], f"{name} tower tokens")
    check(tokenflow_converted[name], lambda m: m.encode_semantic(x.to(m.dtype)), exp["semantic_features"], f"{name} semantic features")
    with torch.no_grad():
        enc = model.encode(x)
    assert torch.equal(enc.token_ids, exp["token_ids"])  # every scale
    check(tokenflow_converted[name], lambda m: m.encode(x.to(m.dtype)).latents, exp["latents"], f"{name} latents")
    features = model.get_image_features(x).last_hidden_state
    side = model.config.patch_nums[-1]
    assert features.shape == (x.shape[0], side * side, model.config.code_dim)
    assert torch.allclose(features, exp["latents"].flatten(2).transpose(1, 2), atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_decoding_matches_the_original(tokenflow_converted, name):
    exp = tokenflow_converted[name][1]
    latents, ids = exp["latents"], exp["token_ids"]
    check(tokenflow_converted[name], lambda m: m.decode_latents(latents.to(m.dtype)), exp["reconstruction"], f"{name} reconstruction")
    check(tokenflow_converted[name], lambda m: m.decode_semantic(latents.to(m.dtype)), exp["semantic_reconstruction"],
          f"{name} semantic reconstruction")
    check(tokenflow_converted[name], lambda m: m.decode(ids), exp["code_reconstruction"], f"{name} decode(token_ids)")
    check(tokenflow_converted[name], lambda m: m.quantizer.teacher_forcing_input(ids).to(m.dtype), exp["teacher_forcing_input"],
          f"{name} t2i inputs")


@pytest.mark.parametrize("name", VARIANTS)
def test_quantizer_training_terms_match_the_original(tokenflow_converted, name):
    model, exp, *_ = tokenflow_converted[name]
    with torch.no_grad():
        features = model._features(exp["pixel_values"])
        q = model.quantizer(features)
    assert torch.equal(q.indices, exp["token_ids"])
    assert torch.allclose(q.codebook_loss, exp["vq_loss"], rtol=1e-5, atol=1e-7)
    assert torch.allclose(q.commitment_loss, exp["commit_loss"], rtol=1e-5, atol=1e-7)
    assert torch.allclose(q.loss, exp["vq_loss"] + exp["commit_loss"], rtol=1e-5, atol=1e-7)


def _training_teacher(name: str):
    """The fixture's frozen training teacher. ``clip``: the original's clip.load("ViT-B/16") at a tiny size (OpenAI
    CLIP visual weights from the recorded seed) as a transformers CLIPModel, its visual part converted like the
    tokenizer's tower and ``proj`` as ``visual_projection`` (the text tower is never read); ``siglip``: the
    SiglipVisionModel the original loads, tiny."""
    from transformers import CLIPConfig, CLIPModel, SiglipVisionConfig, SiglipVisionModel

    from vistok.modeling.tokenflow.convert_tokenflow import _convert_clip

    spec = META["variants"][name]
    t = spec["training_teacher"]
    visual = random_state_dict(spec["training_teacher_state_dict_shapes"], spec["training_teacher_seed"])
    if name == "siglip":
        teacher = SiglipVisionModel(SiglipVisionConfig(**t))
        teacher.load_state_dict(visual, strict=True)
        return teacher.eval()
    proj = visual.pop("visual.proj")
    vision = {f"vision_model.{k}": v for k, v in _convert_clip({k[len("visual."):]: v for k, v in visual.items()}).items()}
    width = t["vision_width"]
    config = CLIPConfig(
        projection_dim=t["embed_dim"],
        vision_config=dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=t["vision_layers"],
                           num_attention_heads=width // 64, image_size=t["image_resolution"],
                           patch_size=t["vision_patch_size"], hidden_act="quick_gelu", layer_norm_eps=1e-5),
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=1, vocab_size=8,
                         max_position_embeddings=4, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    torch.manual_seed(0)
    teacher = CLIPModel(config)
    missing, unexpected = teacher.load_state_dict({**vision, "visual_projection.weight": proj.t()}, strict=False)
    assert not unexpected and all(k.startswith(("text_model.", "text_projection.", "logit_scale")) for k in missing)
    return teacher.eval()


@pytest.mark.parametrize("name", VARIANTS)
def test_semantic_distillation_matches_the_original(tokenflow_converted, name):
    """The training objective's semantic term (tokenizer/vq_loss.py: VQLoss.get_regress_target +
    calculate_clip_rec_loss, 1 - cos) against a frozen teacher: the teacher's target (CLIP: ScalingLayerForClip,
    position embeddings interpolated to the 64 px grid, ln_post tokens @ proj; SigLIP: ScalingLayerForSigLip,
    hidden_states[-2]) and the loss on the original's latents."""
    from transformers import Dinov2Config, Dinov2Model

    from vistok.modeling.tokenflow.training_tokenflow import semantic_teacher_target

    model, exp, _, model64 = tokenflow_converted[name]
    teacher = _training_teacher(name)
    teacher64 = float64_copy(teacher).eval()
    x, latents = exp["pixel_values"], exp["latents"]
    with torch.no_grad():
        ours, reference = semantic_teacher_target(teacher, x), semantic_teacher_target(teacher64, x.double())
        assert_close_to_fp32_fixture(ours, exp["teacher_target"], rounding_error(ours, reference), f"{name} teacher target")
        loss = model.semantic_distillation_loss(teacher, x, latents)
        loss64 = model64.semantic_distillation_loss(teacher64, x.double(), latents.double())
    assert_close_to_fp32_fixture(loss, exp["semantic_distillation_loss"], rounding_error(loss, loss64),
                                 f"{name} semantic distillation loss")
    if name != "clip":
        return
    # another teacher: no TokenFlow recipe (vistok train tokenizer then uses its generic target)
    dino = Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    patch_size=16, image_size=64))
    assert model.semantic_distillation_loss(dino, x, latents) is None
    with pytest.raises(ValueError, match="needs its projection"):
        model.semantic_distillation_loss(teacher.vision_model, x, latents)
    with pytest.raises(ValueError, match="semantic_feature_dim"):
        model.semantic_distillation_loss(teacher, torch.nn.functional.interpolate(x, size=(48, 48)), latents)


def test_scale_layout_and_prefix_decoding(tokenflow_converted):
    model, exp, *_ = tokenflow_converted["clip"]
    ids = exp["token_ids"]
    cfg = model.config
    assert cfg.token_layout == "multiscale" and cfg.num_tokens == ids.shape[1] == sum(p * p for p in cfg.patch_nums)
    scales = model.split_scales(ids)
    assert [s.shape[1:] for s in scales] == [(p, p) for p in cfg.patch_nums]
    assert torch.equal(model.merge_scales(scales), ids)
    with torch.no_grad():
        coarse = model.decode(ids, up_to_scale=0)
        prefix = model.decode(ids[:, : cfg.scale_offsets[1]])
    assert torch.allclose(coarse, prefix, atol=1e-6)
    with pytest.raises(ValueError, match="tokens per image"):
        model.decode(ids[:, :3])


def test_bad_inputs_get_clear_errors(tokenflow_converted):
    model, exp, *_ = tokenflow_converted["clip"]
    with pytest.raises(ValueError, match="64x64"):
        model.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="codebook_size"):
        model.decode(torch.full((1, model.config.num_tokens), model.config.codebook_size))
    with pytest.raises(ValueError, match="latents must have shape"):
        model.decode_semantic(torch.zeros(1, 3, 4, 4))


def test_training_forward_backpropagates_through_both_branches(tokenflow_converted):
    model, exp, *_ = tokenflow_converted["clip"]
    model = copy.deepcopy(model).train()
    out = model(exp["pixel_values"])
    semantic = model.decode_semantic(out.latents)
    loss = (out.reconstruction - exp["pixel_values"]).abs().mean() + semantic.pow(2).mean() + out.quantizer_loss
    loss.backward()
    assert model.encoder.conv_in.weight.grad is not None and model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.semantic_in[0].weight.grad.abs().sum() > 0
    assert model.semantic_encoder.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert model.quantizer.codebooks[0].weight.grad.abs().sum() > 0


def test_converter_errors(tmp_path):
    meta = META["variants"]["clip"]
    state = original_state(meta)
    del state["quantize.embedding_vqgan.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ConversionError, match="embedding_vqgan"):
        convert(str(tmp_path / "broken.pt"), str(tmp_path / "out"), patch_nums=meta["scales"], image_size=64)
    assert not (tmp_path / "out").exists()
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ConversionError, match="teacher"):
        convert(str(tmp_path / "other.pt"), str(tmp_path / "out"))
    with pytest.raises(ConversionError, match="preset"):
        convert(str(tmp_path / "broken.pt"), str(tmp_path / "out"), preset="nope")


def test_shared_mapping_quantizer_contract():
    torch.manual_seed(0)
    q = SharedMappingMultiScaleQuantizer(codebook_size=16, split=(3, 2), patch_nums=(1, 2, 4))
    f = torch.randn(2, 5, 4, 4)
    out = q(f)
    assert out.indices.shape == (2, 21) and out.quantized.shape == f.shape
    assert torch.equal(q.codes_to_indices(f), out.indices)
    assert torch.allclose(q.indices_to_codes(out.indices), out.quantized, atol=1e-5)
    # one shared index: the codes of each part are that index's normalised row of each codebook
    row = q.embed(torch.tensor([5]))[0]
    assert torch.allclose(row[:3].norm(), torch.tensor(1.0)) and torch.allclose(row[3:].norm(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="split"):
        SharedMappingMultiScaleQuantizer(16, split=(3, 0))


# -- TokenFlow-t2i ---------------------------------------------------------------------------------------------
T2I_META = json.loads((FIXTURES / "tokenflow_t2i.json").read_text())
T2I = {k[len("t2i."):]: v for k, v in load_file(str(FIXTURES / "tokenflow_t2i.safetensors")).items()}


def _word_tokenizer():
    """A word-level stand-in for the Llama tokenizer: "wN" is id N, BOS prepended (ids 0 [PAD], 1 <s>, 2 <img>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "<s>": 1, "<img>": 2, **{f"w{i}": i for i in range(3, T2I_META["text_vocab"])}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[PAD]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", pad_token="[PAD]")


def _text(ids):
    return " ".join(f"w{i}" for i in ids[1:])


@pytest.fixture(scope="module")
def t2i_pipeline(tokenflow_converted, tmp_path_factory):
    """The original release folder rebuilt (config.json, safetensors, added_tokens.json, a tokenizer), tokenflow_converted
    with ``vistok convert tokenflow-t2i`` against the tokenflow_converted clip tokenizer."""
    from safetensors.torch import save_file
    from vistok import TokenFlowTextToImagePipeline

    root = tmp_path_factory.mktemp("tokenflow_t2i")
    original = root / "original"
    original.mkdir()
    meta, llm = T2I_META, T2I_META["llm"]
    _word_tokenizer().save_pretrained(original)
    codebook = META["variants"]["clip"]["codebook_size"]
    added = {f"<vq_token_{i}>": meta["text_vocab"] + i for i in range(codebook)}
    (original / "added_tokens.json").write_text(json.dumps({**added, "[PAD]": meta["pad"], "<img>": meta["img"]}))
    config = {"model_type": "llava_llama", "architectures": ["LlavaLlamaForCausalLM"], "vocab_size": meta["text_vocab"] + codebook,
              "mm_hidden_size": 12, "bos_token_id": meta["bos"], "eos_token_id": 2, "pad_token_id": meta["pad"],
              **llm}
    (original / "config.json").write_text(json.dumps(config))
    save_file(random_state_dict(meta["state_dict_shapes"], meta["weights_seed"]), str(original / "model.safetensors"))
    folder = root / "pipeline"
    assert cli_main(["convert", "tokenflow-t2i", "--original", str(original), "--tokenizer", str(tokenflow_converted["clip"][2]),
                     "--prompt-length", str(meta["prompt_length"]), "--output", str(folder)]) == 0
    pipe = TokenFlowTextToImagePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_t2i_logits_match_the_original(t2i_pipeline):
    transformer = t2i_pipeline.transformer
    ids = T2I["prompt_ids"]
    assert [t2i_pipeline.encode_prompt_ids(t2i_pipeline.prompt_ids([_text(p)])[0]) for p in T2I_META["prompts"]] == ids.tolist()
    inputs = t2i_pipeline.image_tokenizer.teacher_forcing_input(T2I["codes"])
    assert torch.allclose(inputs, T2I["image_inputs"], atol=1e-5)  # the original VQTower's inputs
    n = ids.shape[1] + inputs.shape[1]
    keep = ids != T2I_META["pad"]  # pad positions attend to nothing (the original's rows are all masked)
    rows = torch.cat([keep, torch.ones(ids.shape[0], inputs.shape[1], dtype=torch.bool)], dim=1)
    with torch.no_grad():
        mask = transformer(input_ids=ids, image_inputs=T2I["image_inputs"]).attention_mask
    assert torch.equal(mask, T2I["attention_mask_4d"][:, :, :n, :n])
    expected = T2I["logits"][:, :n][rows]
    assert_matches = __import__("_tolerances").assert_matches_original
    assert_matches(transformer, lambda m: m(input_ids=ids, image_inputs=T2I["image_inputs"].to(m.dtype)).logits[rows],
                   expected, "t2i logits")


@pytest.mark.parametrize("setting", list(T2I_META["sampling"]))
def test_t2i_seeded_samples_match_the_original(t2i_pipeline, setting):
    """One loop (the release default) and the multi-step refinement (the original's loop 2 and 3, top_k / top_p
    lists): the pipeline's cached refinement draws the original's tokens."""
    s = T2I_META["sampling"][setting]
    prompts = [_text(p) for p in T2I_META["prompts"]]
    kwargs = dict(prompt=prompts, negative_prompt=_text(T2I_META["negative"]), guidance_scale=s["cfg"], top_k=s["top_k"],
                  top_p=s["top_p"])
    if isinstance(s["top_k"], list):
        kwargs["num_loops"] = len(s["top_k"])
    ids = t2i_pipeline(**kwargs, generator=torch.Generator().manual_seed(s["g_seed"]), output_type="latent").images
    assert torch.equal(ids, T2I[f"sample.{setting}.token_ids"])
    pixels = t2i_pipeline(**kwargs, generator=torch.Generator().manual_seed(s["g_seed"]), output_type="pt").images
    assert pixels.shape == (2, 3, 64, 64)
    with torch.no_grad():
        raw = t2i_pipeline.image_tokenizer.decode(ids)
    original = T2I[f"sample.{setting}.images"].permute(0, 3, 1, 2).int()
    ours = torch.clamp(raw * 127.5 + 128.0, 0, 255).to(torch.uint8).int()  # the original's conversion
    assert (ours - original).abs().max() <= 1


def test_t2i_sampling_loop_settings(t2i_pipeline):
    """num_loops / per-loop top_k and top_p: the release's strategies when unset, clear errors when they disagree."""
    settings = t2i_pipeline._loop_settings
    assert settings(None, None, None) == ([600], [0.6])  # one loop: the config's sampling_defaults
    assert settings(2, None, None) == ([1200, 1], [0.8, 0.0])  # run_llava_samples.py --loop 2
    assert settings(3, None, None) == ([1200, 100, 1], [0.8, 0.8, 0.0])  # --loop 3
    assert settings(None, [40, 1], [0.8, 0.0]) == ([40, 1], [0.8, 0.0])  # lists set the loop count
    assert settings(2, 30, None) == ([30, 30], [0.8, 0.0])  # a number holds for every loop
    kwargs = dict(prompt="w5 w6", generator=torch.Generator().manual_seed(0), output_type="latent")
    for bad, match in ((dict(num_loops=4), "no released strategy"), (dict(num_loops=0), "num_loops"),
                       (dict(top_k=[40, 1], top_p=[0.8]), "different loop counts"),
                       (dict(num_loops=3, top_k=[40, 1]), "top_k has 2 values for num_loops=3"),
                       (dict(top_k=[]), "non-empty list"), (dict(top_k=[40, -1], top_p=0.5), r"top_k\[1\]"),
                       (dict(top_k=[40, 1], top_p=[0.8, 1.5]), r"top_p\[1\] must be in \[0, 1\]")):
        with pytest.raises(ValueError, match=match):
            t2i_pipeline(**kwargs, **bad)
    ids = t2i_pipeline(**kwargs, num_loops=4, top_k=[40, 20, 10, 1], top_p=0.9).images  # any loop count with lists
    assert ids.shape == (1, T2I["codes"].shape[1]) and 0 <= ids.min() and ids.max() < t2i_pipeline.transformer.config.codebook_size


TEXT_TOKENIZER = json.loads((FIXTURES / "tokenflow_t2i_text_tokenizer.json").read_text())


def _train_sentencepiece(path: Path) -> list:
    """The fixture's tiny SentencePiece model (Llama's trainer settings), trained again here; returns its pieces."""
    import io

    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXT_TOKENIZER["lines"]), model_writer=buffer,
                                   **TEXT_TOKENIZER["options"])
    path.write_bytes(buffer.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(path))
    return [[sp.id_to_piece(i), sp.get_score(i)] for i in range(sp.get_piece_size())]


@pytest.mark.parametrize("variant", list(TEXT_TOKENIZER["tokenizers"]))
def test_t2i_sentencepiece_tokenizer_encodes_prompts_as_the_original(tokenflow_converted, tmp_path, variant):
    """A release folder with a real SentencePiece Llama tokenizer (tokenizer.model trained here, the tokenizer files
    as the original's training saved them with transformers 4.43.4, legacy and non-legacy): `vistok convert
    tokenflow-t2i` copies it into the pipeline folder, which loads offline without the release folder, and the
    pipeline's prompt ids equal the original's crop_and_encode_text_and_img ids (prompts stripped as
    run_llava_samples.py does)."""
    import shutil

    from safetensors.torch import save_file
    from vistok import TokenFlowTextToImagePipeline

    recorded = TEXT_TOKENIZER["tokenizers"][variant]
    original = tmp_path / "original"
    original.mkdir()
    assert _train_sentencepiece(original / "tokenizer.model") == TEXT_TOKENIZER["pieces"], \
        f"sentencepiece {TEXT_TOKENIZER['sentencepiece']} trained a different model (another sentencepiece version?)"
    for name, content in recorded["files"].items():
        (original / name).write_text(json.dumps(content))
    vocab, added = recorded["vocab_size"], recorded["files"]["added_tokens.json"]
    shapes = dict(T2I_META["state_dict_shapes"])
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        shapes[key] = [vocab, shapes[key][1]]
    config = {"model_type": "llava_llama", "architectures": ["LlavaLlamaForCausalLM"], "vocab_size": vocab,
              "mm_hidden_size": 12, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": added["[PAD]"], **T2I_META["llm"]}
    (original / "config.json").write_text(json.dumps(config))
    save_file(random_state_dict(shapes, 7171), str(original / "model.safetensors"))
    folder = tmp_path / "pipeline"
    assert cli_main(["convert", "tokenflow-t2i", "--original", str(original), "--tokenizer", str(tokenflow_converted["clip"][2]),
                     "--prompt-length", str(TEXT_TOKENIZER["prompt_length"]), "--output", str(folder)]) == 0
    shutil.rmtree(original)
    pipe = TokenFlowTextToImagePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.tokenizer is not None and (folder / "tokenizer" / "tokenizer.json").is_file()  # no sentencepiece needed
    cfg = pipe.transformer.config
    assert (cfg.pad_token_id, cfg.image_start_token_id, cfg.image_token_start) == (
        added["[PAD]"], added["<img>"], added["<vq_token_0>"])
    prompts = TEXT_TOKENIZER["prompts"]
    if variant == "non_legacy":  # see the fixture script: the legacy original differs after special-token text
        prompts = prompts + [TEXT_TOKENIZER["special_text_prompt"]]
    assert [pipe.encode_prompt_ids(ids) for ids in pipe.prompt_ids(prompts)] == recorded["prompt_ids"]
    # and it generates from text (the released negative prompt tokenized by the same tokenizer)
    ids = pipe(prompt=prompts[:2], generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert ids.shape == (2, T2I["codes"].shape[1]) and 0 <= ids.min() and ids.max() < cfg.codebook_size


# -- training --------------------------------------------------------------------------------------------------
TINY = dict(image_size=32, codebook_size=16, semantic_code_dim=4, pixel_code_dim=4, patch_nums=[1, 2, 4],
            semantic_encoder_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
            semantic_decoder_hidden_size=32, semantic_decoder_num_layers=1, semantic_decoder_num_heads=2,
            semantic_decoder_grid=4, semantic_feature_dim=16, pixel_channels=32, pixel_channel_mult=[1, 1, 1, 2],
            pixel_num_res_blocks=1, pixel_z_channels=32, decoder_channels=32, decoder_num_res_blocks=1)


def test_vistok_train_tokenizer_with_semantic_distillation(tmp_path):
    """`vistok train tokenizer` on the family with the original's objective: reconstruction + the quantizer's terms +
    the semantic decoder's 1 - cos to a frozen CLIP teacher's projected patch tokens (a tiny random CLIPModel folder,
    the original's clipb_224 recipe; test_semantic_distillation_matches_the_original checks the term itself)."""
    import numpy as np
    import PIL.Image
    from accelerate.state import AcceleratorState
    from transformers import CLIPConfig, CLIPModel

    from vistok.training import load_train_config
    from vistok.training.tokenizer import TokenizerTrainer

    (tmp_path / "data").mkdir()
    for i in range(4):
        rng = np.random.default_rng(i)
        PIL.Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "data" / f"{i}.png")
    torch.manual_seed(0)
    # 32 px through patch 8: the latents' 4x4 grid; projection to semantic_feature_dim
    teacher = CLIPModel(CLIPConfig(
        projection_dim=TINY["semantic_feature_dim"],
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                           patch_size=8),
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=1, vocab_size=8,
                         max_position_embeddings=4, bos_token_id=0, eos_token_id=1, pad_token_id=1)))
    teacher.save_pretrained(tmp_path / "clip")

    def config(out, **loss):
        return load_train_config("tokenizer", overrides={
            "model": {"family": "tokenflow", "config": TINY}, "data": {"dataset": str(tmp_path / "data")},
            "training": {"output_dir": str(out), "batch_size": 2, "max_steps": 2, "learning_rate": 1e-3, "log_every": 1,
                         "image_every": 1000, "checkpointing_steps": 1000, "export": False},
            "loss": {"reconstruction": "l1", **loss}})

    def head(trainer):
        return trainer.accelerator.unwrap_model(trainer.model).semantic_out.state_dict()

    AcceleratorState._reset_state(True)
    trainer = TokenizerTrainer(config(tmp_path / "run", semantic_weight=1.0, semantic_teacher=str(tmp_path / "clip")))
    summary = trainer.train()
    assert isinstance(trainer.teacher, CLIPModel)
    last = summary["last"]
    assert 0.0 <= last["semantic_loss"] <= 2.0 and last["quantizer_loss"] > 0 and last["reconstruction_loss"] > 0
    AcceleratorState._reset_state(True)
    plain = TokenizerTrainer(config(tmp_path / "plain"))
    plain.train()
    # the semantic decoder learns only from the semantic term
    assert any(not torch.equal(v, head(plain)[k]) for k, v in head(trainer).items())
    AcceleratorState._reset_state(True)


def test_t2i_training_objective_backpropagates(t2i_pipeline):
    import copy

    from vistok.modeling.tokenflow import next_scale_text_objective

    model = copy.deepcopy(t2i_pipeline.transformer).train()
    codes = T2I["codes"]
    logits, targets = next_scale_text_objective(model, model.config, t2i_pipeline.image_tokenizer, codes,
                                                {"input_ids": T2I["prompt_ids"]}, None)
    assert logits.shape == (codes.numel(), model.config.codebook_size) and torch.equal(targets, codes.flatten())
    loss = torch.nn.functional.cross_entropy(logits, targets)
    # the same loss through forward(labels=...)
    inputs = t2i_pipeline.image_tokenizer.teacher_forcing_input(codes)
    out = model(input_ids=T2I["prompt_ids"], image_inputs=inputs, labels=codes)
    assert torch.allclose(out.loss, loss, atol=1e-6)
    loss.backward()
    assert model.model.position_embedding.grad.abs().sum() > 0
    assert model.model.layers[0].self_attn.qknorm.query_norm.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="trains on text"):
        next_scale_text_objective(model, model.config, t2i_pipeline.image_tokenizer, codes, torch.zeros(2), None)
