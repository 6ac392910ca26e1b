"""The quantizer contract is enforced (abstract methods), FSQ needs no model code to survive
from_pretrained's meta-device init, and the multi-scale quantizer and VAR's VQVAE config take the
library's argument names while VAR's still load."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from vistok import VARVQVAE, TiTokConfig, TiTokModel, VARVQVAEConfig
from vistok.modeling.quantizers import (BSQ, FSQ, LFQ, BinaryQuantizer, IndexPropagationQuantizer, MultiScaleResidualQuantizer,
                                        ProjectedQuantizer, Quantizer, QuantizerOutput, ResidualVQ,
                                        SharedMappingMultiScaleQuantizer, VectorQuantizer)
from vistok.modeling.quantizers.multiscale import convert_var_quantizer_kwargs

CONTRACT = ("forward", "indices_to_codes", "codes_to_indices")


def _complete_methods():
    return {
        "forward": lambda self, z: QuantizerOutput(z, z.argmax(-1), z.sum() * 0),
        "indices_to_codes": lambda self, indices: torch.nn.functional.one_hot(indices, self.dim).float(),
        "codes_to_indices": lambda self, codes: codes.argmax(-1),
    }


@pytest.mark.parametrize("base", [Quantizer, ProjectedQuantizer])
@pytest.mark.parametrize("missing", CONTRACT)
def test_a_quantizer_missing_a_contract_method_cannot_be_built(base, missing):
    methods = {name: fn for name, fn in _complete_methods().items() if name != missing}
    incomplete = type("Incomplete", (base,), methods)
    with pytest.raises(TypeError, match=missing):
        incomplete() if base is Quantizer else incomplete(4, 4)


@pytest.mark.parametrize("base", [Quantizer, ProjectedQuantizer])
def test_a_quantizer_with_the_whole_contract_builds_and_runs(base):
    complete = type("OneHot", (base,), {"codebook_size": 4, **_complete_methods()})
    quantizer = complete() if base is Quantizer else complete(4, 4)
    quantizer.dim = 4
    codes = quantizer.indices_to_codes(torch.tensor([0, 3]))
    assert torch.equal(quantizer.codes_to_indices(codes), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="forward"):
        Quantizer()


@pytest.mark.parametrize("build", [
    lambda: VectorQuantizer(8, 4), lambda: VectorQuantizer(8, 6, codebook_dim=2), lambda: ResidualVQ(2, 8, 4),
    lambda: FSQ([5, 3]), lambda: LFQ(4), lambda: BSQ(4, dim=6), lambda: BinaryQuantizer(4, dim=6),
    lambda: MultiScaleResidualQuantizer(codebook_size=8, dim=4, patch_nums=(1, 2)), lambda: IndexPropagationQuantizer(8, 4),
    lambda: SharedMappingMultiScaleQuantizer(codebook_size=8, split=(3, 2), patch_nums=(1, 2)),
])
def test_every_library_quantizer_implements_the_contract(build):
    quantizer = build()
    assert isinstance(quantizer, Quantizer)
    assert not getattr(type(quantizer), "__abstractmethods__", None)


def test_vq_uses_the_shared_projections():
    vq = VectorQuantizer(8, 6, codebook_dim=2)
    assert isinstance(vq, ProjectedQuantizer) and vq.has_projections
    assert list(vq.state_dict()) == ["project_in.weight", "project_in.bias", "project_out.weight", "project_out.bias",
                                     "embedding.weight"]
    assert not VectorQuantizer(8, 6).has_projections and not hasattr(VectorQuantizer(8, 6), "project_in")


# -- FSQ after meta-device init ------------------------------------------------------------------
def _all_codes_round_trip(fsq: FSQ) -> None:
    indices = torch.arange(fsq.codebook_size)
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(indices)), indices)


def test_fsq_built_on_the_meta_device_needs_no_restoring():
    with torch.device("meta"):
        fsq = FSQ([7, 5, 3])
    fsq.to_empty(device="cpu")  # what from_pretrained leaves of any buffer: uninitialised memory
    levels, basis = fsq.constants("cpu")
    assert levels.tolist() == [7, 5, 3] and basis.tolist() == [1, 7, 35]
    _all_codes_round_trip(fsq)
    assert fsq(torch.randn(4, 3)).indices.max() < 105


def test_fsq_tokenizer_from_pretrained_has_correct_constants(tmp_path):
    """A tiny TiTok FSQ model through save_pretrained / from_pretrained (meta-device init):
    the quantizer's levels and basis are right without any restore in the model's code."""
    torch.manual_seed(0)
    config = TiTokConfig(num_latent_tokens=4, quantize_mode="fsq", fsq_levels=[7, 5, 3], token_dim=3, is_legacy=False,
                         image_size=32, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2,
                         decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2, patch_size=16)
    TiTokModel(config).save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, TiTokModel)
    fsq = loaded.quantizer
    assert isinstance(fsq, FSQ) and not list(fsq.buffers())
    levels, basis = fsq.constants("cpu")
    assert levels.tolist() == [7, 5, 3] and basis.tolist() == [1, 7, 35]
    _all_codes_round_trip(fsq)
    reference = FSQ([7, 5, 3])
    indices = torch.arange(105)
    assert torch.equal(fsq.indices_to_codes(indices), reference.indices_to_codes(indices))


# -- the multi-scale quantizer's names -----------------------------------------------------------
def test_var_argument_names_map_to_the_library_names():
    assert convert_var_quantizer_kwargs({
        "vocab_size": 64, "Cvae": 8, "v_patch_nums": [1, 2], "beta": 0.5, "using_znorm": True, "quant_resi": -0.5,
        "share_quant_resi": 0, "default_qresi_counts": 6,
    }) == {"codebook_size": 64, "dim": 8, "patch_nums": [1, 2], "commitment_cost": 0.5, "use_l2_norm": True,
           "residual_ratio": -0.5, "num_residual_convs": 6}
    assert convert_var_quantizer_kwargs({"share_quant_resi": 0})["num_residual_convs"] is None  # one per scale
    assert convert_var_quantizer_kwargs({"share_quant_resi": 1, "default_qresi_counts": 6})["num_residual_convs"] == 1
    assert convert_var_quantizer_kwargs({"default_qresi_counts": 6})["num_residual_convs"] == 4  # VAR's default sharing


def test_vqvae_config_saved_with_var_names_still_loads(tmp_path):
    legacy = dict(codebook_size=16, z_channels=4, channels=32, channel_mult=[1, 2], patch_nums=[1, 2, 4],
                  beta=0.5, using_znorm=True, quant_resi=-0.25, share_quant_resi=0, default_qresi_counts=2)
    config = VARVQVAEConfig.from_dict(legacy)
    assert (config.commitment_cost, config.use_l2_norm, config.residual_ratio, config.num_residual_convs) == (0.5, True, -0.25, 2)
    saved = config.to_dict()
    assert not {"beta", "using_znorm", "quant_resi", "share_quant_resi", "default_qresi_counts"} & set(saved)
    model = VARVQVAE(config)
    quantizer = model.quantizer
    assert (quantizer.commitment_cost, quantizer.use_l2_norm, quantizer.residual_ratio) == (0.5, True, -0.25)
    assert len(quantizer.quant_resi.qresi_ls) == 2 and quantizer.scale_to_phi == [0, 0, 1]  # scale 1 sits at the midpoint: the first tick wins, as in VAR
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert reloaded.config.num_residual_convs == 2
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    with pytest.raises(ValueError, match="num_residual_convs"):
        VARVQVAEConfig(num_residual_convs=0)
