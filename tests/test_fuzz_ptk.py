"""Bounded fuzzing of ``decompress``: seeded mutations of small real ``.ptk`` files (RGB and L, coded over a few
tiles and stored, version 2 and the version-1 fixtures) and random bytes.

Property, for every input: ``decompress`` returns exactly the original image (possible only where a mutation
touched nothing that matters, e.g. the model name) or raises a :class:`PtkFormatError` subclass -- never another
exception, never more than ``MAX_SECONDS`` or ``MAX_RSS_GROWTH`` per input. Every mutation is tried twice: as is
(the file CRC catches it) and with the file CRC recomputed (a crafted file, which reaches the field checks, the
limits and the range decoder). The number of inputs tried is printed (``pytest -s``) and checked.
"""

from __future__ import annotations

import os
import resource
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pixeltok.compression import (
    PixelContextCodecConfig,
    PixelContextCodecModel,
    PtkFormatError,
    compress,
    decompress,
    load_codec_model,
    read_header,
)
from pixeltok.compression.format import MAGIC

MAX_SECONDS = 2.0  # per input; a real decode here takes ~0.03 s (tiny model) or ~0.4 s (shipped model, fixtures)
MAX_RSS_GROWTH = 512 << 20  # over all inputs of one test (a 32 GiB attempt would fail long before)
DATA = os.path.join(os.path.dirname(__file__), "data")
EXTREMES = (0, 1, 2, 3, 7, 8, 255, 256, 4096, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1)
TRIED: dict[str, int] = {}


def _tiny_model() -> PixelContextCodecModel:
    torch.manual_seed(0)
    cfg = PixelContextCodecConfig(context_rows=2, context_left=2, context_right=1, context_left_current=2,
                                  hidden_size=24, num_hidden_layers=1, head_hidden_size=12, num_mixtures=3)
    m = PixelContextCodecModel(cfg).eval()
    with torch.no_grad():  # random but non-trivial predictions
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy * 3 + xx, 128 + xx * 2 - yy, 200 - yy - xx], -1)
    return np.clip(base + rng.integers(-3, 4, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


@pytest.fixture(scope="module")
def samples(model):
    """name -> (data, original pixels, mode): coded files of 4 tiles (8-pixel tiles, edge tiles smaller), coded
    whole-image files (one unit, version 3's default) and stored files, RGB and L."""
    rng = np.random.default_rng(0)
    out = {}
    rgb, gray = _smooth(12, 10, 1), _smooth(13, 11, 2)[..., 1]
    for name, img, arr in [("rgb-coded", rgb, rgb), ("l-coded", Image.fromarray(gray, "L"), gray),
                           ("rgb-coded-whole", rgb, rgb), ("l-coded-whole", Image.fromarray(gray, "L"), gray),
                           ("rgb-stored", None, rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)),
                           ("l-stored", None, rng.integers(0, 256, (6, 3), dtype=np.uint8))]:
        src = img if img is not None else (Image.fromarray(arr, "L") if arr.ndim == 2 else arr)
        data = compress(src, model=model, tile_size=None if name.endswith("whole") else 8)
        hdr = read_header(data)
        assert hdr.payload == name.split("-")[1], (name, hdr.payload)
        out[name] = (data, arr, "L" if arr.ndim == 2 else "RGB")
    return out


def _refix(data: bytes) -> bytes:
    if len(data) < 4:
        return data
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def _fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the header fields worth rewriting: version .. coder id, name length, kind, layout, block,
    first varint."""
    fixed = [(8, 1), (9, 1), (10, 4), (14, 4), (18, 2), (20, 1), (21, 1), (22, 1), (23, 1), (24, 1), (25, 1), (58, 1)]
    after_crc = 58 + 1 + data[58] + 4
    if data[8] >= 3:
        extra = [(after_crc, 1), (after_crc + 1, 1), (after_crc + 2, 2), (after_crc + 4, 1)]
    elif data[8] == 2:
        extra = [(after_crc, 1), (after_crc + 1, 1)]
    else:
        extra = [(after_crc, 1)]
    return fixed + [f for f in extra if f[0] < len(data) - 4]


def _mutate(rng: np.random.Generator, data: bytes) -> bytes:
    b = bytearray(data)
    kind = int(rng.integers(0, 8))
    if kind == 0:  # bit flips
        for _ in range(int(rng.integers(1, 5))):
            p = int(rng.integers(0, len(b)))
            b[p] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # byte changes
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif kind == 2:  # truncation
        del b[int(rng.integers(0, len(b))):]
    elif kind == 3:  # insertion
        p = int(rng.integers(0, len(b) + 1))
        b[p:p] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
    elif kind == 4:  # deletion of a slice
        p = int(rng.integers(0, len(b)))
        del b[p:p + int(rng.integers(1, 17))]
    elif kind == 5:  # a slice repeated
        p = int(rng.integers(0, len(b)))
        q = min(len(b), p + int(rng.integers(1, 33)))
        b[q:q] = b[p:q]
    elif kind == 6:  # a span overwritten with random bytes (crafted: streams that are no valid encoding)
        p = int(rng.integers(0, len(b)))
        n = min(len(b) - p, int(rng.integers(8, 65)))
        b[p:p + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    else:  # a header field rewritten with an extreme or off-by-one value
        off, size = _fields(data)[int(rng.integers(0, len(_fields(data))))]
        old = int.from_bytes(data[off:off + size], "little")
        v = int(rng.choice(EXTREMES)) if rng.random() < 0.7 else old + int(rng.choice([-1, 1]))
        b[off:off + size] = (v % (1 << (8 * size))).to_bytes(size, "little")
    return bytes(b)


class _Checker:
    """Runs one input through the property; counts inputs and outcomes; bounds time and memory."""

    def __init__(self, name: str, model):
        self.name, self.model = name, model
        self.counts = {"same": 0}  # and one count per error class; "decoded" = errors after range decoding
        self.rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def __call__(self, data: bytes, original: np.ndarray | None, mode: str | None, what: str) -> None:
        t0 = time.perf_counter()
        try:
            out = decompress(data, model=self.model)
        except PtkFormatError as e:
            self.counts[type(e).__name__] = self.counts.get(type(e).__name__, 0) + 1
            if "decoded" in str(e):  # past every header/structure check: the decoder itself was fuzzed
                self.counts["decoded"] = self.counts.get("decoded", 0) + 1
            if e.__cause__ is not None:  # e.g. constriction's AssertionError on an invalid stream
                key = f"from {type(e.__cause__).__name__}"
                self.counts[key] = self.counts.get(key, 0) + 1
        except BaseException as e:  # noqa: BLE001 -- anything else is the bug this test looks for
            raise AssertionError(f"{what}: {type(e).__name__}: {e} (input {data[:80].hex()}...)") from e
        else:
            assert original is not None, f"{what}: random bytes decoded to an image"
            # version 1's CRC does not cover the mode, and an L image was coded exactly like the RGB image R = G = B:
            # a v1 L file with mode = RGB *is* that RGB file (same pixels), so only the mode may differ there
            v1_gray_flip = data[8] == 1 and {out.mode, mode} == {"L", "RGB"}
            assert out.mode == mode or v1_gray_flip, f"{what}: decoded as {out.mode}, not {mode}"
            assert np.array_equal(np.asarray(out.convert(mode)), original), f"{what}: decoded to a different image"
            self.counts["same"] += 1
        dt = time.perf_counter() - t0
        assert dt < MAX_SECONDS, f"{what}: took {dt:.2f} s"

    def done(self, at_least: int) -> None:
        n = sum(v for k, v in self.counts.items() if k != "decoded" and not k.startswith("from "))
        TRIED[self.name] = n
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.rss0
        print(f"\nfuzz {self.name}: {n} inputs, {self.counts}, peak RSS growth {grown >> 20} MiB")
        assert n >= at_least and grown < MAX_RSS_GROWTH


@pytest.mark.parametrize("name", ["rgb-coded", "l-coded", "rgb-coded-whole", "l-coded-whole", "rgb-stored",
                                  "l-stored"])
def test_mutations_of_real_files(samples, model, name):
    data, original, mode = samples[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    check = _Checker(name, model)
    check(data, original, mode, "unmutated")
    n_plain, n_crafted = 3000, 500 if "coded" in name else 3000  # crafted coded inputs may reach the decoder
    for i in range(n_plain):
        bad = _mutate(rng, data)
        check(bad, original, mode, f"{name} mutation {i}")
        if i < n_crafted:
            check(_refix(bad), original, mode, f"{name} crafted mutation {i}")
    for off, size in _fields(data):  # every field x every extreme value, crafted
        for v in EXTREMES:
            b = bytearray(data)
            b[off:off + size] = (v % (1 << (8 * size))).to_bytes(size, "little")
            check(_refix(bytes(b)), original, mode, f"{name} field @{off} = {v}")
    check.done(n_plain + 1)


@pytest.mark.parametrize("fixture", ["v1_l_20x20.ptk", "v1_rgb_40x24.ptk"])
def test_mutations_of_version_1_files(fixture):
    """The previous release's files, with the shipped model (slower to decode: fewer crafted inputs)."""
    m = load_codec_model()
    data = open(os.path.join(DATA, fixture), "rb").read()
    img = decompress(data, model=m)
    original, mode = np.asarray(img), img.mode
    rng = np.random.default_rng(zlib.crc32(fixture.encode()))
    check = _Checker(fixture, m)
    for i in range(1000):
        bad = _mutate(rng, data)
        check(bad, original, mode, f"{fixture} mutation {i}")
        if i < 30:
            check(_refix(bad), original, mode, f"{fixture} crafted mutation {i}")
    for off, size in _fields(data):
        for v in EXTREMES:
            b = bytearray(data)
            b[off:off + size] = (v % (1 << (8 * size))).to_bytes(size, "little")
            check(_refix(bytes(b)), original, mode, f"{fixture} field @{off} = {v}")
    check.done(1000)


def test_random_bytes(model):
    rng = np.random.default_rng(7)
    check = _Checker("random", model)
    for i in range(5000):
        n = int(rng.integers(0, 200))
        raw = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        form = i % 3
        if form == 1:  # past the magic
            raw = MAGIC + raw
        elif form == 2:  # past the magic, a known version, and a valid file CRC
            raw = _refix(MAGIC + bytes([1 + i % 3]) + raw + bytes(4))
        check(raw, None, None, f"random input {i} (form {form})")
    check.done(5000)


@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.sampled_from([1, 2, 3]), mode=st.integers(0, 3), width=st.integers(0, 2 ** 32 - 1),
       height=st.integers(0, 2 ** 32 - 1), tile=st.integers(0, 65535), coder_id=st.sampled_from([0, 2, 3, 255]),
       kind=st.integers(0, 3), layout=st.integers(0, 3), block=st.sampled_from([0, 1, 8, 15, 16, 32, 256, 257, 65535]),
       rest=st.binary(max_size=64))
def test_crafted_headers(model, version, mode, width, height, tile, coder_id, kind, layout, block, rest):
    """Well-formed headers (valid CRC, this model's SHA-256) with arbitrary sizes, ids and payload bytes."""
    from pixeltok.compression import _identity, coder

    body = MAGIC + struct.pack("<BBIIHBBBBBB", version, mode, width, height, tile, 1, coder.QUANT_ID,
                               coder.FREQ_BITS, coder.PROB_BITS, coder.NUMERICS_ID, coder_id)
    body += bytes.fromhex(_identity(model)) + b"\x01x" + bytes(4) + (bytes([kind]) if version >= 2 else b"")
    body += (struct.pack("<BH", layout, block) if version >= 3 else b"") + rest
    check = _Checker("hypothesis", model)
    check(_refix(body + bytes(4)), None, None, "crafted header")
    TRIED["hypothesis"] = TRIED.get("hypothesis", 0) + 1
