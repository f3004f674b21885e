"""Evaluation: the PixelBytes paper's generation metrics, per-token metrics, and their `evaluate` modules.

Plain functions (:mod:`pixeltok.evaluation.functional`)::

    hamming_distance(preds, refs)  cosine_similarity(preds, refs)  bleu(preds, refs)  generation_metrics(preds, refs)
    token_accuracy(preds_or_logits, labels)  bits_per_token(logits, labels)  token_stats(...)  reduce_token_stats(...)
    character_error_rate(pred_texts, ref_texts)  word_accuracy(pred_texts, ref_texts)  edit_distance(a, b)

The same metrics as `evaluate` modules shipped inside the package, loadable offline::

    from pixeltok.evaluation import load_metric
    load_metric("pxby_bleu").compute(predictions=..., references=...)   # == evaluate.load(<package folder>)

Generation protocol of the paper (16 generated windows per chunk, on a held-out split):
:func:`pixeltok.evaluation.generation.generate_window_pairs`.
"""

from __future__ import annotations

import os

from .functional import (
    bits_per_token,
    bleu,
    character_error_rate,
    edit_distance,
    word_accuracy,
    cosine_similarity,
    generation_metrics,
    hamming_distance,
    reduce_token_stats,
    token_accuracy,
    token_stats,
)

METRICS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics")
METRIC_NAMES = ("pxby_hamming", "pxby_cosine", "pxby_bleu", "pxby_token_accuracy", "pxby_bits_per_token")
_ALIASES = {"hamming": "pxby_hamming", "hamming_distance": "pxby_hamming", "cosine": "pxby_cosine",
            "cosine_similarity": "pxby_cosine", "bleu": "pxby_bleu", "token_accuracy": "pxby_token_accuracy",
            "accuracy": "pxby_token_accuracy", "bits_per_token": "pxby_bits_per_token", "bpt": "pxby_bits_per_token"}


def metric_path(name: str) -> str:
    """Folder of the shipped `evaluate` module ``name`` (``"pxby_bleu"`` or an alias such as ``"bleu"``)."""
    key = _ALIASES.get(name, name)
    if key not in METRIC_NAMES:
        raise ValueError(f"unknown pixeltok metric {name!r}; known: {', '.join(METRIC_NAMES)} "
                         f"(aliases: {', '.join(sorted(_ALIASES))})")
    return os.path.join(METRICS_DIR, key)


def load_metric(name: str, **kwargs):
    """``evaluate.load(<package path of name>)``: works offline, unlike ``evaluate.load("bleu")`` (Hub)."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = [
    "hamming_distance", "cosine_similarity", "bleu", "generation_metrics", "token_accuracy", "bits_per_token",
    "token_stats", "reduce_token_stats", "load_metric", "metric_path", "METRIC_NAMES", "METRICS_DIR",
]
