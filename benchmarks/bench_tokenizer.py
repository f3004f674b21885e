"""PixelTokenizer throughput and sequence lengths on real images, against two baselines measured in the same run.

Baselines:
- a straightforward per-pixel Python reference of the grouped encoding (nearest colour per pixel, text per pixel);
- transformers' ``ImageGPTImageProcessor`` with a 512-colour palette (its colour-clustering step is the encode).

Images: seeded random 32x32 and 64x64 crops of scikit-image's bundled colour photos, and sprite-like images
with transparency (crops of scikit-image's RGBA logo posterized to 12 colours, background made transparent).

    python benchmarks/bench_tokenizer.py [--n 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image
from skimage import data as skdata

from pixeltok import PixelTokenizer, PixelTokenizerFast
from pixeltok.tokenization.palettes import get_palette, rgb_to_lab

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"]


def photo_crops(n: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    photos = [getattr(skdata, p)() for p in PHOTOS]
    out = []
    for _ in range(n):
        p = photos[rng.integers(len(photos))]
        y, x = rng.integers(0, p.shape[0] - size), rng.integers(0, p.shape[1] - size)
        out.append(np.ascontiguousarray(p[y:y + size, x:x + size, :3]))
    return out


def sprite_like(n: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    logo = skdata.logo()  # (500, 500, 4) RGBA with a transparent background
    pal = PixelTokenizer.train_palette([logo[::4, ::4]], 12, method="mediancut").color_palette
    out = []
    for _ in range(n):
        s = int(rng.integers(size * 2, 480))
        y, x = rng.integers(0, 500 - s), rng.integers(0, 500 - s)
        crop = Image.fromarray(logo[y:y + s, x:x + s]).resize((size, size), Image.Resampling.NEAREST)
        out.append(pal.indices_to_rgba(pal.quantize_indices(np.asarray(crop))))
    return out


def _lab_py(r: int, g: int, b: int) -> tuple[float, float, float]:
    """The same sRGB -> CIELAB formula as the package, in plain Python floats."""
    lin = [((c / 255 + 0.055) / 1.055) ** 2.4 if c / 255 > 0.04045 else c / 255 / 12.92 for c in (r, g, b)]
    x = (0.4124564 * lin[0] + 0.3575761 * lin[1] + 0.1804375 * lin[2]) / 0.95047
    y = 0.2126729 * lin[0] + 0.7151522 * lin[1] + 0.0721750 * lin[2]
    z = (0.0193339 * lin[0] + 0.1191920 * lin[1] + 0.9503041 * lin[2]) / 1.08883
    f = [v ** (1 / 3) if v > (6 / 29) ** 3 else v / (3 * (6 / 29) ** 2) + 4 / 29 for v in (x, y, z)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def reference_grouped(img: np.ndarray, names: list[str], lab_palette: list) -> str:
    """Per-pixel Python: nearest CIELAB colour for each pixel, then one coordinate string per pixel."""
    h, w = img.shape[:2]
    rows = img.tolist()
    groups: dict[str, list[str]] = {}
    for y in range(h):
        for x in range(w):
            r, g, b, a = rows[y][x]
            if a < 128:
                name = "transparent"
            else:
                lab = _lab_py(r, g, b)
                best, best_d = 0, float("inf")
                for k, c in enumerate(lab_palette):
                    d = (lab[0] - c[0]) ** 2 + (lab[1] - c[1]) ** 2 + (lab[2] - c[2]) ** 2
                    if d < best_d:
                        best, best_d = k, d
                name = names[best]
            groups.setdefault(name, []).append(f"{x}_{y}")
    return f"w{w} h{h}\n" + "".join(f"c_{k} " + ", ".join(v) + "\n" for k, v in groups.items())


def rate(fn, items, min_time=0.5) -> float:
    """Items per second over at least ``min_time`` seconds of repeated passes."""
    fn(items[0])
    t0, done = time.perf_counter(), 0
    while True:
        for it in items:
            fn(it)
        done += len(items)
        if time.perf_counter() - t0 >= min_time:
            return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="images per set")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    sets = {"photo 32x32": photo_crops(args.n, 32, args.seed), "photo 64x64": photo_crops(args.n, 64, args.seed + 1),
            "sprite 32x32": sprite_like(args.n, 32, args.seed + 2)}
    toks = {(p, l): PixelTokenizer(palette=p, layout=l) for p in ("named128", "nes55") for l in ("grouped", "raster", "runs")}
    fast = PixelTokenizerFast(palette="named128", layout="grouped")
    pal = get_palette("named128")
    names, lab_pal = list(pal.names), rgb_to_lab(pal.colors).tolist()

    from transformers import ImageGPTImageProcessor

    clusters = np.random.default_rng(0).uniform(-1, 1, (512, 3)).astype(np.float32)
    for size_name in sets:  # warm the colour memo table once so every timing below is steady-state
        for im in sets[size_name]:
            toks[("named128", "grouped")].quantize_indices(im)

    print("## Encode / decode throughput (images/s), palette named128\n")
    print("| images | layout | encode | decode | text->image | per-pixel reference encode | ImageGPTImageProcessor (512 clusters) | encode / reference | encode / ImageGPT |")
    print("|---|---|---|---|---|---|---|---|---|")
    for set_name, imgs in sets.items():
        side = imgs[0].shape[0]
        ref_imgs = imgs[: max(5, args.n // 20)]
        rgba = [np.dstack([i, np.full(i.shape[:2], 255, np.uint8)]) if i.shape[2] == 3 else i for i in ref_imgs]
        ref = rate(lambda im: reference_grouped(im, names, lab_pal), rgba, min_time=1.0)
        proc = ImageGPTImageProcessor(clusters=clusters, do_resize=False, size={"height": side, "width": side})
        igpt = rate(lambda im: proc(Image.fromarray(im[..., :3]), return_tensors="np"), imgs)
        for layout in ("grouped", "raster", "runs"):
            t = toks[("named128", layout)]
            enc = rate(t.encode_image, imgs)
            ids = [t.encode_image(i) for i in imgs]
            dec = rate(t.decode_image, ids)
            texts = [t.image_to_text(i) for i in imgs]
            t2i = rate(t.text_to_image, texts)
            print(f"| {set_name} | {layout} | {enc:,.0f} | {dec:,.0f} | {t2i:,.0f} | {ref:,.1f} | {igpt:,.0f} | {enc / ref:,.0f}x | {enc / igpt:,.1f}x |")
        text = [t.image_to_text(i) for i in imgs]
        slow_t = rate(lambda s: toks[("named128", "grouped")](s), text)
        fast_t = rate(lambda s: fast(s), text)
        print(f"| {set_name} | grouped text->ids | slow {slow_t:,.0f} | fast {fast_t:,.0f} | | | | | |")

    print("\n## Tokens per image (mean, including <bos>/<eos>)\n")
    print("| images | palette | grouped | raster | runs | runs / grouped |")
    print("|---|---|---|---|---|---|")
    for set_name, imgs in sets.items():
        for p in ("named128", "nes55"):
            n = {l: np.mean([len(toks[(p, l)].encode_image(i)) for i in imgs]) for l in ("grouped", "raster", "runs")}
            print(f"| {set_name} | {p} | {n['grouped']:,.0f} | {n['raster']:,.0f} | {n['runs']:,.0f} | {n['runs'] / n['grouped']:.2f} |")


if __name__ == "__main__":
    main()
