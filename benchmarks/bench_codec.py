"""Benchmark the lossless codec on held-out 32x32 photo tiles against PNG, WebP-lossless and JPEG-XL-lossless.

    OMP_NUM_THREADS=2 python benchmarks/bench_codec.py --wallpaper_dir /tmp/wall/x/usr/share/wallpapers --n 600

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
from train_codec import box_downscale, load_photos  # noqa: E402
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
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    with open(args.config) as f:
        dc = yaml.safe_load(f)["data"]
    walls = dc["heldout_wallpapers"] if args.wallpaper_dir else []
    photos = load_photos(walls, dc["heldout_skimage"], args.wallpaper_dir)
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
    print(f"\nper source (tile-stream bpsp vs JPEG-XL):")
    for name, r in by_src.items():
        print(f"  {name:<34} {r['tiles']:>4} tiles  ptk {r['ptk_payload_bpsp']:.3f}  jxl {r['jxl_bpsp']:.3f}  "
              f"webp {r['webp_bpsp']:.3f}  png {r['png_bpsp']:.3f}")
    print(f"\ncompress {res['compress_tiles_per_s']:.1f} tiles/s, decompress {res['decompress_tiles_per_s']:.1f} tiles/s "
          f"(CPU, {args.threads} threads); exact round trips {exact}/{n}")
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
