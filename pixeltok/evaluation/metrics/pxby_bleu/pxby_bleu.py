"""pixeltok `evaluate` module: Mean sentence BLEU (sacrebleu, 4-grams, no smoothing) of generated vs reference 3x3 window ids, in [0, 1].

Thin wrapper over ``pixeltok.evaluation.functional.bleu``. Load offline with
``pixeltok.evaluation.load_metric("pxby_bleu")`` (== ``evaluate.load(<this folder>)``).
"""

# evaluate 0.4.6 parses this file's imports line by line: keep one import per line.
import evaluate
from pixeltok.evaluation.metric_info import WINDOW_FEATURES
from pixeltok.evaluation.metric_info import pxby_metric_info
from pixeltok.evaluation.functional import bleu

_DESCRIPTION = """Mean sentence BLEU (sacrebleu, 4-grams, no smoothing) of generated vs reference 3x3 window ids, in [0, 1]."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one entry per sample: the generated token ids, flat ``(L,)`` or windows ``(L, 3, 3)``
        (the paper: the 3x3 windows of 16 generated positions).
    references: the true ids/windows, same shape per sample.
    max_ngram_order: highest n-gram order (default 4).
    smooth_method: sacrebleu smoothing (default "none").
Returns:
    {"bleu": float}
Examples:
    >>> from pixeltok.evaluation import load_metric
    >>> m = load_metric("pxby_bleu")
"""

@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PxByBleu(evaluate.Metric):
    def _info(self):
        return pxby_metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, WINDOW_FEATURES)

    def _compute(self, predictions, references, max_ngram_order=4, smooth_method="none"):
        return {"bleu": bleu(predictions, references, max_ngram_order=max_ngram_order, smooth_method=smooth_method)}
