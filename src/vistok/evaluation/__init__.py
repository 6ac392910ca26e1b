"""Evaluation of tokenizers (reconstruction) and pipelines (generation): metrics and ``vistok eval``.

``loading`` (inputs, models, metric networks), ``tokenizer_scores``, ``pipeline_scores``, ``rate_distortion``
(codec sweep, plots, grids), ``metrics`` (the metric definitions and their conventions), ``run`` (``run_eval``)."""

from .inception import InceptionFeatureExtractor
from .lpips import LPIPS
from .metrics import (codebook_statistics, feature_statistics, frechet_distance, inception_score, precision_recall, psnr,
                      ssim)
from .pipeline_scores import evaluate_pipeline, load_reference_statistics
from .rate_distortion import token_bytes
from .run import run_eval
from .tokenizer_scores import evaluate_tokenizer

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
