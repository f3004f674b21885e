"""``pixeltok demo``: compress 10 seeded random 32x32 crops of real photos and compare with classic codecs.

Every number printed comes from real bytes: the ``.ptk`` file written by :func:`pixeltok.compression.compress`
(decoded back and checked bit-exact), and PNG / WebP-lossless / JPEG-XL-lossless files of the same crop from
``imagecodecs`` (each decoded back and checked too). The ideal code length ``-sum log2 p`` of the model is printed
beside the real bytes.
"""

from __future__ import annotations

import csv
import glob
import os

import numpy as np

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def baseline_sizes(tile: np.ndarray) -> dict[str, int]:
    """Bytes of ``(h, w, 3)`` uint8 as PNG (level 9), WebP lossless (level 100, method 6), JPEG-XL lossless
    (effort 9), each verified to decode back exactly."""
    import imagecodecs

    out = {}
    for name, enc, dec in (
        ("png", lambda a: imagecodecs.png_encode(a, level=9), imagecodecs.png_decode),
        ("webp", lambda a: imagecodecs.webp_encode(a, level=100, lossless=True, method=6, numthreads=1), imagecodecs.webp_decode),
        ("jxl", lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=9, numthreads=1), imagecodecs.jpegxl_decode),
    ):
        data = enc(tile)
        if not np.array_equal(np.asarray(dec(data))[..., :3].reshape(tile.shape), tile):
            raise RuntimeError(f"{name} round trip is not exact on a {tile.shape} tile")
        out[name] = len(data)
    return out


def _load_sources(images_dir: str | None) -> list[tuple[str, np.ndarray]]:
    from ..image_io import to_rgb_exact

    if images_dir is None:
        import skimage.data

        return [(f"skimage:{n}", np.asarray(getattr(skimage.data, n)())[..., :3]) for n in SKIMAGE_PHOTOS]
    files = sorted(f for f in glob.glob(os.path.join(images_dir, "**", "*"), recursive=True)
                   if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise FileNotFoundError(f"--images {images_dir!r}: no image files ({', '.join(IMAGE_EXTS)}) found")
    return [(os.path.relpath(f, images_dir), to_rgb_exact(f)) for f in files]


def run_demo(images_dir: str | None = None, n: int = 10, seed: int = 0, out_dir: str = "pixeltok-demo",
             model=None, crop: int = 32, verbose: bool = True, effort: str | None = None) -> list[dict]:
    """Run the demo; writes ``out_dir/results.csv`` and ``out_dir/bits_per_subpixel.png``; returns the rows.
    ``effort`` as in :func:`~pixeltok.compression.compress` (default ``"fast"``; a ``model`` means the network)."""
    from . import _check_effort, _identity, _resolve, compress, decompress
    from .format import ADAPTIVE_NAME
    from .model import model_name

    effort = _check_effort(effort, model)
    m = _resolve(model) if effort == "network" else None
    kw = {"model": m} if m is not None else {"effort": effort}
    sources = _load_sources(images_dir)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        name, img = sources[int(rng.integers(len(sources)))]
        h, w = min(crop, img.shape[0]), min(crop, img.shape[1])
        y, x = int(rng.integers(img.shape[0] - h + 1)), int(rng.integers(img.shape[1] - w + 1))
        tile = np.ascontiguousarray(img[y:y + h, x:x + w])
        data, stats = compress(tile, return_stats=True, **kw)
        if not np.array_equal(np.asarray(decompress(data, model=m)), tile):
            raise RuntimeError(f"round trip failed on crop {i} of {name}")
        sub = tile.size
        orig_bits = sub * 8
        base = baseline_sizes(tile)
        rows.append({
            "crop": i, "source": name, "y": y, "x": x, "h": h, "w": w,
            "original_bits": orig_bits, "ptk_file_bits": len(data) * 8, "ptk_payload_bits": stats["payload_bytes"] * 8,
            "ideal_bits": round(stats["ideal_bits"], 1), "ptk_bpsp": len(data) * 8 / sub,
            "payload_bpsp": stats["payload_bytes"] * 8 / sub, "ideal_bpsp": stats["ideal_bits"] / sub,
            "ratio": orig_bits / (len(data) * 8), "png_bits": base["png"] * 8, "webp_bits": base["webp"] * 8,
            "jxl_bits": base["jxl"] * 8, "png_bpsp": base["png"] * 8 / sub, "webp_bpsp": base["webp"] * 8 / sub,
            "jxl_bpsp": base["jxl"] * 8 / sub, "round_trip": "exact",
        })
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    _plot(rows, os.path.join(out_dir, "bits_per_subpixel.png"))
    if verbose:
        ckpt = (f"checkpoint: {model_name(m)} (weights sha256 {_identity(m)[:16]}...)" if m is not None
                else f"coder: {ADAPTIVE_NAME}, effort {effort} (adaptive context mixing, no network)")
        print(f"{ckpt}; {n} random {crop}x{crop} crops, seed {seed}, "
              f"source: {images_dir or 'scikit-image bundled photos'}")
        print(f"{'#':>2} {'source':<28} {'orig bits':>9} {'ptk bits':>8} {'bpsp':>5} {'ideal':>5} {'ratio':>5} "
              f"{'PNG':>6} {'WebP':>6} {'JXL':>6}  (bpsp = bits per sub-pixel; PNG/WebP/JXL in bits)")
        for r in rows:
            flag = "  <-- ratio < 1 (bigger than raw)" if r["ratio"] < 1 else ""
            print(f"{r['crop']:>2} {r['source'][:28]:<28} {r['original_bits']:>9} {r['ptk_file_bits']:>8} "
                  f"{r['ptk_bpsp']:>5.2f} {r['ideal_bpsp']:>5.2f} {r['ratio']:>5.2f} {r['png_bits']:>6} "
                  f"{r['webp_bits']:>6} {r['jxl_bits']:>6}{flag}")
        tot = {k: sum(r[k] for r in rows) for k in ("original_bits", "ptk_file_bits", "ptk_payload_bits", "ideal_bits",
                                                   "png_bits", "webp_bits", "jxl_bits")}
        sub = tot["original_bits"] / 8
        print(f"mean bpsp: ptk file {tot['ptk_file_bits'] / sub:.3f} (payload {tot['ptk_payload_bits'] / sub:.3f}, "
              f"ideal {tot['ideal_bits'] / sub:.3f}) | PNG {tot['png_bits'] / sub:.3f} | WebP {tot['webp_bits'] / sub:.3f} "
              f"| JPEG-XL {tot['jxl_bits'] / sub:.3f}; all {n} round trips exact")
        print(f"wrote {os.path.join(out_dir, 'results.csv')} and {os.path.join(out_dir, 'bits_per_subpixel.png')}")
    return rows


def _plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("ptk_bpsp", ".ptk file"), ("ideal_bpsp", "ideal -log2 p"), ("png_bpsp", "PNG"), ("webp_bpsp", "WebP lossless"),
            ("jxl_bpsp", "JPEG-XL lossless")]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.9), 4))
    wdt = 0.8 / len(keys)
    for j, (k, label) in enumerate(keys):
        ax.bar(x + (j - len(keys) / 2 + 0.5) * wdt, [r[k] for r in rows], wdt, label=label)
    ax.axhline(8, color="k", lw=0.8, ls="--", label="raw (8)")
    ax.set_xticks(x, [f"{r['crop']}\n{r['source'].split(':')[-1][:10]}" for r in rows], fontsize=7)
    ax.set_ylabel("bits per sub-pixel")
    ax.set_title("pixeltok lossless codec vs classic codecs, 32x32 crops")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
