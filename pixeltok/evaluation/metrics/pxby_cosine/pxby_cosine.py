"""pixeltok `evaluate` module: Mean cosine similarity between generated and reference 3x3 window id vectors (higher is better).

Thin wrapper over ``pixeltok.evaluation.functional.cosine_similarity``. Load offline with
``pixeltok.evaluation.load_metric("pxby_cosine")`` (== ``evaluate.load(<this folder>)``).
"""

# evaluate 0.4.6 parses this file's imports line by line: keep one import per line.
import evaluate
from pixeltok.evaluation.metric_info import WINDOW_FEATURES
from pixeltok.evaluation.metric_info import pxby_metric_info
from pixeltok.evaluation.functional import cosine_similarity

_DESCRIPTION = """Mean cosine similarity between generated and reference 3x3 window id vectors (higher is better)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one entry per sample: the generated token ids, flat ``(L,)`` or windows ``(L, 3, 3)``
        (the paper: the 3x3 windows of 16 generated positions).
    references: the true ids/windows, same shape per sample.
Returns:
    {"cosine": float}
Examples:
    >>> from pixeltok.evaluation import load_metric
    >>> m = load_metric("pxby_cosine")
"""

@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PxByCosine(evaluate.Metric):
    def _info(self):
        return pxby_metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, WINDOW_FEATURES)

    def _compute(self, predictions, references):
        return {"cosine": cosine_similarity(predictions, references)}
