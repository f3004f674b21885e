"""The ``pixeltok`` command line: encode/decode images as tokens, list palettes, compress/decompress, the demo, read.

Every command ends bad input with one line on stderr (``pixeltok CMD: error: ...``) and exit status 2, writes its
output file only once the whole result exists (never a partial file), and refuses to overwrite an existing file
unless ``--force``. Heavy libraries (torch, transformers) are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path


class CommandError(Exception):
    """Bad input to a command: its message is the one line the user sees."""


def input_file(path: str, what: str = "input") -> Path:
    """``path`` as an existing regular file, else a :class:`CommandError` saying what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise CommandError(f"{what} not found: {path}")
    if p.is_dir():
        raise CommandError(f"{what} is a directory, not a file: {path}")
    return p


def check_output(path: str, force: bool) -> Path:
    """Refuse an output path that exists (unless ``force``), is a directory, or lies under a missing folder or a
    regular file — before any work is done."""
    p = Path(path)
    if p.is_dir():
        raise CommandError(f"output is a directory: {path} (give a file name)")
    if p.exists() and not force:
        raise CommandError(f"output exists: {path} (pass --force to overwrite)")
    parent = p.parent if str(p.parent) else Path(".")
    for q in (parent, *parent.parents):
        if q.exists():
            if not q.is_dir():
                raise CommandError(f"cannot write {path}: {q} is a file, not a folder")
            break
    if not parent.exists():
        raise CommandError(f"cannot write {path}: folder {parent} does not exist")
    return p


@contextlib.contextmanager
def atomic_output(path: Path, mode: str = "wb"):
    """Write to a temporary file beside ``path`` and move it into place only when the block succeeds."""
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def checkpoint_arg(value: str | None, what: str = "--model") -> str | None:
    """A local checkpoint folder or a Hub repo id; a path that is not there fails now, without asking the Hub."""
    if value is None:
        return None
    p = Path(value).expanduser()
    if p.is_dir():
        return str(p)
    if p.exists():
        raise CommandError(f"{what} {value}: is a file; expected a checkpoint folder (save_pretrained) or a Hub repo id")
    # a Hub id is `org/name`; anything else that is not here is a missing local path (say so now: asking the Hub
    # first means half a minute of retries offline, then an error about repo ids)
    from .scripts import is_hub_repo_id

    if not is_hub_repo_id(value):
        raise CommandError(f"{what} not found: {value}")
    return value


# -- tokens ---------------------------------------------------------------------------------------------------------
def _tokenizer(args, palette: str | None = None, layout: str | None = None):
    if getattr(args, "tokenizer", None):
        import pixeltok
        from transformers import AutoTokenizer

        pixeltok._register_all()
        return AutoTokenizer.from_pretrained(checkpoint_arg(args.tokenizer, "--tokenizer"))
    from .tokenization.pixel_image import PixelImageCodec  # PixelTokenizer's image logic without transformers

    return PixelImageCodec(palette=palette or args.palette or "named128", layout=layout or args.layout or "grouped",
                           max_side=args.max_side, resize=args.resize)


def _add_tok_args(p: argparse.ArgumentParser, infer: bool = False) -> None:
    note = " (default: read from the text)" if infer else ""
    p.add_argument("--palette", default=None, help=f"named128 | nes55 (default: named128){note}")
    p.add_argument("--layout", default=None, choices=["grouped", "raster", "runs"],
                   help=f"token layout (default: grouped){note}")
    p.add_argument("--max-side", type=int, default=128, help="largest width/height (default 128)")
    p.add_argument("--resize", default=None, choices=["nearest", "box", "lanczos"],
                   help="downscale larger images instead of failing")
    p.add_argument("--tokenizer", default=None,
                   help="a saved tokenizer folder or Hub repo id (overrides the options above)")


def add_force_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")


def cmd_encode(args) -> int:
    image = input_file(args.image, "image")
    out = check_output(args.output, args.force) if args.output else None
    text = _tokenizer(args).image_to_text(str(image))
    if out is None:
        sys.stdout.write(text)
        return 0
    with atomic_output(out, "w") as f:
        f.write(text)
    return 0


def cmd_decode(args) -> int:
    src = input_file(args.textfile, "text file")
    out = check_output(args.output, args.force)
    try:
        text = src.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CommandError(f"{src} is not UTF-8 text (byte {e.start}); expected the output of `pixeltok encode`")
    palette, layout = args.palette, args.layout
    if not args.tokenizer and (palette is None or layout is None):
        from .tokenization.pixel_codec import sniff_text_format

        found = sniff_text_format(text)
        palette = palette or found["palette"]
        layout = layout or found["layout"]
    image = _tokenizer(args, palette, layout).text_to_image(text)
    fmt = (out.suffix.lstrip(".") or "png").upper()
    with atomic_output(out) as f:
        image.save(f, format={"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt))
    print(f"wrote {out} ({image.width}x{image.height} {image.mode})", file=sys.stderr)
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


# -- lossless codec -------------------------------------------------------------------------------------------------
def check_effort(effort: str | None, model: str | None) -> None:
    """``--model`` names the network's checkpoint, so it only goes with ``--effort network`` (or none)."""
    if model is not None and effort not in (None, "network"):
        raise CommandError(f"--model is the network's checkpoint: it cannot be used with --effort {effort}")


def cmd_compress(args) -> int:
    image = input_file(args.image, "image")
    out = check_output(args.output, args.force)
    model = checkpoint_arg(args.model)
    from .compression import compress

    check_effort(args.effort, model)
    data, stats = compress(str(image), model=model, effort=args.effort, tile_size=args.tile, progress=True,
                           return_stats=True)
    with atomic_output(out) as f:
        f.write(data)
    n_sub = stats["sub_pixels"]
    if stats["payload"] != "coded":
        how = "stored raw (coding would be larger)"
    else:
        how = "whole image" if stats.get("layout") == "whole" else f"{stats['tiles']} independent tiles"
    ideal = f" (ideal {stats['ideal_bits'] / n_sub:.3f})" if stats["effort"] == "network" else ""
    print(f"{args.image} -> {args.output}: {len(data)} bytes, {len(data) * 8 / n_sub:.3f} bits per sub-pixel"
          f"{ideal}, {how}, effort {stats['effort']}")
    return 0


def cmd_decompress(args) -> int:
    src = input_file(args.input, ".ptk file")
    out = check_output(args.output, args.force)
    model = checkpoint_arg(args.model)
    from .compression import decompress

    img = decompress(str(src), model=model, progress=True)
    with atomic_output(out) as f:
        img.save(f, format="PNG")
    print(f"{args.input} -> {args.output}: {img.size[0]}x{img.size[1]} {img.mode}, verified against the stored CRC32")
    return 0


def cmd_demo(args) -> int:
    model = checkpoint_arg(args.model)
    if args.images is not None and not os.path.isdir(args.images):
        raise CommandError(f"--images folder not found: {args.images}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CommandError(f"--out {args.out} is a file, not a folder")
    from .compression.demo import run_demo
    from .tokenization.demo import run_tokenizer_demo

    if not args.skip_tokenizer:  # the main job: tokens and back first, then the learned codec
        run_tokenizer_demo(args.out)
    check_effort(args.effort, model)
    run_demo(images_dir=args.images, n=args.n, seed=args.seed, out_dir=args.out, model=model, effort=args.effort)
    return 0


# -- reading -------------------------------------------------------------------------------------------------------
def default_reader() -> Path:
    """The reader shipped in the package (``recipes/configs/lm_reader.yaml``'s output)."""
    return Path(__file__).resolve().parent / "checkpoints" / "reader"


def cmd_read(args) -> int:
    images = [input_file(p, "image") for p in args.images]
    model_dir = checkpoint_arg(args.model) if args.model else str(default_reader())
    if args.model is None and not (default_reader() / "config.json").is_file():
        raise CommandError(f"no reader is shipped in {default_reader()}: pass --model DIR "
                           "(the output folder of recipes/train_lm.py)")
    import json

    import pixeltok
    from transformers import AutoModelForCausalLM, AutoProcessor

    from .reader import read
    from .scripts import library_progress_bars_off
    from .tokenization.image_io import open_image

    pixeltok._register_all()
    with library_progress_bars_off():
        processor = AutoProcessor.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    if not hasattr(processor, "image_ids"):
        raise CommandError(f"--model {model_dir}: not a pixeltok reader (its processor is {type(processor).__name__})")
    pictures = []
    for p in images:  # every image opened (and fitted) before any is read: a bad one fails the call at once
        im = open_image(str(p))
        processor.prepare(im)
        pictures.append(im)
    results = read(model, processor, pictures, max_new_tokens=args.max_new_tokens, return_scores=True)
    if args.json:
        print(json.dumps([{"image": str(p), **r} for p, r in zip(args.images, results)], indent=1))
    else:
        for p, r in zip(args.images, results):
            print(r["text"] if len(images) == 1 else f"{p}\t{r['text']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="pixeltok", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"pixeltok {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="print an image as pixel tokens")
    p.add_argument("image")
    p.add_argument("-o", "--output", default=None, help="write the text here instead of stdout")
    _add_tok_args(p)
    add_force_arg(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="turn pixel-token text back into an image")
    p.add_argument("textfile")
    p.add_argument("-o", "--output", required=True, help="output image (e.g. OUT.png)")
    _add_tok_args(p, infer=True)
    add_force_arg(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("palettes", help="list the built-in palettes")
    p.add_argument("-v", "--verbose", action="store_true", help="also list colour tokens")
    p.set_defaults(func=cmd_palettes)

    p = sub.add_parser("compress", help="losslessly compress an image to a .ptk file")
    p.add_argument("image", help="input image (PNG, JPEG, ...; RGB or grayscale, 8-bit, no alpha)")
    p.add_argument("-o", "--output", required=True, help="output .ptk file")
    p.add_argument("--effort", choices=("fast", "max", "network"), default=None,
                   help="fast (default): adaptive context mixing, ~0.7 MP/s; max: its parameters chosen for the "
                        "image (~0.3%% smaller, slower to encode); network: the pretrained pixel-context network")
    p.add_argument("--model", default=None, help="codec checkpoint folder (default: the shipped network), or a "
                                                 "causal model over sub-pixels such as ImageGPT; implies --effort "
                                                 "network")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="code independent NxN tiles (random access; default: the whole image as one unit)")
    add_force_arg(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help="decode a .ptk file back to a bit-exact PNG")
    p.add_argument("input", help="input .ptk file")
    p.add_argument("-o", "--output", required=True, help="output PNG")
    p.add_argument("--model", default=None, help="codec checkpoint folder (must be the encoder's; files written "
                                                 "with effort fast or max need none)")
    add_force_arg(p)
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("demo", help="tokens and back on a real photo, then compress 10 random 32x32 photo crops "
                                    "and compare with PNG/WebP/JPEG-XL")
    p.add_argument("--images", default=None, help="folder of images (default: scikit-image's bundled photos)")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="pixeltok-demo", help="folder for results.csv and the bar chart")
    p.add_argument("--effort", choices=("fast", "max", "network"), default=None,
                   help="the codec's effort, as in compress (default fast)")
    p.add_argument("--model", default=None, help="codec network checkpoint folder, or a causal model over "
                                                 "sub-pixels such as ImageGPT; implies --effort network")
    p.add_argument("--skip-tokenizer", action="store_true",
                   help="only the codec part (skip the PixelTokenizer round trip)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("read", help="print the text written in small images (one word or number each)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", default=None,
                   help="a reader folder (recipes/train_lm.py output) or Hub id (default: the shipped reader)")
    p.add_argument("--json", action="store_true", help="print JSON with a confidence (mean log-probability) per image")
    p.add_argument("--max-new-tokens", type=int, default=32, help="longest answer in tokens (default 32)")
    p.set_defaults(func=cmd_read)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean bad input (their message is shown), not a bug in pixeltok."""
    from .tokenization.image_io import ImageInputError
    from .tokenization.pixel_codec import TokenFormatError

    found = (CommandError, ImageInputError, TokenFormatError, OSError, ValueError, KeyError, TypeError)
    ptk = sys.modules.get("pixeltok.compression.format")  # not loaded: no .ptk was read (and importing costs torch)
    return found + ((ptk.PtkFormatError,) if ptk else ())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"pixeltok {args.command}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        if isinstance(e, OSError) and getattr(e, "filename", None) and e.strerror:
            msg = f"{e.strerror}: {e.filename}"
        print(f"pixeltok {args.command}: error: {msg.splitlines()[0] if msg else type(e).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
