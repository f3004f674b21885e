"""Bounded, reproducible fuzzing of image input: files Pillow writes, byte-mutated copies and crafted headers.

Files: PNG, GIF, BMP, TIFF and WebP written by Pillow from random small arrays in every mode each format can store
(single and multi-frame), the same images in memory in every PIL mode, then seeded byte mutations (flips,
overwrites, truncation, insertion, chunk duplication) of those files, and headers crafted to claim huge, zero or
lying sizes. Property: ``to_rgba``, ``to_rgb_exact`` and ``PixelTokenizer.encode_image`` either succeed with the
size the file declares or raise ImageInputError (a ValueError that names the file and the problem); never another
exception, and never an allocation the size of a forged header. Hypothesis runs derandomized without a database.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, features

from pixeltok import PixelTokenizer
from pixeltok.image_io import ImageInputError, to_rgb_exact, to_rgba

# Pillow warns about the corrupt files this feeds it (bad EXIF/TIFF tags, sizes near the bomb limit): expected here
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
              pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]
FUZZ = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
TRIED: Counter = Counter()
TOK = PixelTokenizer(palette="nes55", layout="runs", max_side=32)
_DIR = tempfile.TemporaryDirectory(prefix="pixeltok-fuzz-")  # hypothesis cannot use function-scoped tmp_path
MODES = ("1", "L", "LA", "La", "P", "Pt", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16",
         "I;16B", "F")


def make_image(mode: str, h: int, w: int, seed: int) -> Image.Image:
    """A random ``h x w`` image in ``mode`` (``Pt``: palette with a transparent index)."""
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    rgb = Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
    if mode in ("1", "L", "RGB", "CMYK", "YCbCr", "LAB", "HSV", "P"):
        return rgb.convert(mode)
    if mode == "Pt":
        p = rgb.quantize(4)
        p.info["transparency"] = 0
        return p
    if mode in ("LA", "RGBA", "La", "RGBa"):
        return Image.fromarray(rgba, "RGBA").convert("LA" if mode.startswith("L") else "RGBA").convert(mode)
    if mode == "PA":
        return rgb.convert("P").convert("PA")
    if mode in ("I;16", "I;16B"):
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)).convert(mode) if mode == "I;16B" \
            else Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "I":  # one seed in four also holds values outside 0..65535, which to_rgba refuses
        return Image.fromarray(rng.integers(*((-3, 70000) if seed % 4 == 0 else (0, 65536)), (h, w), dtype=np.int32))
    return Image.fromarray(rng.random((h, w), dtype=np.float32))  # F


def _writable() -> list[tuple[str, str]]:
    """(format, mode) pairs this Pillow can write (decided once, on 2x2 images)."""
    formats = ["PNG", "GIF", "BMP", "TIFF"] + (["WEBP"] if features.check("webp") else [])
    out = []
    for fmt in formats:
        for mode in MODES:
            try:
                make_image(mode, 2, 2, 0).save(io.BytesIO(), format=fmt)
                out.append((fmt, mode))
            except (OSError, ValueError, KeyError, TypeError):
                pass
    return out


WRITABLE = _writable()
EXT = {"PNG": "png", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp"}


def encode_file(fmt: str, mode: str, h: int, w: int, seed: int, frames: int) -> bytes:
    im = make_image(mode, h, w, seed)
    buf = io.BytesIO()
    if frames > 1 and fmt in ("GIF", "TIFF", "WEBP", "PNG"):
        more = [make_image(mode, h, w, seed + k) for k in range(1, frames)]
        im.save(buf, format=fmt, save_all=True, append_images=more)
    else:
        im.save(buf, format=fmt)
    return buf.getvalue()


def _write(data: bytes, ext: str) -> Path:
    TRIED["files"] += 1
    path = Path(_DIR.name) / f"case{TRIED['files']}.{ext}"
    path.write_bytes(data)
    return path


def _declared_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def check_file(path: Path) -> str:
    """The property for one file; returns 'ok' or 'refused' (ImageInputError naming the file)."""
    outcomes = []
    for name, fn in (("rgba", to_rgba), ("rgb", to_rgb_exact), ("tokens", TOK.encode_image)):
        try:
            out = fn(path)
        except ImageInputError as e:
            assert path.name in str(e), str(e)
            outcomes.append("refused")
            continue
        w, h = _declared_size(path)
        if name == "tokens":
            assert TOK.decode_image(out).size == (w, h)
        else:
            assert out.dtype == np.uint8 and out.shape == (h, w, 4 if name == "rgba" else 3), (name, out.shape)
        outcomes.append("ok")
    return "ok" if outcomes[0] == "ok" else "refused"


cases = st.tuples(st.sampled_from(WRITABLE), st.integers(1, 24), st.integers(1, 24), st.integers(0, 2**32 - 1),
                  st.sampled_from([1, 1, 1, 2]))


@settings(max_examples=400, **FUZZ)
@given(case=cases)
def test_written_files_decode_with_their_size(case):
    (fmt, mode), h, w, seed, frames = case
    TRIED["written"] += 1
    path = _write(encode_file(fmt, mode, h, w, seed, frames), EXT[fmt])
    if check_file(path) == "ok":
        assert _declared_size(path) == (w, h)
    else:  # only float pixels, and 32-bit ints outside 0..65535, are refused by to_rgba
        assert mode == "F" or (mode == "I" and seed % 4 == 0), (fmt, mode)


@settings(max_examples=250, **FUZZ)
@given(mode=st.sampled_from(MODES), h=st.integers(0, 12), w=st.integers(0, 12), seed=st.integers(0, 2**32 - 1))
def test_in_memory_images_of_every_mode(mode, h, w, seed):
    TRIED["in-memory"] += 1
    im = make_image(mode, max(h, 1), max(w, 1), seed) if h and w else Image.new(mode if mode != "Pt" else "P", (w, h))
    for fn, channels in ((to_rgba, 4), (to_rgb_exact, 3)):
        try:
            out = fn(im)
        except ImageInputError:
            continue
        assert out.dtype == np.uint8 and out.shape == (h, w, channels)
    if h and w and mode != "F" and not (mode == "I" and seed % 4 == 0):
        assert to_rgba(im).shape == (h, w, 4)  # every integer mode is supported


@st.composite
def mutated_files(draw):
    (fmt, mode), h, w, seed, frames = draw(cases)
    data = bytearray(encode_file(fmt, mode, h, w, seed, frames))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "set-header", "truncate", "insert", "repeat"]))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "set-header":  # sizes, bit depths and offsets live in the first few dozen bytes
            j = draw(st.integers(0, min(len(data), 64) - 1))
            data[j:j + 2] = draw(st.sampled_from([b"\x00\x00", b"\xff\xff", b"\x7f\xff", b"\x00\x01"]))
        elif op == "truncate":
            del data[max(i, 1):]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:  # repeat a slice (duplicated chunks, frames, IFD entries)
            k = draw(st.integers(1, 32))
            data[i:i] = data[i:i + k]
    return fmt, bytes(data)


@settings(max_examples=1200, **FUZZ)
@given(case=mutated_files())
def test_mutated_files_decode_or_raise_image_input_error(case):
    fmt, data = case
    TRIED["mutated"] += 1
    if check_file(_write(data, EXT[fmt])) == "refused":
        TRIED["mutated-refused"] += 1


# -- crafted headers ------------------------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(w: int, h: int, depth: int = 8, colour: int = 2) -> bytes:
    """Valid signature, IHDR (correct CRC) claiming w x h, and a token IDAT."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


def gif(w: int, h: int) -> bytes:
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0) + b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
            + b"\x02\x02\x44\x01\x00\x3b")


def bmp(w: int, h: int, bpp: int = 24) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bpp, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + info + b"\0" * 16


def tiff(w: int, h: int) -> bytes:
    """Little-endian baseline greyscale TIFF whose one strip is 16 bytes, whatever the size claims."""
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8 + 2 + 9 * 12 + 4),
            (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x80" * 16


def webp(w: int, h: int) -> bytes:
    """A VP8L (lossless) header claiming w x h (14-bit fields, so at most 16384) and no real bitstream."""
    bits = (w - 1) | ((h - 1) << 14)
    payload = b"\x2f" + struct.pack("<I", bits) + b"\0" * 8
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(payload)) + b"WEBPVP8L" + struct.pack("<I", len(payload)) + payload


# name -> (bytes, extension, None if decoding may succeed else a regex every refusal message must match)
CRAFTED = {
    "png-60000x60000": (png(60000, 60000), "png", r"60000x60000.*decompression-bomb limit"),
    "png-2147483647x1": (png(2**31 - 1, 1), "png", r"2147483647x1.*decompression-bomb limit"),
    "png-65535x65535-16bit": (png(65535, 65535, 16, 6), "png", r"65535x65535.*decompression-bomb limit"),
    "png-10000x10000": (png(10000, 10000), "png", r"10000x10000.*decompression-bomb limit"),
    "png-0x0": (png(0, 0), "png", ".+"), "png-5x0": (png(5, 0), "png", ".+"),
    "png-3x3-extra-data": (png(3, 3), "png", None),
    "gif-65535x65535": (gif(65535, 65535), "gif", r"65535x65535.*decompression-bomb limit"),
    "gif-0x0": (gif(0, 0), "gif", ".+"), "gif-9x9": (gif(9, 9), "gif", None),
    "bmp-2147483647x2147483647": (bmp(2**31 - 1, 2**31 - 1), "bmp", r"2147483647x2147483647.*decompression-bomb"),
    "bmp-100000x-100000": (bmp(100000, -100000), "bmp", r"100000x100000.*decompression-bomb limit"),  # top-down
    "bmp-0x7": (bmp(0, 7), "bmp", ".+"), "bmp-40000x3000-32bpp": (bmp(40000, 3000, 32), "bmp", r"40000x3000.*limit"),
    "tiff-4294967295x1": (tiff(2**32 - 1, 1), "tif", r"4294967295x1.*decompression-bomb limit"),
    "tiff-70000x70000": (tiff(70000, 70000), "tif", r"70000x70000.*decompression-bomb limit"),
    "tiff-0x4": (tiff(0, 4), "tif", ".+"), "tiff-4x4": (tiff(4, 4), "tif", None),
    "webp-16384x16384": (webp(16384, 16384), "webp", r"268435456 pixels.*limit"), "webp-1x1": (webp(1, 1), "webp", None),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_headers_raise_image_input_error(name):
    """Forged sizes are refused from the header alone (before any pixel buffer), naming the file and the size."""
    TRIED["crafted"] += 1
    data, ext, expect = CRAFTED[name]
    path = _write(data, ext)
    outcome = check_file(path)
    if expect is not None:
        assert outcome == "refused", name
        for fn in (to_rgba, to_rgb_exact, TOK.encode_image):
            with pytest.raises(ImageInputError, match=expect):
                fn(path)


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print(f"\nfuzz inputs tried: {dict(TRIED)} (files written {TRIED['files']}, in-memory {TRIED['in-memory']})")
