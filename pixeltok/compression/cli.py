"""Command-line subcommands ``compress``, ``decompress`` and ``demo`` (wired in by ``pixeltok/cli.py``)."""

from __future__ import annotations

import argparse
import sys


def _compress(args) -> int:
    from . import compress

    data, stats = compress(args.image, model=args.model, progress=True, return_stats=True)
    with open(args.output, "wb") as f:
        f.write(data)
    from ..image_io import to_rgb_exact

    n_sub = to_rgb_exact(args.image).size
    print(f"{args.image} -> {args.output}: {len(data)} bytes, {len(data) * 8 / n_sub:.3f} bits per sub-pixel "
          f"(ideal {stats['ideal_bits'] / n_sub:.3f}), {stats['tiles']} tiles")
    return 0


def _decompress(args) -> int:
    from . import decompress

    img = decompress(args.input, model=args.model, progress=True)
    img.save(args.output, format="PNG")
    print(f"{args.input} -> {args.output}: {img.size[0]}x{img.size[1]} {img.mode}, verified against the stored CRC32")
    return 0


def _demo(args) -> int:
    from ..tokenization.demo import run_tokenizer_demo
    from .demo import run_demo

    if not args.skip_tokenizer:  # the main job: tokens and back first, then the learned codec
        run_tokenizer_demo(args.out)
    run_demo(images_dir=args.images, n=args.n, seed=args.seed, out_dir=args.out, model=args.model)
    return 0


def register(subparsers) -> None:
    """Add ``compress``, ``decompress`` and ``demo`` to an argparse ``subparsers`` object."""
    p = subparsers.add_parser("compress", help="losslessly compress an image to a .ptk file")
    p.add_argument("image", help="input image (PNG, JPEG, ...; RGB or grayscale, 8-bit, no alpha)")
    p.add_argument("-o", "--output", required=True, help="output .ptk file")
    p.add_argument("--model", default=None, help="codec checkpoint folder (default: the shipped model)")
    p.set_defaults(func=_compress)

    p = subparsers.add_parser("decompress", help="decode a .ptk file back to a bit-exact PNG")
    p.add_argument("input", help="input .ptk file")
    p.add_argument("-o", "--output", required=True, help="output PNG")
    p.add_argument("--model", default=None, help="codec checkpoint folder (must be the encoder's)")
    p.set_defaults(func=_decompress)

    p = subparsers.add_parser("demo", help="compress 10 random 32x32 photo crops and compare with PNG/WebP/JPEG-XL")
    p.add_argument("--images", default=None, help="folder of images (default: scikit-image's bundled photos)")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="pixeltok-demo", help="folder for results.csv and the bar chart")
    p.add_argument("--model", default=None, help="codec checkpoint folder (default: the shipped model)")
    p.add_argument("--skip-tokenizer", action="store_true", help="only the codec part (skip the PixelTokenizer round trip)")
    p.set_defaults(func=_demo)


def main(argv=None) -> int:
    """Stand-alone entry point: ``python -m pixeltok.compression.cli compress IMAGE -o FILE.ptk``."""
    parser = argparse.ArgumentParser(prog="pixeltok")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
