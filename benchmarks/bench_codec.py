"""Benchmark the lossless codec on held-out 32x32 photo tiles against PNG, WebP-lossless and JPEG-XL-lossless.

    OMP_NUM_THREADS=2 python benchmarks/bench_codec.py --wallpaper_dir /tmp/wall/x/usr/share/wallpapers --n 600

``--whole NAME[:SCALE],...`` codes whole photos instead (scikit-image names, or wallpaper names with
``--wallpaper_dir``; ``:2`` box-downscales by 2 first): real ``.ptk`` files of the whole image at each
``--efforts`` preset (fast, max: adaptive context mixing; network: the pretrained network, also as independent
32x32 tiles), each decoded back and checked, next to PNG, WebP lossless and JPEG-XL lossless effort 7 and 9 of the
same pixels, with encode/decode MP/s:

    OMP_NUM_THREADS=1 python benchmarks/bench_codec.py --threads 1 --whole chelsea,coffee,immunohistochemistry:2
    python benchmarks/bench_codec.py --threads 1 --efforts fast,max --whole chelsea,chelsea:2,coffee,coffee:2

Tiles come from photos listed as held out in ``recipes/configs/codec_default.yaml`` (never trained on), at native
resolution (``--scale 1``) or box-downscaled. Each tile is coded alone, as its own range-coder stream; reported:
payload bits per sub-pixel (bpsp) and the size of a stand-alone ``.ptk`` file of the tile (header + checksums), the
ideal ``-sum log2 p``, the three classic codecs on the same tiles (headers included, each verified exact), the
ratio to JPEG-XL, compress/decompress tiles/s on this CPU, and the share of exact round trips.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "recipes"))

from pixeltok.compression import _identity, coder, format as ptk_format, load_codec_model  # noqa: E402
from pixeltok.compression.demo import baseline_sizes  # noqa: E402
from pixeltok.compression.model import model_name  # noqa: E402
from pixeltok.data.photos import box_downscale, read_photo  # noqa: E402
from pixeltok.tiling import cut_tiles  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="checkpoint folder (default: the shipped model)")
    p.add_argument("--config", default=os.path.join(ROOT, "recipes", "configs", "codec_default.yaml"))
    p.add_argument("--wallpaper_dir", default=os.environ.get("PIXELTOK_WALLPAPERS"),
                   help="plasma-workspace-wallpapers' usr/share/wallpapers (else only scikit-image held-out photos)")
    p.add_argument("--n", type=int, default=600, help="number of held-out tiles (>= 500)")
    p.add_argument("--scale", type=int, default=1, help="box-downscale factor before tiling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench_codec.json")
    p.add_argument("--whole", default=None, help="comma-separated photos NAME[:SCALE] to code whole (see above)")
    p.add_argument("--no_tiles", action="store_true", help="with --whole: skip the 32x32-tile comparison")
    p.add_argument("--efforts", default="fast,max,network",
                   help="with --whole: compress efforts to measure (network is ~50x slower than fast/max)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.whole:
        return bench_whole(args)

    with open(args.config) as f:
        dc = yaml.safe_load(f)["data"]
    walls = dc["heldout_wallpapers"] if args.wallpaper_dir else []
    photos = {ref: read_photo(ref, args.wallpaper_dir) for ref in
              [f"wallpaper:{n}" for n in walls] + [f"skimage:{n}" for n in dc["heldout_skimage"]]}
    rng = np.random.default_rng(args.seed)
    per_photo = -(-args.n // len(photos))
    tiles, srcs = [], []
    for name in sorted(photos):
        t, _ = cut_tiles(box_downscale(photos[name], args.scale), size=32, border="drop")
        for i in rng.permutation(len(t))[:per_photo]:
            tiles.append(np.ascontiguousarray(t[i]))
            srcs.append(name)
    sel = rng.permutation(len(tiles))[:args.n]
    tiles, srcs = [tiles[i] for i in sel], [srcs[i] for i in sel]
    n, sub = len(tiles), 32 * 32 * 3

    model = load_codec_model(args.model)
    sha, mname = _identity(model), model_name(model)
    print(f"model {mname} sha256 {sha[:16]}...; {n} held-out tiles from {len(photos)} photos (scale 1/{args.scale}); "
          f"{args.threads} CPU threads")

    t0 = time.perf_counter()
    with torch.inference_mode():
        streams, ideal = coder.encode_tiles(model, tiles, batch_size=16, progress=True)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.inference_mode():
        dec = coder.decode_tiles(model, streams, [(32, 32)] * n, batch_size=args.batch_size, progress=True)
    t_dec = time.perf_counter() - t0
    exact = sum(bool(np.array_equal(a, b)) for a, b in zip(dec, tiles))
    with torch.inference_mode():  # the same model without per-tile scale offsets (float path, ideal code length)
        no_adapt = torch.cat([model(torch.from_numpy(np.stack(tiles[i:i + 64])).long(), reduction="none").loss
                              for i in range(0, n, 64)]).double().mean().item()

    file_bytes = []
    for t, s in zip(tiles, streams):  # real stand-alone .ptk files of each tile
        hdr = ptk_format.PtkHeader(width=32, height=32, mode="RGB", tile_size=32, token_order=coder.TOKEN_ORDER,
                                   quant_id=coder.QUANT_ID, freq_bits=coder.FREQ_BITS, prob_bits=coder.PROB_BITS,
                                   numerics_id=coder.NUMERICS_ID, coder_id=coder.CODER_ID, model_sha256=sha,
                                   model_name=mname, pixels_crc32=ptk_format.pixels_crc32(t))
        file_bytes.append(len(ptk_format.write(hdr, [s])))
    base = [baseline_sizes(t) for t in tqdm(tiles, desc="baselines")]

    def bpsp(bytes_list):
        return float(np.sum(bytes_list) * 8 / (len(bytes_list) * sub))

    res = {
        "tiles": n, "scale": args.scale, "model": mname, "model_sha256": sha, "threads": args.threads,
        "ptk_payload_bpsp": bpsp([len(s) for s in streams]), "ptk_file_bpsp": bpsp(file_bytes),
        "ideal_bpsp": float(np.sum(ideal) / (n * sub)), "ideal_no_tile_offsets_bpsp": no_adapt,
        "png_bpsp": bpsp([b["png"] for b in base]), "webp_bpsp": bpsp([b["webp"] for b in base]),
        "jxl_bpsp": bpsp([b["jxl"] for b in base]),
        "compress_tiles_per_s": n / t_enc, "decompress_tiles_per_s": n / t_dec, "exact_round_trips": exact,
    }
    res["payload_vs_jxl"] = res["ptk_payload_bpsp"] / res["jxl_bpsp"]
    res["file_vs_jxl"] = res["ptk_file_bpsp"] / res["jxl_bpsp"]
    by_src = {}
    for name in sorted(set(srcs)):
        idx = [i for i, s in enumerate(srcs) if s == name]
        by_src[name] = {"tiles": len(idx), "ptk_payload_bpsp": bpsp([len(streams[i]) for i in idx]),
                        "jxl_bpsp": bpsp([base[i]["jxl"] for i in idx]), "png_bpsp": bpsp([base[i]["png"] for i in idx]),
                        "webp_bpsp": bpsp([base[i]["webp"] for i in idx])}
    res["by_source"] = by_src

    print(f"\n{'codec':<28} {'bits/sub-pixel':>14} {'x JPEG-XL':>9}")
    for k, label in [("ptk_payload_bpsp", "pixeltok (tile stream)"), ("ptk_file_bpsp", "pixeltok (.ptk file/tile)"),
                     ("ideal_bpsp", "pixeltok ideal -log2 p"),
                     ("ideal_no_tile_offsets_bpsp", "  same, no per-tile offsets"), ("png_bpsp", "PNG level 9"),
                     ("webp_bpsp", "WebP lossless"), ("jxl_bpsp", "JPEG-XL lossless e9")]:
        print(f"{label:<28} {res[k]:>14.4f} {res[k] / res['jxl_bpsp']:>9.3f}")
    print("\nper source (tile-stream bpsp vs JPEG-XL):")
    for name, r in by_src.items():
        print(f"  {name:<34} {r['tiles']:>4} tiles  ptk {r['ptk_payload_bpsp']:.3f}  jxl {r['jxl_bpsp']:.3f}  "
              f"webp {r['webp_bpsp']:.3f}  png {r['png_bpsp']:.3f}")
    print(f"\ncompress {res['compress_tiles_per_s']:.1f} tiles/s, decompress {res['decompress_tiles_per_s']:.1f} tiles/s "
          f"(CPU, {args.threads} threads); exact round trips {exact}/{n}")
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {args.out}")
    return res


def bench_whole(args):
    import imagecodecs
    import skimage.data

    from pixeltok.compression import EFFORTS, compress, decompress
    from pixeltok.compression._fast_tables import AVAILABLE as fast_tables

    efforts = args.efforts.split(",")
    for e in efforts:
        if e not in EFFORTS:
            raise SystemExit(f"--efforts: unknown effort {e!r} (known: {', '.join(EFFORTS)})")
    model = load_codec_model(args.model)
    for e in efforts:  # compile / warm up once, outside the timings
        compress(np.zeros((8, 8, 3), np.uint8), **({"model": model} if e == "network" else {"effort": e}))
    classic = {"png": lambda a: imagecodecs.png_encode(a, level=9),
               "webp": lambda a: imagecodecs.webp_encode(a, lossless=True),
               "jxl_e7": lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=7, numthreads=1),
               "jxl_e9": lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=9, numthreads=1)}
    rows = []
    for spec in args.whole.split(","):
        name, _, scale = spec.partition(":")
        scale = int(scale or 1)
        ref = f"skimage:{name}" if hasattr(skimage.data, name) else f"wallpaper:{name}"
        img = np.ascontiguousarray(box_downscale(read_photo(ref, args.wallpaper_dir), scale))
        h, w = img.shape[:2]
        sub, mp = img.size, h * w / 1e6
        row = {"photo": f"{name}" + (f" /{scale}" if scale > 1 else ""), "size": f"{w}x{h}"}
        for key, enc in classic.items():
            t0 = time.perf_counter()
            data = enc(img)
            row[f"{key}_enc_mps"] = mp / (time.perf_counter() - t0)
            row[f"{key}_bpsp"] = len(data) * 8 / sub
        jxl = imagecodecs.jpegxl_encode(img, lossless=True, effort=9, numthreads=1)
        assert np.array_equal(np.asarray(imagecodecs.jpegxl_decode(jxl))[..., :3].reshape(img.shape), img)
        row["jxl_bpsp"] = row["jxl_e9_bpsp"]
        units = [(e, None) for e in efforts] + ([] if args.no_tiles or "network" not in efforts
                                                else [("network_tiles32", 32)])
        for label, tile in units:
            kw = {"model": model} if label.startswith("network") else {"effort": label}
            t0 = time.perf_counter()
            data, st = compress(img, tile_size=tile, return_stats=True, **kw)
            t_enc = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = np.asarray(decompress(data, model=model))
            t_dec = time.perf_counter() - t0
            assert np.array_equal(out, img), f"{name} ({label}): round trip not exact"
            row[f"{label}_file_bpsp"] = len(data) * 8 / sub
            row[f"{label}_enc_mps"] = mp / t_enc
            row[f"{label}_dec_mps"] = mp / t_dec
        rows.append(row)
        print(json.dumps(row))
    print(f"\nthreads {args.threads}, compiled tables {fast_tables}; bits per sub-pixel of real files, every round "
          f"trip exact; (x) = ratio to JPEG-XL lossless effort 9 of the same pixels, MP/s on this CPU")
    head = f"{'photo':<26} {'size':>9} {'PNG':>6} {'WebP':>6} {'JXL e7':>7} {'JXL e9':>7}"
    for label, _ in units:
        head += f" | {label + ' bpsp (x)':>22} {'enc':>6} {'dec':>6}"
    print(head)
    for r in rows:
        line = (f"{r['photo']:<26} {r['size']:>9} {r['png_bpsp']:>6.3f} {r['webp_bpsp']:>6.3f} "
                f"{r['jxl_e7_bpsp']:>7.3f} {r['jxl_e9_bpsp']:>7.3f}")
        for label, _ in units:
            b = r[f"{label}_file_bpsp"]
            cell = f"{b:.3f} ({b / r['jxl_bpsp']:.3f})"
            line += f" | {cell:>22} {r[label + '_enc_mps']:>6.3f} {r[label + '_dec_mps']:>6.3f}"
        print(line)
    for label, _ in units:
        ratios = [r[f"{label}_file_bpsp"] / r["jxl_bpsp"] for r in rows]
        print(f"mean ratio {label} / JPEG-XL e9 over {len(rows)} photos: {np.mean(ratios):.4f} "
              f"(max {max(ratios):.4f}); mean decode {np.mean([r[f'{label}_dec_mps'] for r in rows]):.3f} MP/s")
    with open(args.out, "w") as f:
        json.dump({"threads": args.threads, "photos": rows}, f, indent=2)
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
