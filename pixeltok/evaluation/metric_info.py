"""What the shipped ``evaluate`` modules share: the citation and the two input layouts they accept."""

import datasets
import evaluate

CITATION = """@article{furfaro2024pixelbytes,
  title={PixelBytes: Catching Unified Embedding for Multimodal Generation},
  author={Furfaro, Fabien},
  journal={arXiv preprint arXiv:2409.15512},
  year={2024}
}"""

_ids = datasets.Sequence(datasets.Value("int64"))
# generated vs reference ids, flat (L,) or as 3x3 windows (L, 3, 3)
WINDOW_FEATURES = [
    datasets.Features({"predictions": _ids, "references": _ids}),
    datasets.Features({"predictions": datasets.Sequence(datasets.Sequence(_ids)),
                       "references": datasets.Sequence(datasets.Sequence(_ids))}),
]
# predicted ids (L,) or logits (L, V) against label ids (L,)
LOGIT_FEATURES = [
    datasets.Features({"predictions": _ids, "references": _ids}),
    datasets.Features({"predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))), "references": _ids}),
]


def pxby_metric_info(description: str, inputs_description: str, features: list) -> evaluate.MetricInfo:
    return evaluate.MetricInfo(description=description, citation=CITATION, inputs_description=inputs_description,
                               features=features, reference_urls=["https://arxiv.org/abs/2409.15512"])
