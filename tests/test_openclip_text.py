"""The TA-TiTok / MaskGen text path against OpenCLIP itself (tests/fixtures/README.md, "openclip_text/").

The fixture holds what the ORIGINAL code computed with a tiny random OpenCLIP ViT-L-14-336 text tower (width 16, 2
layers, the real 49408-token vocabulary and 77 positions): bytedance/1d-tokenizer's ``open_clip_text_encoding``
(MaskGen's penultimate features and projected pooled embedding) and its TA-TiTok ``text_guidance`` (the last hidden
state), for token ids from OpenCLIP's own tokenizer, once with ``nn.GELU`` (what open_clip 2.29-2.31 builds for
``pretrained='openai'``) and once with QuickGELU (open_clip <= 2.28, and transformers' ``openai/clip-*``). Here the
same weights go through ``convert_open_clip_text`` into a transformers ``CLIPTextModelWithProjection`` and through
MaskGenPipeline's text conditioning.

Tokenization: ``test_clip_tokenizer_ids_equal_open_clip_tokenizer`` compares ``open_clip_token_ids`` (a transformers
``CLIPTokenizer`` + OpenCLIP's cleaning) with the ids OpenCLIP's ``SimpleTokenizer`` gave for edge-case prompts. It
needs the real vocabulary, which is not committed (1.3 MB): it runs where ``VISTOK_CLIP_TOKENIZER`` names a
CLIPTokenizer folder, where ``openai/clip-vit-large-patch14-336`` is in the Hugging Face cache, or where the
open_clip package (its ``bpe_simple_vocab_16e6.txt.gz``) is on the path or named by ``OPEN_CLIP_BPE``; else it
skips. Elsewhere the pipeline test reads the recorded ids through a stand-in tokenizer.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vistok.conversion import ConversionError
from vistok.modeling.layers.clip_text import (clip_text_features, convert_open_clip_text, open_clip_clean,
                                              open_clip_token_ids)
from vistok.modeling.maskgen import MaskGenVQConfig, MaskGenVQTransformer
from vistok.modeling.titok import TiTokConfig, TiTokModel
from vistok.pipelines import MaskGenPipeline
from _random_weights import random_state_dict
from _tolerances import assert_close_to_fp32_fixture, assert_matches_original, float64_copy, rounding_error

FIXTURES = Path(__file__).parent / "fixtures" / "openclip_text"
META = json.loads((FIXTURES / "openclip_text.json").read_text())
EXPECTED = load_file(str(FIXTURES / "openclip_text.safetensors"))
ACTIVATIONS = ("gelu", "quick_gelu")
CONTEXT = META["text_cfg"]["context_length"]
WIDTH = META["text_cfg"]["width"]
N_FEATURES = META["feature_prompts"]
FEATURE_PROMPTS = META["prompts"][:N_FEATURES]


def original_state_dict() -> dict[str, torch.Tensor]:
    """The fixture's open_clip.CLIP state dict (visual tower deleted, as upstream does), plus a ``logit_scale`` and a
    visual key as a whole CLIP checkpoint would hold them (the converter skips both)."""
    state = random_state_dict(META["state_dict_shapes"], META["weights_seed"])
    state["logit_scale"] = torch.tensor(4.6052)
    state["visual.proj"] = torch.zeros(4, 4)
    return state


def padded_ids(rows) -> torch.LongTensor:
    out = torch.zeros(len(rows), CONTEXT, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def converted(act: str):
    return convert_open_clip_text(original_state_dict(), hidden_act=act, num_attention_heads=META["text_cfg"]["heads"])


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_converted_text_tower_matches_open_clip(act):
    """CLIPTextModelWithProjection from the converted weights = OpenCLIP: hidden_states[-2] = MaskGen's penultimate
    features, last_hidden_state = TA-TiTok's text_guidance, text_embeds = MaskGen's pooled embedding."""
    model = converted(act)
    assert model.config.hidden_act == act and model.config.max_position_embeddings == CONTEXT
    ids = padded_ids(META["token_ids"][:N_FEATURES])
    run = lambda m: m(input_ids=ids, output_hidden_states=True)  # noqa: E731
    assert_matches_original(model, lambda m: run(m).hidden_states[-2], EXPECTED[f"maskgen_penultimate_{act}"],
                            f"penultimate ({act})")
    assert_matches_original(model, lambda m: run(m).last_hidden_state, EXPECTED[f"tatitok_text_guidance_{act}"],
                            f"last hidden state ({act})")
    assert_matches_original(model, lambda m: run(m).text_embeds, EXPECTED[f"maskgen_pooled_{act}"][:, 0],
                            f"pooled ({act})")


def test_the_activation_matters():
    """The two recorded variants differ far beyond the tolerance, so converting with the wrong ``hidden_act`` fails
    the comparison above (the release's text tower must be run with the activation it was trained/used with)."""
    model = converted("quick_gelu")
    ids = padded_ids(META["token_ids"][:N_FEATURES])
    with torch.no_grad():
        ours = model(input_ids=ids).last_hidden_state
    with pytest.raises(AssertionError, match="exceeds"):
        assert_matches_original(model, lambda m: m(input_ids=ids).last_hidden_state,
                                EXPECTED["tatitok_text_guidance_gelu"], "quick_gelu model vs the gelu original")
    assert (ours - EXPECTED["tatitok_text_guidance_quick_gelu"]).abs().max() < 1e-4


class RecordedIdsTokenizer:
    """Stands in for CLIPTokenizer where the real vocabulary is absent: OpenCLIP's recorded ids (start, tokens, end,
    already truncated) for the fixture's prompts, as ``open_clip_token_ids`` asks a tokenizer for them."""

    def __init__(self):
        self.ids = {open_clip_clean(p): ids for p, ids in zip(FEATURE_PROMPTS, META["token_ids"])}
        self.calls = []

    def __call__(self, prompts, padding, truncation, max_length):
        assert padding is False and truncation is True and max_length == CONTEXT
        self.calls.append(list(prompts))
        return {"input_ids": [self.ids[p] for p in prompts]}


def tiny_pipeline(text_encoder, tokenizer) -> MaskGenPipeline:
    torch.manual_seed(0)
    image_tokenizer = TiTokModel(TiTokConfig(
        image_size=16, patch_size=8, decoder_patch_size=8, num_tokens=8, codebook_size=64, token_dim=4,
        encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2, decoder_hidden_size=32, decoder_num_layers=1,
        decoder_num_heads=2, is_legacy=False, use_l2_norm=False, text_conditioned=True, text_hidden_size=WIDTH,
        text_max_length=CONTEXT)).eval()
    transformer = MaskGenVQTransformer(MaskGenVQConfig(
        codebook_size=64, num_tokens=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        text_hidden_size=WIDTH, micro_condition_embed_dim=16)).eval()
    return MaskGenPipeline(image_tokenizer=image_tokenizer, transformer=transformer, text_encoder=text_encoder,
                           tokenizer=tokenizer)


def check_pipeline_conditioning(pipe, act):
    """MaskGenPipeline's conditioning from the fixture's prompts = the original's: the prompts' penultimate features
    and pooled embedding (MaskGen), the empty negative prompt's (the original's ``[""]``), and the last hidden state
    the TA-TiTok decoder reads."""
    cond, pooled, uncond, uncond_pooled, last = pipe._prompt_conditions(FEATURE_PROMPTS, None, None, None, None, None, 1)
    with torch.no_grad():
        reference = clip_text_features(float64_copy(pipe.text_encoder), pipe.tokenizer, FEATURE_PROMPTS)
        ours = clip_text_features(pipe.text_encoder, pipe.tokenizer, FEATURE_PROMPTS)
    empty = FEATURE_PROMPTS.index("")
    expect_uncond = EXPECTED[f"maskgen_penultimate_{act}"][empty : empty + 1].expand(N_FEATURES, -1, -1)
    expect_uncond_pooled = EXPECTED[f"maskgen_pooled_{act}"][empty, :1].expand(N_FEATURES, -1)
    pairs = [
        (cond, EXPECTED[f"maskgen_penultimate_{act}"], ours.penultimate_hidden_state, reference.penultimate_hidden_state),
        (pooled, EXPECTED[f"maskgen_pooled_{act}"][:, 0], ours.pooled, reference.pooled),
        (uncond, expect_uncond, ours.penultimate_hidden_state[empty].expand_as(uncond),
         reference.penultimate_hidden_state[empty].expand_as(uncond)),
        (uncond_pooled, expect_uncond_pooled, ours.pooled[empty].expand_as(uncond_pooled),
         reference.pooled[empty].expand_as(uncond_pooled)),
        (last, EXPECTED[f"tatitok_text_guidance_{act}"], ours.last_hidden_state, reference.last_hidden_state),
    ]
    for name, (got, expected, ours32, ours64) in zip(("cond", "pooled", "uncond", "uncond_pooled", "last"), pairs):
        assert torch.equal(got, ours32), name  # the pipeline's conditioning is clip_text_features' output
        assert_close_to_fp32_fixture(got, expected, rounding_error(ours32, ours64), f"{name} ({act})")


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_pipeline_text_conditioning_matches_original(act):
    tokenizer = RecordedIdsTokenizer()
    pipe = tiny_pipeline(converted(act), tokenizer)
    check_pipeline_conditioning(pipe, act)
    cleaned = [open_clip_clean(p) for p in FEATURE_PROMPTS]
    # the prompts, the default negative prompt "" per prompt, then the two clip_text_features runs of the check
    assert tokenizer.calls == [cleaned, [""] * N_FEATURES, cleaned, cleaned]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte -> printable character table (the BPE vocabulary's first 256 entries, in this order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def clip_tokenizer_from_open_clip_bpe(path: Path, folder: Path):
    """A CLIPTokenizer (vocab.json + merges.txt) with OpenCLIP's vocabulary, built as OpenCLIP's SimpleTokenizer
    builds it from ``bpe_simple_vocab_16e6.txt.gz``: 256 byte symbols, the same with ``</w>``, the first 48894
    merges, then the start and end tokens (49408 entries)."""
    from transformers import CLIPTokenizer

    merges = gzip.open(path).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=CONTEXT)


def real_clip_tokenizer(tmp_path):
    """The real CLIP tokenizer, from wherever this machine has it (see the module docstring), else None."""
    from transformers import CLIPTokenizer

    if os.environ.get("VISTOK_CLIP_TOKENIZER"):
        return CLIPTokenizer.from_pretrained(os.environ["VISTOK_CLIP_TOKENIZER"], local_files_only=True), "VISTOK_CLIP_TOKENIZER"
    try:  # transformers 5 returns an empty tokenizer, not an error, when the repo is not in the cache
        cached = CLIPTokenizer.from_pretrained("openai/clip-vit-large-patch14-336", local_files_only=True)
        if len(cached) == META["text_cfg"]["vocab_size"]:
            return cached, "hub cache"
    except (OSError, ValueError):
        pass
    bpe = os.environ.get("OPEN_CLIP_BPE")
    if not bpe:
        spec = importlib.util.find_spec("open_clip")  # finds the package without importing it (it needs torchvision)
        if spec is not None and spec.submodule_search_locations:
            bpe = str(Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz")
    if bpe and Path(bpe).is_file():
        return clip_tokenizer_from_open_clip_bpe(Path(bpe), tmp_path / "clip-tokenizer"), f"open_clip's {Path(bpe).name}"
    return None, None


def test_clip_tokenizer_ids_equal_open_clip_tokenizer(tmp_path):
    """``open_clip_token_ids`` with the real vocabulary = OpenCLIP's SimpleTokenizer on every fixture prompt: a long
    one truncated to 77 (end token kept), the empty one, punctuation, whitespace runs, HTML entities, a typed
    ``<|endoftext|>`` (text to OpenCLIP), upper case, accents/CJK/emoji, and -- where ftfy is installed, as OpenCLIP
    requires -- curly quotes, a ligature, full-width forms and mojibake, which only ftfy's fixes map as OpenCLIP does."""
    tokenizer, source = real_clip_tokenizer(tmp_path)
    if tokenizer is None:
        pytest.skip("the real CLIP vocabulary is not on this machine (see the module docstring)")
    checked = range(len(META["prompts"]))
    if importlib.util.find_spec("ftfy") is None:
        checked = [i for i in checked if i not in META["ftfy_changes"]]
    prompts = [META["prompts"][i] for i in checked]
    ids = open_clip_token_ids(tokenizer, prompts, CONTEXT)
    assert ids.tolist() == padded_ids([META["token_ids"][i] for i in checked]).tolist(), source
    # and the whole text path from prompts, with the real tokenizer
    check_pipeline_conditioning(tiny_pipeline(converted("gelu"), tokenizer), "gelu")


def test_converter_layouts_and_refusals():
    state = original_state_dict()
    # CustomTextCLIP's layout: the text tower under "text."
    prefixed = convert_open_clip_text({f"text.{k}": v for k, v in state.items()}, hidden_act="gelu", num_attention_heads=2)
    reference = convert_open_clip_text(state, hidden_act="gelu", num_attention_heads=2)
    assert all(torch.equal(a, b) for a, b in zip(prefixed.state_dict().values(), reference.state_dict().values()))
    assert reference.config.num_attention_heads == 2 and reference.config.projection_dim == META["embed_dim"]
    with pytest.raises(ValueError, match="num_attention_heads"):  # the default, width / 64, is 0 for width 16
        convert_open_clip_text(state)
    with pytest.raises(ValueError, match="hidden_act"):
        convert_open_clip_text(state, hidden_act="relu")
    with pytest.raises(ValueError, match="num_attention_heads"):
        convert_open_clip_text(state, num_attention_heads=3)
    with pytest.raises(TypeError, match="dict of tensors"):
        convert_open_clip_text([1, 2])
    with pytest.raises(ConversionError, match="missing.*ln_final.weight"):
        convert_open_clip_text({k: v for k, v in state.items() if k != "ln_final.weight"})
    with pytest.raises(ConversionError, match="transformer.resblocks.0.ls_1.gamma"):
        convert_open_clip_text({**state, "transformer.resblocks.0.ls_1.gamma": torch.ones(WIDTH)}, num_attention_heads=2)
    with pytest.raises(ConversionError, match="text_projection"):
        convert_open_clip_text({**state, "text_projection": torch.zeros(3, 3)}, num_attention_heads=2)


def test_open_clip_clean_without_the_vocabulary():
    """OpenCLIP's cleaning that needs no ftfy: HTML entities unescaped twice, whitespace runs collapsed, ends stripped
    (lower case is the tokenizer's)."""
    assert open_clip_clean("  Tom &amp;amp; Jerry\t\n &lt;3  ") == "Tom & Jerry <3"
    assert open_clip_clean("") == ""
