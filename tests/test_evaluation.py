"""pixeltok.evaluation: the paper's metrics as functions and as offline `evaluate` modules."""

import math
import os

import numpy as np
import pytest
import torch
from scipy.spatial import distance

from pixeltok.evaluation import (
    METRIC_NAMES,
    bits_per_token,
    bleu,
    cosine_similarity,
    generation_metrics,
    hamming_distance,
    load_metric,
    metric_path,
    reduce_token_stats,
    token_accuracy,
    token_stats,
)
from pixeltok.evaluation.generation import generation_points


@pytest.fixture(scope="module")
def windows():
    """8 samples of 16 generated 3x3 windows (ids in a 157-token vocabulary) and their references."""
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 157, (8, 16, 3, 3))
    pred = ref.copy()
    flip = rng.random(ref.shape) < 0.2
    pred[flip] = rng.integers(0, 157, int(flip.sum()))
    return pred, ref


def test_hamming_and_cosine_match_scipy(windows):
    pred, ref = windows
    want_h = np.mean([distance.hamming(p.ravel(), r.ravel()) for p, r in zip(pred, ref)])
    want_c = np.mean([1 - distance.cosine(p.ravel(), r.ravel()) for p, r in zip(pred, ref)])
    assert hamming_distance(pred, ref) == pytest.approx(want_h, abs=1e-12)
    assert cosine_similarity(pred, ref) == pytest.approx(want_c, abs=1e-12)
    # list of torch tensors, unequal lengths across samples (non-vectorized path) gives the same per-sample values
    ragged_p = [torch.as_tensor(pred[0]), torch.as_tensor(pred[1, :5])]
    ragged_r = [ref[0], ref[1, :5]]
    _, per = hamming_distance(ragged_p, ragged_r, return_per_sample=True)
    assert per[1] == pytest.approx(distance.hamming(pred[1, :5].ravel(), ref[1, :5].ravel()))
    assert hamming_distance(ref, ref) == 0.0 and cosine_similarity(ref, ref) == pytest.approx(1.0)
    assert cosine_similarity([[0, 0]], [[0, 0]]) == 1.0 and cosine_similarity([[0, 0]], [[1, 2]]) == 0.0


def test_bleu_hand_computed():
    ref = list(range(1, 9))
    hyp = ref[:-1] + [99]  # one wrong id at the end: precisions 7/8, 6/7, 5/6, 4/5, no brevity penalty
    assert bleu([hyp], [ref]) == pytest.approx((7 / 8 * 6 / 7 * 5 / 6 * 4 / 5) ** 0.25, abs=1e-6)
    assert bleu([ref], [ref]) == pytest.approx(1.0)
    assert bleu([[5, 6, 7, 8]], [[1, 2, 3, 4]]) == 0.0
    # windows are read row by row: (2, 3, 3) == the flat 18 ids
    w = np.arange(18).reshape(1, 2, 3, 3)
    assert bleu(w, w.copy()) == pytest.approx(1.0)
    # smoothing is sacrebleu's: a hypothesis without 4-gram matches scores > 0 only when smoothed
    h, r = [[1, 2, 9, 3, 4, 8, 5, 6]], [[1, 2, 3, 4, 5, 6, 7, 8]]
    assert bleu(h, r) == 0.0 and bleu(h, r, smooth_method="exp") > 0.0


def test_generation_metrics_row(windows):
    pred, ref = windows
    row = generation_metrics(pred, ref)
    assert set(row) == {"hamming", "cosine", "bleu", "num_samples"} and row["num_samples"] == 8
    assert 0.1 < row["hamming"] < 0.3 and 0.0 < row["bleu"] < 1.0


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="sample 1 has prediction shape"):
        hamming_distance([[1, 2], [1, 2, 3]], [[1, 2], [1, 2]])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        bleu([[1], [2]], [[1]])
    with pytest.raises(ValueError, match="no samples"):
        cosine_similarity([], [])
    with pytest.raises(ValueError, match="integers"):
        hamming_distance([[0.5]], [[1]])
    with pytest.raises(ValueError, match="does not match labels shape"):
        bits_per_token(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="every label is ignore_index"):
        token_accuracy([1, 2], [-100, -100])
    with pytest.raises(ValueError, match="outside"):
        bits_per_token(torch.zeros(1, 2, 5), torch.tensor([[1, 7]]))


def test_token_metrics_against_torch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[0, :2] = -100
    mask = labels != -100
    want_bits = torch.nn.functional.cross_entropy(logits[mask], labels[mask]).item() / math.log(2)
    assert bits_per_token(logits, labels) == pytest.approx(want_bits, rel=1e-6)
    want_acc = (logits.argmax(-1)[mask] == labels[mask]).float().mean().item()
    assert token_accuracy(logits, labels) == pytest.approx(want_acc)
    assert token_accuracy(logits.argmax(-1).numpy(), labels.numpy()) == pytest.approx(want_acc)
    # uniform logits: exactly log2(V) bits
    assert bits_per_token(torch.zeros(2, 5, 16), torch.ones(2, 5, dtype=torch.long)) == pytest.approx(4.0)
    # per-sequence sums (what a distributed eval gathers) reduce to the same numbers
    nll, correct, n = token_stats(logits, labels)
    assert n.tolist() == [5.0, 7.0, 7.0]
    red = reduce_token_stats(nll, correct, n)
    assert red["bits_per_token"] == pytest.approx(want_bits, rel=1e-6)
    assert red["token_accuracy"] == pytest.approx(want_acc) and red["num_tokens"] == 19


def test_generation_points():
    assert generation_points(200) == [64, 144]
    assert generation_points(79) == []
    assert generation_points(80) == [64]
    assert generation_points(1000, max_points=3) == [64, 144, 224]


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_evaluate_modules_load_offline_and_agree(name, windows, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = metric_path(name)
    assert os.path.isfile(os.path.join(path, f"{name}.py")) and os.path.isfile(os.path.join(path, "README.md"))
    metric = load_metric(name)
    if name in ("pxby_token_accuracy", "pxby_bits_per_token"):
        g = torch.Generator().manual_seed(1)
        logits = torch.randn(4, 6, 9, generator=g)
        labels = torch.randint(0, 9, (4, 6), generator=g)
        labels[1, 3:] = -100
        fn = token_accuracy if name == "pxby_token_accuracy" else bits_per_token
        want = fn(logits, labels)
        for i in range(4):  # streamed per sequence through evaluate's Arrow cache
            metric.add_batch(predictions=[logits[i].numpy()], references=[labels[i].numpy()])
        key = "token_accuracy" if name == "pxby_token_accuracy" else "bits_per_token"
        assert metric.compute()[key] == pytest.approx(want, rel=1e-5)
        return
    pred, ref = windows
    fn = {"pxby_hamming": hamming_distance, "pxby_cosine": cosine_similarity, "pxby_bleu": bleu}[name]
    key = name.removeprefix("pxby_")
    want = fn(pred, ref)
    assert metric.compute(predictions=pred, references=ref)[key] == pytest.approx(want, abs=1e-12)  # (L, 3, 3)
    flat = metric.compute(predictions=pred.reshape(8, -1), references=ref.reshape(8, -1))[key]
    assert flat == pytest.approx(want, abs=1e-12)


def test_load_metric_aliases_and_unknown():
    assert metric_path("bleu") == metric_path("pxby_bleu")
    with pytest.raises(ValueError, match="unknown pixeltok metric"):
        metric_path("rouge")


def test_metric_modules_are_package_data():
    """The metric folders are packages, so a wheel built from pyproject's package discovery ships them."""
    from setuptools import find_packages

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    packages = set(find_packages(root, include=["pixeltok*"]))
    for name in METRIC_NAMES:
        assert f"pixeltok.evaluation.metrics.{name}" in packages


def test_generate_window_pairs_with_a_pxby_model():
    from pixeltok.evaluation.generation import evaluate_generation, generate_window_pairs
    from pixeltok.models.pxby import PxByConfig, PxByForCausalLM
    from pixeltok.tokenization.pixelbytes import PixelBytesTokenizer

    tok = PixelBytesTokenizer()
    torch.manual_seed(0)
    model = PxByForCausalLM(PxByConfig(hidden_size=18, state_size=8, num_hidden_layers=1))
    rng = np.random.default_rng(0)
    seqs = [tok.encode_sample(rng.integers(0, 55, (10, 9)).astype(np.int16), "a tiny test sprite") for _ in range(2)]
    preds, refs = generate_window_pairs(model, tok, seqs, max_points_per_sequence=1, show_progress=False)
    assert len(preds) == 2 and all(p.shape == (16, 3, 3) for p in preds)
    for s, r in zip(seqs, refs):  # references are the true windows of positions 64..79
        assert np.array_equal(r, tok.build_windows(s)[64:80])
    # the generated windows are built from the prompt + generated ids: same prompt context at the first position
    assert all(np.array_equal(p[0, 0], r[0, 0]) for p, r in zip(preds, refs))
    row = evaluate_generation(model, tok, seqs, max_points_per_sequence=1, show_progress=False)
    assert row["num_samples"] == 2 and 0 <= row["hamming"] <= 1
    with pytest.raises(ValueError, match="long enough"):
        generate_window_pairs(model, tok, [seqs[0][:50]], show_progress=False)


def _levenshtein(a: str, b: str) -> int:  # the textbook dynamic programme, as the reference
    d = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
    return d[-1]


def test_edit_distance_cer_and_word_accuracy():
    from hypothesis import given, settings, strategies as st

    from pixeltok.evaluation import character_error_rate, edit_distance, word_accuracy

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.text(alphabet="abcé1 ", max_size=12), st.text(alphabet="abcé1 ", max_size=12))
    def same_as_reference(a, b):
        assert edit_distance(a, b) == _levenshtein(a, b)

    same_as_reference()
    assert character_error_rate(["helo", "world"], ["hello", "world"]) == 0.1
    assert character_error_rate(["abcdef"], ["ab"]) == 2.0  # insertions count: CER can exceed 1
    assert word_accuracy(["a", "B"], ["a", "b"]) == 0.5
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        character_error_rate(["a", "b"], ["a"])
