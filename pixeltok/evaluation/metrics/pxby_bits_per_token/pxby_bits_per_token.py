"""pixeltok `evaluate` module: Mean cross-entropy in bits per token (token-weighted over all sequences).

Thin wrapper over ``pixeltok.evaluation.functional.bits_per_token``. Load offline with
``pixeltok.evaluation.load_metric("pxby_bits_per_token")`` (== ``evaluate.load(<this folder>)``).
"""

# evaluate 0.4.6 parses this file's imports line by line: keep one import per line.
import evaluate
from pixeltok.evaluation.metric_info import LOGIT_FEATURES
from pixeltok.evaluation.metric_info import pxby_metric_info
import numpy as np
from pixeltok.evaluation.functional import bits_per_token

_DESCRIPTION = """Mean cross-entropy in bits per token (token-weighted over all sequences)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per sequence, logits ``(L, V)`` aligned with the references (shift causal-LM outputs first).
    references: per sequence, label ids ``(L,)``; ``ignore_index`` positions are skipped.
    ignore_index: label value to skip (default -100).
Returns:
    {"bits_per_token": float}
Examples:
    >>> from pixeltok.evaluation import load_metric
    >>> m = load_metric("pxby_bits_per_token")
"""

@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PxByBitsPerToken(evaluate.Metric):
    def _info(self):
        return pxby_metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, LOGIT_FEATURES)

    def _compute(self, predictions, references, ignore_index=-100):
        return {"bits_per_token": _flat_bits(predictions, references, ignore_index)}


def _flat_bits(predictions, references, ignore_index):
    # sequences may differ in length: score them as one long sequence (token-weighted)
    logits = np.concatenate([np.asarray(p, dtype=np.float32) for p in predictions])
    labels = np.concatenate([np.asarray(r, dtype=np.int64) for r in references])
    return bits_per_token(logits, labels, ignore_index=ignore_index)
