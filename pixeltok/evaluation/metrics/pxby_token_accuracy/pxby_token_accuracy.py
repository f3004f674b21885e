"""pixeltok `evaluate` module: Per-token accuracy of next-token predictions (ignore_index positions skipped).

Thin wrapper over ``pixeltok.evaluation.functional.token_accuracy``. Load offline with
``pixeltok.evaluation.load_metric("pxby_token_accuracy")`` (== ``evaluate.load(<this folder>)``).
"""

# evaluate 0.4.6 parses this file's imports line by line: keep one import per line.
import evaluate
from pixeltok.evaluation.metric_info import LOGIT_FEATURES
from pixeltok.evaluation.metric_info import pxby_metric_info
import numpy as np
from pixeltok.evaluation.functional import token_accuracy

_DESCRIPTION = """Per-token accuracy of next-token predictions (ignore_index positions skipped)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per sequence, predicted ids ``(L,)`` or logits ``(L, V)``, aligned with the references.
    references: per sequence, the label ids ``(L,)``; ``ignore_index`` positions are skipped.
    ignore_index: label value to skip (default -100).
Returns:
    {"token_accuracy": float}
Examples:
    >>> from pixeltok.evaluation import load_metric
    >>> m = load_metric("pxby_token_accuracy")
"""

@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PxByTokenAccuracy(evaluate.Metric):
    def _info(self):
        return pxby_metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, LOGIT_FEATURES)

    def _compute(self, predictions, references, ignore_index=-100):
        return {"token_accuracy": _flat_accuracy(predictions, references, ignore_index)}


def _flat_accuracy(predictions, references, ignore_index):
    # sequences may differ in length: score them as one long sequence (token-weighted)
    preds = [np.asarray(p) for p in predictions]
    preds = np.concatenate([p if p.ndim == 1 else p.argmax(-1) for p in preds])
    refs = np.concatenate([np.asarray(r, dtype=np.int64) for r in references])
    return token_accuracy(preds, refs, ignore_index=ignore_index)
