"""Bad input gets a ValueError/TypeError naming what was expected, and a failed conversion leaves nothing behind."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from vistok import OneDPieceConfig, OneDPieceModel, TiTokConfig, TiTokModel, VistokImageProcessor
from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.utils.io import OutputExistsError
from vistok.modeling.titok.convert_titok import convert as convert_titok
from _titok_fixtures import load_fixture, write_release_folder

TINY = dict(image_size=16, encoder_hidden_size=64, encoder_num_layers=1, encoder_num_heads=1,
            decoder_hidden_size=64, decoder_num_layers=1, decoder_num_heads=1,
            pixel_hidden_channels=32, pixel_embed_dim=32, pixel_channel_mult=[1, 1, 1, 1, 2])


@pytest.fixture(scope="module")
def titok():
    return TiTokModel(TiTokConfig(num_tokens=8, **TINY)).eval()


@pytest.fixture(scope="module")
def one_d_piece():
    return OneDPieceModel(OneDPieceConfig(num_tokens=8, **TINY)).eval()


@pytest.mark.parametrize(
    "pixels, message",
    [
        (torch.rand(1, 1, 16, 16), "3 \\(RGB\\) channels"),
        (torch.rand(1, 4, 16, 16), "3 \\(RGB\\) channels"),
        (torch.rand(1, 3, 32, 32), "takes 16x16 images, got 32x32"),
        (torch.rand(0, 3, 16, 16), "empty batch"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
        (torch.rand(3, 16, 16), "shape \\[B, 3, H, W\\]"),
    ],
)
def test_bad_pixels(titok, pixels, message):
    with pytest.raises(ValueError, match=message):
        titok.encode(pixels)


def test_integer_pixels_rejected(titok):
    with pytest.raises(TypeError, match="floating-point"):
        titok.encode(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


@pytest.mark.parametrize("k", [0, -1, 9])
def test_num_tokens_out_of_range(one_d_piece, k):
    with pytest.raises(ValueError, match="num_tokens must be in 1..8"):
        one_d_piece.encode(torch.rand(1, 3, 16, 16), num_tokens=k)


def test_fixed_length_tokenizer_rejects_prefix(titok):
    with pytest.raises(ValueError, match="num_tokens must be 8"):
        titok.encode(torch.rand(1, 3, 16, 16), num_tokens=4)
    with pytest.raises(ValueError, match="num_tokens must be 8"):
        titok.decode(torch.zeros(1, 4, dtype=torch.long))


@pytest.mark.parametrize("bad", [torch.full((1, 8), 4096), torch.full((1, 8), -1)])
def test_token_ids_outside_codebook(titok, bad):
    with pytest.raises(ValueError, match=r"\[0, 4095\]"):
        titok.decode(bad)


def test_token_ids_bad_type_and_shape(one_d_piece):
    with pytest.raises(TypeError, match="integer tensor"):
        one_d_piece.decode(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        one_d_piece.decode(torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="empty batch"):
        one_d_piece.decode(torch.zeros(0, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="num_tokens must be in 1..8"):
        one_d_piece.decode(torch.zeros(1, 0, dtype=torch.long))


def test_continuous_model_refuses_token_ids():
    model = TiTokModel(TiTokConfig(num_tokens=4, quantize_mode="vae", token_dim=8, is_legacy=False, **TINY)).eval()
    with pytest.raises(ValueError, match="decode_latents"):
        model.decode(torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, N, 8\]"):
        model.decode_latents(torch.zeros(1, 4, 3))


def test_bad_configs():
    with pytest.raises(ValueError, match="quantize_mode"):
        TiTokConfig(quantize_mode="lfq")
    with pytest.raises(ValueError, match="multiple of patch_size"):
        TiTokConfig(image_size=100)
    with pytest.raises(ValueError, match="is_legacy must be False"):
        TiTokConfig(quantize_mode="vae")


def test_processor_bad_input():
    processor = VistokImageProcessor(size=16)
    with pytest.raises(ValueError, match="empty"):
        processor(images=[])
    with pytest.raises(TypeError, match="PIL images, numpy arrays or torch tensors"):
        processor(images=["not an image"])
    with pytest.raises(ValueError, match="output_type"):
        processor.postprocess(torch.rand(1, 3, 16, 16), output_type="jpeg")


# -- converter --------------------------------------------------------------------------------

@pytest.fixture
def release(tmp_path):
    meta, _ = load_fixture("titok_vq")
    return write_release_folder(meta, tmp_path / "original")


def _convert_fails(release, tmp_path, match):
    out = tmp_path / "converted"
    with pytest.raises(ConversionError, match=match):
        convert_titok(str(release), str(out))
    assert not out.exists(), "a failed conversion must not leave an output folder"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".converted")], "no scratch folder left behind"


def test_truncated_checkpoint(release, tmp_path):
    data = (release / "model.safetensors").read_bytes()
    (release / "model.safetensors").write_bytes(data[: len(data) // 2])
    _convert_fails(release, tmp_path, "could not read checkpoint")


def test_corrupted_pickle(tmp_path):
    meta, _ = load_fixture("titok_vq")
    (tmp_path / "tok.bin").write_bytes(b"\x80\x04garbage" * 10)
    (tmp_path / "tok.yaml").write_text(json.dumps(meta["original_config"]))
    out = tmp_path / "converted"
    assert cli_main(["convert", "titok", "--original", str(tmp_path / "tok.bin"), "--config", str(tmp_path / "tok.yaml"), "--output", str(out)]) == 2
    assert not out.exists()


def _edit_checkpoint(release, edit):
    state = load_file(str(release / "model.safetensors"))
    edit(state)
    save_file(state, str(release / "model.safetensors"))


def test_missing_key(release, tmp_path):
    _edit_checkpoint(release, lambda s: s.pop("decoder.ln_post.weight"))
    _convert_fails(release, tmp_path, "decoder.post_layernorm.weight")


def test_unexpected_key(release, tmp_path):
    _edit_checkpoint(release, lambda s: s.__setitem__("decoder.extra_head.weight", torch.zeros(3)))
    _convert_fails(release, tmp_path, "decoder.extra_head.weight")


def test_misshaped_key(release, tmp_path):
    _edit_checkpoint(release, lambda s: s.__setitem__("decoder.ln_pre.bias", torch.zeros(7)))
    # names the user's key, the vistok key it maps to, and the file
    _convert_fails(release, tmp_path, r"checkpoint .*model.safetensors does not match the architecture: 'decoder.pre_layernorm.bias' "
                   r"\(original 'decoder.ln_pre.bias'\): expected shape \(192,\), got \(7,\)")


def test_config_disagreeing_with_checkpoint(release, tmp_path):
    config = json.loads((release / "config.json").read_text())
    config["model"]["vq_model"]["num_latent_tokens"] = 32
    (release / "config.json").write_text(json.dumps(config))
    _convert_fails(release, tmp_path, "num_latent_tokens 32 disagrees")


def test_existing_output_is_kept(release, tmp_path):
    out = tmp_path / "converted"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):  # a ValueError, as every converter error
        convert_titok(str(release), str(out))
    assert (out / "keep.txt").read_text() == "precious"


def test_unknown_family_and_preset(release, tmp_path):
    with pytest.raises(ConversionError, match="unknown titok preset"):
        convert_titok(str(release), str(tmp_path / "o"), preset="titok-xxl")
    with pytest.raises(ConversionError, match="not found"):
        convert_titok(str(tmp_path / "nowhere"), str(tmp_path / "o"))


def test_every_pickle_reader_refuses_code_and_never_suggests_weights_only_false(tmp_path):
    """Checkpoints, LPIPS weights and torch-fidelity statistics share one reader: a pickle that needs code to load
    is refused naming the file, nothing runs, and torch's advice to pass weights_only=False is not repeated."""
    import pickle

    from vistok.evaluation.lpips import LPIPS
    from vistok.evaluation.pipeline_scores import load_reference_statistics

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"mu": Payload()}, protocol=2))  # torch.save's protocol
    for read in (lambda: load_reference_statistics(bad), lambda: LPIPS.load(str(bad), None),
                 lambda: convert_titok(str(bad), str(tmp_path / "out"), config=None)):
        with pytest.raises(ValueError) as info:
            read()
        assert "weights_only=False" not in str(info.value)
    with pytest.raises(ValueError, match=r"evil.pt is a pickle that needs code to load .* will not execute code"):
        load_reference_statistics(bad)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["model_index.json", "config.json", "missing"])
def test_eval_loading_names_a_damaged_file(tmp_path, damage):
    """A half-written or corrupt folder description is an error naming the file, not a bare JSONDecodeError."""
    from vistok.evaluation.loading import load_model

    folder = tmp_path / "model"
    if damage == "missing":
        from vistok.utils.io import SourceNotFoundError

        with pytest.raises(SourceNotFoundError, match=str(folder)):
            load_model(folder)
        return
    folder.mkdir()
    (folder / damage).write_text('{"_class_name": ["pipeline", "MaskGITPipe')  # truncated mid-write
    with pytest.raises(ValueError, match=rf"{damage} is not readable JSON.*damaged or half-written"):
        load_model(folder)
    (folder / damage).write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{damage} must hold a JSON object"):
        load_model(folder)
