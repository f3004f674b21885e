"""The ``pixeltok`` command line: encode/decode images as tokens, list palettes, and the codec commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _tokenizer(args):
    from .tokenization import PixelTokenizer

    if getattr(args, "tokenizer", None):
        from transformers import AutoTokenizer

        import pixeltok  # noqa: F401  (registers the classes)

        return AutoTokenizer.from_pretrained(args.tokenizer)
    return PixelTokenizer(palette=args.palette, layout=args.layout, max_side=args.max_side, resize=args.resize)


def _add_tok_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--palette", default="named128", help="named128 | nes55 (default: named128)")
    p.add_argument("--layout", default="grouped", choices=["grouped", "raster", "runs"])
    p.add_argument("--max-side", type=int, default=128, help="largest width/height (default 128)")
    p.add_argument("--resize", default=None, choices=["nearest", "box", "lanczos"], help="downscale larger images instead of failing")
    p.add_argument("--tokenizer", default=None, help="a saved tokenizer folder or Hub repo id (overrides the options above)")


def cmd_encode(args) -> int:
    text = _tokenizer(args).image_to_text(args.image)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_decode(args) -> int:
    text = Path(args.textfile).read_text(encoding="utf-8")
    image = _tokenizer(args).text_to_image(text)
    image.save(args.output)
    print(f"wrote {args.output} ({image.width}x{image.height} {image.mode})", file=sys.stderr)
    return 0


def cmd_palettes(args) -> int:
    from .tokenization.palettes import get_palette, list_palettes

    for name, size in list_palettes().items():
        pal = get_palette(name)
        line = f"{name:10s} {size:4d} colours (+ transparent)"
        if args.verbose:
            line += ": " + ", ".join(f"c_{n}" for n in pal.names)
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixeltok", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="print an image as pixel tokens")
    p.add_argument("image")
    p.add_argument("-o", "--output", default=None, help="write the text here instead of stdout")
    _add_tok_args(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="turn pixel-token text back into an image")
    p.add_argument("textfile")
    p.add_argument("-o", "--output", required=True, help="output image (e.g. OUT.png)")
    _add_tok_args(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("palettes", help="list the built-in palettes")
    p.add_argument("-v", "--verbose", action="store_true", help="also list colour tokens")
    p.set_defaults(func=cmd_palettes)

    from .compression import cli as codec_cli

    codec_cli.register(sub)  # compress, decompress, demo
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .tokenization.image_io import ImageInputError
    from .tokenization.pixel_codec import TokenFormatError

    try:
        return int(args.func(args) or 0)
    except (ImageInputError, TokenFormatError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"pixeltok {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
