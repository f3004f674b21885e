"""PixelTextProcessor: is a batch call at least as fast per image as one call per image? Plus tokens per image.

Baseline (measured in the same run): one ``processor(images=[im])`` call per image, and likewise one
``PixelTokenizer.encode_image`` call per image against one ``encode_images`` batch. Images: seeded 32x32 crops of
scikit-image's bundled colour photos (as the issue's 2,000-crop check).

    python benchmarks/bench_processor.py [--n 2000] [--layout raster]
"""

from __future__ import annotations

import argparse
import time

from transformers import ByT5Tokenizer

from pixeltok import PixelTextProcessor

from bench_tokenizer import photo_crops


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", default="raster", choices=["raster", "grouped", "runs"])
    args = ap.parse_args()
    crops = photo_crops(args.n, 32, args.seed)
    proc = PixelTextProcessor(ByT5Tokenizer(), palette="nes55", layout=args.layout, max_side=32)
    tok = proc.pixel_tokenizer

    rows = [
        ("processor", lambda: [proc(images=[im]) for im in crops],
         lambda: proc(images=crops, padding=True, return_tensors="np")),
        ("PixelTokenizer", lambda: [tok.encode_image(im) for im in crops],
         lambda: tok.encode_images(crops, return_tensors="np")),
    ]
    print(f"{args.n} 32x32 photo crops, nes55, {args.layout}; best of 3")
    print(f"{'what':16s} {'per-image calls (img/s)':>24s} {'one batch (img/s)':>18s} {'batch / per-image':>18s}")
    for name, single, batch in rows:
        t1, tb = timed(single), timed(batch)
        print(f"{name:16s} {args.n / t1:24.0f} {args.n / tb:18.0f} {t1 / tb:17.2f}x")
    n_tok = [proc.num_image_tokens(im) for im in crops[:200]]
    print(f"tokens per image (incl. <boi>/<eoi>): mean {sum(n_tok) / len(n_tok):.0f}, max {max(n_tok)}")


if __name__ == "__main__":
    main()
