"""Evaluation of tokenizers (reconstruction) and pipelines (generation): metrics and ``vistok eval``."""

from .evaluate import evaluate_pipeline, evaluate_tokenizer, load_reference_statistics, run_eval
from .inception import InceptionFeatureExtractor
from .lpips import LPIPS
from .metrics import (codebook_statistics, feature_statistics, frechet_distance, inception_score, precision_recall, psnr,
                      ssim)
from .rate_distortion import token_bytes

__all__ = [
    "run_eval",
    "evaluate_tokenizer",
    "evaluate_pipeline",
    "load_reference_statistics",
    "InceptionFeatureExtractor",
    "LPIPS",
    "psnr",
    "ssim",
    "frechet_distance",
    "feature_statistics",
    "inception_score",
    "precision_recall",
    "codebook_statistics",
    "token_bytes",
]
