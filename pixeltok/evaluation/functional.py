"""The PixelBytes paper's generation metrics and per-token metrics, as plain functions.

Generation metrics (Furfaro 2024, "PixelBytes"): a model continues a held-out sequence for 16 positions; the
3x3 windows of the generated positions, ``(16, 3, 3)`` token ids, are compared with the windows of the true
continuation. Every sample pair is flattened (``16 * 9 = 144`` ids) and scored, and the scores are averaged over
samples:

- :func:`hamming_distance`: fraction of differing ids (0 = identical; lower is better).
- :func:`cosine_similarity`: cosine of the two id vectors read as numbers, as the reference code does with
  ``1 - scipy.spatial.distance.cosine`` (1 = identical direction; higher is better).
- :func:`bleu`: sentence BLEU (sacrebleu, n-grams up to 4, no smoothing) over the ids written as words,
  in ``[0, 1]`` (the reference used NLTK's unsmoothed ``sentence_bleu``, which agrees on sequences >= 4 ids).

Per-token metrics over aligned ``logits[..., i, :]`` / ``labels[..., i]`` (shift causal-LM outputs first;
``ignore_index`` positions are skipped):

- :func:`token_accuracy`: share of positions whose argmax equals the label.
- :func:`bits_per_token`: mean cross-entropy in bits (``nats / ln 2``), token-weighted over the whole set.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from sacrebleu.metrics import BLEU

__all__ = [
    "hamming_distance",
    "cosine_similarity",
    "bleu",
    "generation_metrics",
    "token_accuracy",
    "bits_per_token",
    "token_stats",
    "edit_distance",
    "character_error_rate",
    "word_accuracy",
]


def _pairs(predictions: Any, references: Any, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Samples -> list of flattened ``(pred, ref)`` int64 pairs of equal length.

    ``predictions``/``references``: a sequence of samples (or an array whose first axis is the sample axis);
    each sample is any array-like of token ids, e.g. ``(16, 3, 3)`` windows or ``(16,)`` ids.
    """
    if isinstance(predictions, (str, bytes)) or isinstance(references, (str, bytes)):
        raise TypeError(f"{name}: predictions/references are sequences of token-id arrays, not strings")
    preds = [_as_ids(p) for p in predictions]
    refs = [_as_ids(r) for r in references]
    if len(preds) != len(refs):
        raise ValueError(f"{name}: {len(preds)} predictions but {len(refs)} references")
    if not preds:
        raise ValueError(f"{name}: no samples to score")
    out = []
    for i, (p, r) in enumerate(zip(preds, refs)):
        if p.shape != r.shape:
            raise ValueError(f"{name}: sample {i} has prediction shape {p.shape} but reference shape {r.shape}")
        if p.size == 0:
            raise ValueError(f"{name}: sample {i} is empty")
        out.append((p.reshape(-1), r.reshape(-1)))
    return out


def _as_ids(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
        if a.size and not np.all(np.equal(np.mod(a.astype(np.float64), 1), 0)):
            raise ValueError(f"token ids must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _stack(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray] | None:
    """All pairs of one length -> ``(N, L)`` arrays (vectorized path), else None."""
    if len({p.size for p, _ in pairs}) != 1:
        return None
    return np.stack([p for p, _ in pairs]), np.stack([r for _, r in pairs])


def hamming_distance(predictions, references, return_per_sample: bool = False):
    """Mean normalized Hamming distance: per sample ``mean(pred != ref)`` over the flattened ids, averaged.

    Args:
        predictions, references: ``N`` samples of token ids each, e.g. ``(N, 16, 3, 3)`` windows.
        return_per_sample: also return the ``(N,)`` per-sample distances.
    Returns:
        ``float`` in ``[0, 1]`` (or ``(float, np.ndarray)``).
    """
    pairs = _pairs(predictions, references, "hamming_distance")
    stacked = _stack(pairs)
    if stacked is not None:
        per = (stacked[0] != stacked[1]).mean(axis=1)
    else:
        per = np.array([(p != r).mean() for p, r in pairs])
    return (float(per.mean()), per) if return_per_sample else float(per.mean())


def cosine_similarity(predictions, references, return_per_sample: bool = False):
    """Mean cosine similarity of the flattened id vectors (as numbers), averaged over samples.

    Two all-zero vectors count as identical (1.0); one all-zero vector scores 0.0.

    Returns:
        ``float`` in ``[-1, 1]`` (ids are >= 0, so in practice ``[0, 1]``), or ``(float, (N,) array)``.
    """
    pairs = _pairs(predictions, references, "cosine_similarity")

    def cos(p: np.ndarray, r: np.ndarray) -> np.ndarray:  # (N, L) float64 -> (N,)
        num = (p * r).sum(axis=1)
        den = np.linalg.norm(p, axis=1) * np.linalg.norm(r, axis=1)
        both_zero = (np.abs(p).sum(axis=1) == 0) & (np.abs(r).sum(axis=1) == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        return np.where(both_zero, 1.0, c)

    stacked = _stack(pairs)
    if stacked is not None:
        per = cos(stacked[0].astype(np.float64), stacked[1].astype(np.float64))
    else:
        per = np.array([cos(p[None].astype(np.float64), r[None].astype(np.float64))[0] for p, r in pairs])
    return (float(per.mean()), per) if return_per_sample else float(per.mean())


def bleu(predictions, references, max_ngram_order: int = 4, smooth_method: str = "none",
         return_per_sample: bool = False):
    """Mean sentence BLEU in ``[0, 1]`` over samples, computed by sacrebleu on ids written as words.

    Args:
        predictions, references: ``N`` samples of token ids (flattened per sample: windows are read row by row).
        max_ngram_order: highest n-gram order (4, as in the paper).
        smooth_method: sacrebleu smoothing, ``"none"`` (paper/NLTK default), ``"exp"``, ``"floor"`` or ``"add-k"``.
    """
    pairs = _pairs(predictions, references, "bleu")
    metric = BLEU(max_ngram_order=max_ngram_order, smooth_method=smooth_method, tokenize="none",
                  effective_order=True)
    per = np.array([
        metric.sentence_score(" ".join(map(str, p.tolist())), [" ".join(map(str, r.tolist()))]).score / 100.0
        for p, r in pairs
    ])
    return (float(per.mean()), per) if return_per_sample else float(per.mean())


def generation_metrics(predictions, references) -> dict[str, float]:
    """The paper's table row: ``{"hamming": ..., "cosine": ..., "bleu": ..., "num_samples": N}``."""
    return {
        "hamming": hamming_distance(predictions, references),
        "cosine": cosine_similarity(predictions, references),
        "bleu": bleu(predictions, references),
        "num_samples": len(_pairs(predictions, references, "generation_metrics")),
    }


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: cannot read {type(x).__name__} as an array ({e})") from None


def token_stats(logits, labels, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sequence sums for the per-token metrics, to gather across processes before reducing.

    Args:
        logits: ``(B, L, V)`` float, ``logits[b, i]`` scores the label ``labels[b, i]`` (already aligned).
        labels: ``(B, L)`` int; ``ignore_index`` marks positions to skip (padding, prompt).
    Returns:
        ``(nll_nats, n_correct, n_tokens)``, each ``(B,)`` float64.
    """
    logits, labels = _as_tensor(logits, "logits").float(), _as_tensor(labels, "labels").long()
    if logits.ndim != labels.ndim + 1 or logits.shape[:-1] != labels.shape:
        raise ValueError(f"token_stats: logits shape {tuple(logits.shape)} does not match labels shape "
                         f"{tuple(labels.shape)} (expected labels.shape + (vocab,))")
    if labels.ndim == 1:
        logits, labels = logits[None], labels[None]
    mask = labels != ignore_index
    bad = mask & ((labels < 0) | (labels >= logits.shape[-1]))
    if bad.any():
        raise ValueError(f"token_stats: label {int(labels[bad][0])} outside [0, {logits.shape[-1]})")
    safe = labels.masked_fill(~mask, 0)
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), safe, reduction="none") * mask
    correct = (logits.argmax(-1) == labels) & mask
    return nll.double().sum(1), correct.double().sum(1), mask.double().sum(1)


def token_accuracy(predictions, labels, ignore_index: int = -100) -> float:
    """Share of non-ignored positions predicted right.

    Args:
        predictions: ``(..., L)`` predicted ids, or ``(..., L, V)`` logits (argmax taken), aligned with ``labels``.
        labels: ``(..., L)`` ids; ``ignore_index`` positions are skipped.
    """
    preds, labels = _as_tensor(predictions, "predictions"), _as_tensor(labels, "labels").long()
    if preds.ndim == labels.ndim + 1:
        preds = preds.argmax(-1)
    if preds.shape != labels.shape:
        raise ValueError(f"token_accuracy: predictions shape {tuple(preds.shape)} does not match labels shape "
                         f"{tuple(labels.shape)}")
    mask = labels != ignore_index
    n = int(mask.sum())
    if n == 0:
        raise ValueError("token_accuracy: every label is ignore_index; nothing to score")
    return float(((preds.long() == labels) & mask).sum()) / n


def bits_per_token(logits, labels, ignore_index: int = -100) -> float:
    """Mean cross-entropy in bits per non-ignored token: ``sum(nll_nats) / n_tokens / ln 2``.

    Args:
        logits: ``(..., L, V)`` scores aligned with ``labels`` ``(..., L)``.
    """
    logits, labels = _as_tensor(logits, "logits"), _as_tensor(labels, "labels")
    if labels.ndim > 2:  # flatten leading axes: token_stats works on (B, L)
        logits, labels = logits.reshape(-1, *logits.shape[-2:]), labels.reshape(-1, labels.shape[-1])
    nll, _, n = token_stats(logits, labels, ignore_index)
    total = float(n.sum())
    if total == 0:
        raise ValueError("bits_per_token: every label is ignore_index; nothing to score")
    return float(nll.sum()) / total / math.log(2)


def reduce_token_stats(nll_nats: Sequence[float], n_correct: Sequence[float], n_tokens: Sequence[float]) -> dict:
    """Gathered :func:`token_stats` -> ``{"loss": nats/token, "bits_per_token", "token_accuracy", "num_tokens"}``."""
    nll, correct, n = (float(torch.as_tensor(x).double().sum()) for x in (nll_nats, n_correct, n_tokens))
    if n == 0:
        raise ValueError("reduce_token_stats: no tokens")
    return {"loss": nll / n, "bits_per_token": nll / n / math.log(2), "token_accuracy": correct / n,
            "num_tokens": int(n)}


__all__.append("reduce_token_stats")


# -- reading: character error rate and word accuracy -------------------------------------------------------------------
def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character each); one numpy row per
    character of ``a``."""
    if not a or not b:
        return len(a) + len(b)
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    prev = np.arange(len(bb) + 1)
    aa = np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32)
    for i, ch in enumerate(aa):
        cost = (bb != ch).astype(np.int64)
        cur = np.empty_like(prev)
        cur[0] = i + 1
        sub = prev[:-1] + cost
        dele = prev[1:] + 1
        best = np.minimum(sub, dele)
        # insertions run left to right: cur[j] = min(best[j-1], cur[j-1] + 1), a running minimum of best - j
        cur[1:] = np.minimum.accumulate(np.concatenate([[cur[0]], best]) - np.arange(len(bb) + 1))[1:] + \
            np.arange(1, len(bb) + 1)
        prev = cur
    return int(prev[-1])


def character_error_rate(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus CER: total edit distance over total reference characters (0 = perfect; can exceed 1)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    chars = sum(len(r) for r in references)
    if chars == 0:
        raise ValueError("character_error_rate: the references have no characters")
    return sum(edit_distance(p, r) for p, r in zip(predictions, references)) / chars


def word_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference, exactly (case and all)."""
    if len(predictions) != len(references) or not references:
        raise ValueError(f"word_accuracy needs as many predictions ({len(predictions)}) as references "
                         f"({len(references)}), at least one")
    return sum(p == r for p, r in zip(predictions, references)) / len(references)
