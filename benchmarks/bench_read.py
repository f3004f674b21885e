"""A pixeltok reader against Tesseract OCR on the held-out reading task, both tiers, in the same run.

Images: the test split of ``pixeltok.data.load_text_images`` (fonts and words that never appear in training; the
same seed and options as the reader's training run, read from its ``eval_results.json``). Baseline: Tesseract 5
(Debian ``tesseract-ocr`` + ``tesseract-ocr-eng``, through ``pytesseract``) given its best shot: grayscale, 4x
bicubic upscaling, single-line page mode ``--psm 7``. Prints CER and word accuracy per tier, the ratio of the
reader's CER to Tesseract's, and images/s for both.

    python benchmarks/bench_read.py --model pixeltok/checkpoints/reader [--n 1000]

Needs ``apt-get install tesseract-ocr tesseract-ocr-eng`` and ``pip install pytesseract``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from PIL import Image

import pixeltok
from pixeltok.data import load_source
from pixeltok.evaluation import character_error_rate, word_accuracy
from pixeltok.scripts import library_progress_bars_off


def tesseract_read(images: list[Image.Image]) -> list[str]:
    import pytesseract

    out = []
    for im in images:
        g = im.convert("L")
        g = g.resize((g.width * 4, g.height * 4), Image.Resampling.BICUBIC)
        out.append(pytesseract.image_to_string(g, config="--psm 7").strip())
    return out


def scores(preds: list[str], rows: list[dict]) -> dict:
    res = {}
    for tier in ("clean", "hard", "all"):
        idx = [i for i, r in enumerate(rows) if tier == "all" or r["tier"] == tier]
        if idx:
            p, t = [preds[i] for i in idx], [rows[i]["text"] for i in idx]
            res[tier] = (character_error_rate(p, t), word_accuracy(p, t), len(idx))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a reader folder (recipes/train_lm.py output) or Hub id")
    ap.add_argument("--n", type=int, default=None, help="test images (default: the run's whole test split)")
    ap.add_argument("--batch_size", type=int, default=32)
    args = ap.parse_args()
    if shutil.which("tesseract") is None:
        sys.exit("bench_read.py: tesseract not found: apt-get install tesseract-ocr tesseract-ocr-eng")
    with library_progress_bars_off():
        run(args)


def run(args) -> None:
    from transformers import AutoModelForCausalLM, AutoProcessor

    results = json.loads((Path(args.model) / "eval_results.json").read_text())
    d = results["dataset"]
    data = load_source(d.get("source", "text_images"), n_train=min(d["n_train"], 300), n_val=d["n_val"],
                       n_test=d["n_test"], tier=d["tier"], fonts=d["fonts"], words=d["words"], seed=d["seed"],
                       options=d.get("options"))  # the run's own test split
    rows = [data["test"][i] for i in range(len(data["test"]) if args.n is None else min(args.n, len(data["test"])))]
    images = [r["image"] for r in rows]
    model = AutoModelForCausalLM.from_pretrained(args.model)
    proc = AutoProcessor.from_pretrained(args.model)

    t = time.perf_counter()
    ours = pixeltok.reader.read(model, proc, images, batch_size=args.batch_size)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    tess = tesseract_read(images)
    t_tess = time.perf_counter() - t

    a, b = scores(ours, rows), scores(tess, rows)
    print(f"{len(rows)} held-out images (test fonts and words unseen in training), seed {d['seed']}")
    print(f"{'tier':6s} {'n':>5s} {'reader CER':>11s} {'Tesseract CER':>14s} {'reader/Tess.':>13s} "
          f"{'reader words':>13s} {'Tess. words':>12s}")
    for tier in ("clean", "hard", "all"):
        if tier in a:
            (ca, wa, n), (cb, wb, _) = a[tier], b[tier]
            ratio = f"{ca / cb:.2f}x" if cb else "n/a"
            print(f"{tier:6s} {n:5d} {100 * ca:10.2f}% {100 * cb:13.2f}% {ratio:>13s} {100 * wa:12.1f}% {100 * wb:11.1f}%")
    print(f"images/s: reader {len(rows) / t_ours:.1f}, Tesseract {len(rows) / t_tess:.1f}")


if __name__ == "__main__":
    main()
