"""pixeltok `evaluate` module: Per-token accuracy of next-token predictions (ignore_index positions skipped).

Thin wrapper over ``pixeltok.evaluation.functional.token_accuracy``. Load offline with
``pixeltok.evaluation.load_metric("pxby_token_accuracy")`` (== ``evaluate.load(<this folder>)``).
"""

# evaluate 0.4.6 parses this file's imports line by line: keep one import per line.
import datasets
import evaluate
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

_CITATION = """@article{furfaro2024pixelbytes,
  title={PixelBytes: Catching Unified Embedding for Multimodal Generation},
  author={Furfaro, Fabien},
  journal={arXiv preprint arXiv:2409.15512},
  year={2024}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PxByTokenAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }),
                datasets.Features({
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }),
            ],
            reference_urls=["https://arxiv.org/abs/2409.15512"],
        )

    def _compute(self, predictions, references, ignore_index=-100):
        return {"token_accuracy": _flat_accuracy(predictions, references, ignore_index)}


def _flat_accuracy(predictions, references, ignore_index):
    # sequences may differ in length: score them as one long sequence (token-weighted)
    preds = [np.asarray(p) for p in predictions]
    preds = np.concatenate([p if p.ndim == 1 else p.argmax(-1) for p in preds])
    refs = np.concatenate([np.asarray(r, dtype=np.int64) for r in references])
    return token_accuracy(preds, refs, ignore_index=ignore_index)
