"""Throughput of the data builders, each against a straightforward per-pixel Python reference in the same run.

    python benchmarks/bench_data.py [--sprites DIR] [--tiles 10000] [--num-proc 2]

1. pixelization (crop, composite on white, nearest-neighbour downscale to 25, nearest NES-55 colour in CIELAB):
   ``pixeltok.tokenization.pixelbytes.pixelize`` vs a per-pixel loop (exact CIELAB nearest colour per pixel);
   rows/s and the share of pixels on which both agree (the vectorized path uses a 6-bit RGB lookup table).
   Sprites: a ``prepare_wesnoth`` folder when given/cached (real 72x72 pixel art), else Pillow-drawn sprites.
2. tiling (32x32 tiles + interleaved sub-pixel ``input_ids``) of scikit-image photos: ``cut_tiles`` + reshape vs
   per-pixel loops; tiles/s.
3. full builds (``download_and_prepare`` to Arrow, PNG-encoded images) of >= ``--tiles`` tiles: the ``tiles``
   config on scikit-image photos (stride chosen to reach the count, then ``max_tiles_per_image``), and the
   ``cifar10`` config on an archive of the same number of records written in the official binary format.
4. text images (the reading task, ``pixeltok.data.text_images``), pinned to one core: images/s of
   ``sample_row`` + ``render_text_image`` (fonts cached per (path, size), numpy noise) vs the same rows with the font
   loaded per image and vs a naive per-image matplotlib render; and rows/s of ``load_text_images(streaming=True)``
   (PNG encode + decode included). ``--text-images-only`` runs just this section (a few seconds).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from pixeltok.data import load_cifar_tiles, load_pokemon  # noqa: E402
from pixeltok.data._common import pixeltok_cache_dir  # noqa: E402
from pixeltok.tiling import cut_tiles  # noqa: E402
from pixeltok.tokenization.palettes import get_palette, rgb_to_lab  # noqa: E402
from pixeltok.tokenization.pixelbytes import pixelize  # noqa: E402


# -- per-pixel references ---------------------------------------------------------------------------------
def pixelize_reference(rgba: np.ndarray, long_side: int = 25) -> list[list[int]]:
    """The same pre-processing written pixel by pixel in plain Python (exact CIELAB nearest colour)."""
    pal = get_palette("nes55")
    lab_pal = rgb_to_lab(pal.colors).tolist()
    px = rgba.tolist()
    h, w = len(px), len(px[0])
    top, bottom, left, right = h, -1, w, -1
    for y in range(h):
        for x in range(w):
            if px[y][x][3] >= 128:
                top, bottom, left, right = min(top, y), max(bottom, y), min(left, x), max(right, x)
    ch, cw = bottom - top + 1, right - left + 1
    scale = min(1.0, long_side / max(ch, cw))
    nh, nw = (max(1, int(round(ch * scale))), max(1, int(round(cw * scale)))) if scale < 1 else (ch, cw)
    out = []
    cache: dict[tuple, int] = {}
    for j in range(nh):
        row = []
        for i in range(nw):
            sy = top + min(int((j + 0.5) * ch / nh), ch - 1)
            sx = left + min(int((i + 0.5) * cw / nw), cw - 1)
            r, g, b, a = px[sy][sx]
            af = a / 255.0
            rgb = tuple(int(round(c * af + 255.0 * (1.0 - af))) for c in (r, g, b))
            if rgb not in cache:
                lab = rgb_to_lab(np.array(rgb, dtype=np.uint8)).tolist()
                cache[rgb] = min(range(len(lab_pal)), key=lambda k: sum((lab[d] - lab_pal[k][d]) ** 2 for d in range(3)))
            row.append(cache[rgb])
        out.append(row)
    return out


def tiles_reference(rgb: np.ndarray, size: int = 32) -> list[list[int]]:
    """Full tiles' interleaved sub-pixels (r0, g0, b0, r1, ...) built pixel by pixel."""
    px = rgb.tolist()
    h, w = len(px), len(px[0])
    out = []
    for ty in range(0, h - size + 1, size):
        for tx in range(0, w - size + 1, size):
            ids = []
            for y in range(ty, ty + size):
                for x in range(tx, tx + size):
                    ids.extend(px[y][x][:3])
            out.append(ids)
    return out


def timed(fn, *a, repeat: int = 1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*a)
        best = min(best, time.perf_counter() - t)
    return out, best


# -- inputs ---------------------------------------------------------------------------------------------
def load_sprites(folder: str | None, n: int = 200) -> tuple[list[np.ndarray], str]:
    cand = Path(folder) if folder else None
    if cand is None:
        cached = pixeltok_cache_dir() / "wesnoth" / "extracted"
        if (cached / ".complete").is_file():
            from pixeltok.data import prepare_wesnoth

            cand = prepare_wesnoth(Path(tempfile.mkdtemp()) / "wesnoth", deb_dir=cached.parent)
    if cand is not None and (cand / "metadata.jsonl").is_file():
        files = [json.loads(line)["file_name"] for line in (cand / "metadata.jsonl").read_text().splitlines()][:n]
        return [np.asarray(Image.open(cand / f).convert("RGBA")) for f in files], f"wesnoth sprites ({cand})"
    rng = np.random.default_rng(0)
    sprites = []
    for i in range(n):
        im = Image.new("RGBA", (72, 72), (0, 0, 0, 0))
        d = ImageDraw.Draw(im)
        for _ in range(6):
            x0, y0 = rng.integers(4, 40, 2)
            d.ellipse((int(x0), int(y0), int(x0) + 24, int(y0) + 24), fill=tuple(int(v) for v in rng.integers(0, 256, 3)) + (255,))
        sprites.append(np.asarray(im))
    return sprites, "Pillow-drawn 72x72 sprites"


def photos() -> dict[str, np.ndarray]:
    import skimage.data as sd

    names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "logo"]
    out = {}
    for n in names:
        a = getattr(sd, n)()
        if a.ndim == 3 and a.shape[2] == 4:  # logo: composite on white like the builder
            al = a[..., 3:4].astype(np.uint32)
            a = ((a[..., :3].astype(np.uint32) * al + 255 * (255 - al) + 127) // 255).astype(np.uint8)
        out[n] = np.ascontiguousarray(a[..., :3])
    return out


def bench_text_images(n: int = 3000, n_ref: int = 60) -> None:
    """Section 4: rendering speed of the reading task's images on one core, against two baselines in the same run."""
    from PIL import ImageFont

    from pixeltok.data import text_images as ti

    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if cores:
        os.sched_setaffinity(0, {min(cores)})  # one core, whatever the machine
    try:
        pools = ti.make_pools("matplotlib", "pydoc")  # offline: matplotlib's fonts, words from the Python docs

        def rows(k):
            for i in range(k):
                rng = np.random.default_rng([0, 0, i])
                yield ti.sample_row(rng, pools), rng

        ti.render_text_image(*next(rows(1)))  # warm-up outside the timing
        t = time.perf_counter()
        for p, rng in rows(n):  # sample the row's parameters (fitting the word: getbbox) and draw it
            ti.render_text_image(p, rng)
        cached = n / (time.perf_counter() - t)

        n_unc = min(n, 10 * n_ref)
        t = time.perf_counter()
        for i in range(n_unc):  # the same rows, every TTF loaded again for each image
            ti._FONTS.clear()
            rng = np.random.default_rng([0, 0, i])
            ti.render_text_image(ti.sample_row(rng, pools), rng)
        uncached = n_unc / (time.perf_counter() - t)

        params = list(rows(n_ref))

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.font_manager import FontProperties

        paths = dict(pools.fonts)
        t = time.perf_counter()
        for p, rng in params:  # naive: one matplotlib figure per word, then the same numpy noise
            fig = plt.figure(figsize=(p["width"] / 100, p["height"] / 100), dpi=100, facecolor=np.array(p["bg"]) / 255)
            fig.text(p["offset_x"] / p["width"], 1 - (p["offset_y"] + 0.8 * p["font_size"]) / p["height"], p["text"],
                     color=np.array(p["fg"]) / 255, fontproperties=FontProperties(fname=paths[p["font"]], size=p["font_size"] * 0.72))
            fig.canvas.draw()
            a = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float32)
            plt.close(fig)
            a += rng.standard_normal(a.shape, dtype=np.float32) * np.float32(p["noise_sigma"])
            Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
        naive = n_ref / (time.perf_counter() - t)

        with tempfile.TemporaryDirectory() as tmp:
            ds = ti.load_text_images(n_train=n // 3, n_val=0, n_test=0, words="pydoc", streaming=True, cache_dir=tmp)
            t = time.perf_counter()
            k = sum(1 for _ in ds["train"])
            streamed = k / (time.perf_counter() - t)
    finally:
        if cores:
            os.sched_setaffinity(0, cores)
    print(f"\n[text images] one core, {len(pools.fonts)} matplotlib fonts, pydoc words, tier mixed, Pillow "
          f"{Image.__version__} / FreeType {ImageFont.core.freetype2_version}")
    print(f"  cached fonts + numpy noise {cached:10.1f} images/s  ({n} images)")
    print(f"  font loaded per image      {uncached:10.1f} images/s  ({n_unc} images; cached = {cached / uncached:.1f}x)")
    print(f"  matplotlib figure per image {naive:9.1f} images/s  ({n_ref} images; cached = {cached / naive:.1f}x)")
    print(f"  load_text_images(streaming=True) iteration {streamed:8.1f} rows/s ({k} rows, PNG encode + decode included)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sprites", help="a prepare_wesnoth / sprite folder with metadata.jsonl")
    ap.add_argument("--tiles", type=int, default=10_000)
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--ref-sprites", type=int, default=40, help="sprites timed with the slow reference")
    ap.add_argument("--text-images", type=int, default=3000, help="text images rendered in section 4 (0: skip it)")
    ap.add_argument("--text-images-only", action="store_true", help="run only section 4 (text images)")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, cpus {os.cpu_count()}")
    if args.text_images_only:
        bench_text_images(args.text_images or 3000)
        return

    # 1. pixelization
    sprites, what = load_sprites(args.sprites)
    pixelize(sprites[0])  # build the palette LUT outside the timing
    fast, t_fast = timed(lambda: [pixelize(s) for s in sprites], repeat=3)
    sub = sprites[: args.ref_sprites]
    ref, t_ref = timed(lambda: [pixelize_reference(s) for s in sub])
    agree = np.mean([np.mean(np.asarray(r) == f) if np.asarray(r).shape == f.shape else 0.0 for r, f in zip(ref, fast)])
    same_shape = np.mean([np.asarray(r).shape == f.shape for r, f in zip(ref, fast)])
    v_rate, r_rate = len(sprites) / t_fast, len(sub) / t_ref
    print(f"\n[pixelize] {what}: {len(sprites)} sprites")
    print(f"  vectorized  {v_rate:10.1f} rows/s")
    print(f"  per-pixel   {r_rate:10.1f} rows/s  ({len(sub)} sprites)")
    print(f"  speed-up    {v_rate / r_rate:10.1f}x   same size {same_shape:.1%}, same colour index {agree:.2%}")

    # 2. tiling
    ph = photos()
    cut = lambda: [t.reshape(-1) for a in ph.values() for t in cut_tiles(a, 32, border="drop")[0]]  # noqa: E731
    tiles_fast, t_tf = timed(cut, repeat=3)
    small = {k: v for k, v in ph.items() if k in ("astronaut", "coffee", "chelsea")}
    tiles_ref, t_tr = timed(lambda: [ids for a in small.values() for ids in tiles_reference(a)])
    fast_small = [t.reshape(-1) for a in small.values() for t in cut_tiles(a, 32, border="drop")[0]]
    assert all(np.array_equal(np.asarray(r, dtype=np.uint8), f) for r, f in zip(tiles_ref, fast_small))
    tv, trr = len(tiles_fast) / t_tf, len(tiles_ref) / t_tr
    print("\n[tiling] scikit-image photos -> 32x32 tiles + interleaved input_ids (identical outputs checked)")
    print(f"  vectorized  {tv:10.1f} tiles/s ({len(tiles_fast)} tiles)")
    print(f"  per-pixel   {trr:10.1f} tiles/s ({len(tiles_ref)} tiles)")
    print(f"  speed-up    {tv / trr:10.1f}x")

    # 3. full builds
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "photos").mkdir()
        for k, a in ph.items():
            Image.fromarray(a).save(tmp / "photos" / f"{k}.png")
        stride = 32
        while sum(len(cut_tiles(a, 32, stride, "drop")[0]) for a in ph.values()) < args.tiles and stride > 4:
            stride -= 2
        n_avail = sum(len(cut_tiles(a, 32, stride, "drop")[0]) for a in ph.values())
        cap = int(np.ceil(args.tiles / len(ph)))
        while sum(min(cap, len(cut_tiles(a, 32, stride, "drop")[0])) for a in ph.values()) < args.tiles:
            cap += 1
        print(f"\n[full build] tiles config: {len(ph)} photos, stride {stride} ({n_avail} tiles), max_tiles_per_image={cap}")
        for num_proc in sorted({1, args.num_proc}):
            t = time.perf_counter()
            dd = load_cifar_tiles(tmp / "photos", cache_dir=tmp / f"cache{num_proc}", stride=stride, max_tiles_per_image=cap,
                                  val_size=0, test_size=0, num_proc=num_proc if num_proc > 1 else None)
            dt = time.perf_counter() - t
            n = sum(d.num_rows for d in dd.values())
            print(f"  num_proc={num_proc}: {n} tiles in {dt:6.2f} s  ({n / dt:8.1f} tiles/s)")
        t = time.perf_counter()
        load_cifar_tiles(tmp / "photos", cache_dir=tmp / "cache1", stride=stride, max_tiles_per_image=cap, val_size=0, test_size=0)
        print(f"  cached reload: {time.perf_counter() - t:6.2f} s")

        # the same number of records as an official-format binary archive
        recs_tiles = [t for a in ph.values() for t in cut_tiles(a, 32, stride, "drop")[0]][: args.tiles]
        per = int(np.ceil(len(recs_tiles) / 6))
        members = {}
        rng = np.random.default_rng(0)
        for b, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
            chunk = recs_tiles[b * per:(b + 1) * per]
            buf = bytearray()
            for t_ in chunk:
                buf.append(int(rng.integers(0, 10)))
                buf += np.ascontiguousarray(t_.transpose(2, 0, 1)).tobytes()  # R, G, B planes
            members[f"cifar-10-batches-bin/{name}"] = bytes(buf)
        with tarfile.open(tmp / "cifar-10-binary.tar.gz", "w:gz") as tf:
            for name, data in members.items():
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        print(f"[full build] cifar10 config: {len(recs_tiles)} records in the official binary archive format")
        for num_proc in sorted({1, args.num_proc}):
            t = time.perf_counter()
            dd = load_cifar_tiles(tmp / "cifar-10-binary.tar.gz", cache_dir=tmp / f"ccache{num_proc}",
                                  num_proc=num_proc if num_proc > 1 else None)
            dt = time.perf_counter() - t
            n = sum(d.num_rows for d in dd.values())
            print(f"  num_proc={num_proc}: {n} records in {dt:6.2f} s  ({n / dt:8.1f} rows/s)")

        # pixelization builder end to end (sprites folder)
        if args.sprites or (pixeltok_cache_dir() / "wesnoth" / "extracted" / ".complete").is_file():
            folder = Path(args.sprites) if args.sprites else None
            if folder is None:
                from pixeltok.data import prepare_wesnoth

                folder = prepare_wesnoth(tmp / "wesnoth", deb_dir=pixeltok_cache_dir() / "wesnoth")
            t = time.perf_counter()
            dd = load_pokemon(folder, cache_dir=tmp / "pcache")
            dt = time.perf_counter() - t
            n = sum(d.num_rows for d in dd.values())
            print(f"[full build] pokemon config on {folder.name}: {n} sprites in {dt:6.2f} s ({n / dt:8.1f} rows/s)")

    if args.text_images:
        bench_text_images(args.text_images)


if __name__ == "__main__":
    main()
