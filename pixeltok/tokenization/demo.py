"""The tokenizer half of ``pixeltok demo``: a real bundled photo to tokens and back, for every palette and layout."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from .tokenization_pixel import PixelTokenizer


def bundled_photo(name: str = "chelsea") -> np.ndarray:
    """A real photograph shipped inside scikit-image's wheel (no download)."""
    from skimage import data

    return getattr(data, name)()


def run_tokenizer_demo(out_dir: str | Path = "pixeltok-demo", photo: str = "chelsea", side: int = 96) -> list[dict]:
    """Encode ``photo`` (box-downscaled to ``side``) with each palette and layout, decode it, check exactness.

    Writes the token texts and a comparison PNG (original | named128 | nes55) to ``out_dir``; returns the rows.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(bundled_photo(photo))
    img = img.resize((side, round(side * img.height / img.width)), Image.Resampling.BOX)
    rows, panels = [], [img.convert("RGB")]
    print(f"\nPixelTokenizer on scikit-image's '{photo}' photo, {img.width}x{img.height}:")
    print(f"{'palette':10s} {'layout':8s} {'tokens':>7s} {'chars':>7s} {'encode ms':>9s} {'decode ms':>9s}  exact")
    for palette in ("named128", "nes55"):
        for layout in ("grouped", "raster", "runs"):
            tok = PixelTokenizer(palette=palette, layout=layout)
            t0 = time.perf_counter()
            ids = tok.encode_image(img)
            t1 = time.perf_counter()
            back = tok.decode_image(ids)
            t2 = time.perf_counter()
            text = tok.image_to_text(img)
            exact = np.array_equal(np.asarray(back), np.asarray(tok.quantize(img))) and \
                np.array_equal(np.asarray(tok.text_to_image(text)), np.asarray(back))
            (out / f"{photo}_{palette}_{layout}.txt").write_text(text, encoding="utf-8")
            rows.append({"palette": palette, "layout": layout, "tokens": len(ids), "chars": len(text),
                         "encode_ms": 1e3 * (t1 - t0), "decode_ms": 1e3 * (t2 - t1), "exact": exact})
            print(f"{palette:10s} {layout:8s} {len(ids):7d} {len(text):7d} {1e3 * (t1 - t0):9.1f} {1e3 * (t2 - t1):9.1f}  "
                  f"{'yes' if exact else 'NO'}")
            if layout == "grouped":
                panels.append(back.convert("RGB"))
    sheet = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + 8
    sheet = sheet.resize((sheet.width * 3, sheet.height * 3), Image.Resampling.NEAREST)
    sheet.save(out / f"{photo}_palettes.png")
    print(f"wrote {out / (photo + '_palettes.png')} (original | named128 | nes55) and the token texts")
    if not all(r["exact"] for r in rows):
        raise RuntimeError("a decoded image differs from the quantized original")
    return rows
