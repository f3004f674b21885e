"""Whole-image coding (``.ptk`` version 3): the causal context crosses tile borders, one wavefront over the image,
optional independent tiles, adaptation blocks, bit-exact tables, the new header fields, bounded memory."""

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from pixeltok.compression import (
    PtkChecksumError,
    PtkVersionError,
    coder,
    compress,
    decompress,
    load_codec_model,
    read_header,
)
import pixeltok.compression as compression
from pixeltok.compression import format as ptk_format
from pixeltok.compression import wavefront
from pixeltok.compression.format import MAGIC

sys.path.insert(0, os.path.dirname(__file__))
from test_compression import photo, refix, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("h,w", [(1, 1), (2, 9), (9, 2), (31, 33), (40, 70), (75, 6)])
@pytest.mark.parametrize("gray", [False, True])
def test_whole_image_round_trip(model, h, w, gray):
    img = photo(h, w, seed=h * 7 + w)
    src = Image.fromarray(img[..., 1], "L") if gray else img
    data = compress(src, model=model)
    hdr = read_header(data)
    assert (hdr.version, hdr.layout, hdr.tile_size, hdr.block) == (4, "whole", 0, 32)
    out = decompress(data, model=model)
    assert out.mode == ("L" if gray else "RGB")
    np.testing.assert_array_equal(np.asarray(out), img[..., 1] if gray else img)
    if hdr.payload == "coded":
        assert len(hdr.tile_lengths) == 1


@pytest.mark.parametrize("tile,block", [(8, 32), (16, 16), (40, 16), (64, 32)])
def test_independent_tiles_and_blocks(model, tile, block):
    img = photo(50, 70, seed=5)
    data = compress(img, model=model, tile_size=tile, block_size=block)
    hdr = read_header(data)
    assert (hdr.layout, hdr.tile_size, hdr.block) == ("tiles", tile, min(tile, block))
    assert len(hdr.tile_lengths) == (-(-50 // tile)) * (-(-70 // tile))
    np.testing.assert_array_equal(np.asarray(decompress(data, model=model, batch_size=3)), img)


def test_encoder_chunking_does_not_change_the_bytes(model, monkeypatch):
    """The encoder builds tables for any grouping of wavefront steps; the decoder goes one step at a time: the
    bytes (and so the tables) are the same whatever the chunk size."""
    img = photo(37, 45, seed=2)
    ref = compress(img, model=model)
    for n in (1, 50, 10 ** 6):
        monkeypatch.setattr(wavefront, "ENCODE_CHUNK_PIXELS", n)
        assert compress(img, model=model) == ref
    monkeypatch.setattr(wavefront, "CHOOSE_CHUNK_PIXELS", 1)
    assert compress(img, model=model) == ref


def test_features_equal_the_training_path_on_the_whole_image(model):
    """The int16 canvas gives exactly round(pad_canvas(image) * 2**14) gathered at the causal offsets: the model
    sees the image as one big tile, real neighbours across every 32-pixel border."""
    img = photo(40, 45, seed=1)
    canvas = wavefront.Canvas(model, 1, 40, 45, img[None])
    ys, xs = np.array([0, 32, 32, 39, 0]), np.array([0, 0, 33, 44, 32])
    got = canvas.exact_features(ys, xs)
    ref = model.gather_context(model.pad_canvas(torch.from_numpy(img[None]).long()), torch.from_numpy(ys),
                               torch.from_numpy(xs)).reshape(len(ys), -1)
    assert torch.equal(got, torch.round(ref * 2.0 ** 14))
    flags = got.reshape(len(ys), -1, 4)[:, :, 3].numpy()
    offs = np.array(model.config.offsets)
    assert flags[2].all()  # (32, 33): every neighbour, across the tile borders at x = 32 and y = 32, is real
    assert flags[1][offs[:, 1] >= 0].all() and not flags[1][offs[:, 1] < 0].any()  # (32, 0): only the image's edge
    assert not flags[0].any() and not flags[4][offs[:, 0] < 0].any() and flags[4][offs[:, 0] == 0].all()  # row 0


def test_tables_are_identical_in_encoder_and_decoder(model, monkeypatch):
    """The decoder rebuilds every table from its own decoded pixels, one wavefront step at a time; they must
    equal the encoder's, built from the original in chunks (recorded through mixture_freqs)."""
    img = photo(20, 26, seed=4)
    seen = {"enc": [], "dec": []}
    real = wavefront.mixture_freqs
    side = "enc"

    def spy(params, *a, **k):
        f = real(params, *a, **k)
        seen[side].append(f)
        return f

    monkeypatch.setattr(wavefront, "mixture_freqs", spy)  # the encoder's tables
    monkeypatch.setattr(coder, "mixture_freqs", spy)  # the decoder's (coder.decode_front)
    monkeypatch.setattr(wavefront, "ENCODE_CHUNK_PIXELS", 37)
    data = compress(img, model=model)
    side = "dec"
    np.testing.assert_array_equal(np.asarray(decompress(data, model=model)), img)
    # encoder: per chunk, per channel, rows in chunk order; decoder: per step, per channel
    enc = [np.concatenate([seen["enc"][3 * i + c] for i in range(len(seen["enc"]) // 3)]) for c in range(3)]
    dec = [np.concatenate([seen["dec"][3 * i + c] for i in range(len(seen["dec"]) // 3)]) for c in range(3)]
    for c in range(3):
        assert enc[c].shape == (20 * 26, 256)
        np.testing.assert_array_equal(enc[c], dec[c])


def test_version_2_tile_streams_are_reproduced_byte_for_byte(model):
    """One adaptation block per tile is coder id 3's tile stream of version 2: the unit coder writes the same bytes
    (neutral offsets) and decodes the old coder's streams (chosen offsets)."""
    tiles = [photo(32, 32, seed=s) for s in range(3)]
    old, old_bits = coder.encode_tiles(model, tiles, adapt=False)
    new, new_bits = wavefront.encode_units(model, np.stack(tiles), 32, adapt=False)
    assert old == new and np.allclose(old_bits, new_bits)
    adapted, _ = coder.encode_tiles(model, tiles)
    for got, want in zip(wavefront.decode_units(model, adapted, 32, 32, 32), tiles):
        np.testing.assert_array_equal(got, want)


def test_whole_image_beats_tiles_on_a_real_photo():
    """The shipped model (trained on 32x32 tiles) gains from real neighbours at what used to be tile borders."""
    import skimage.data

    m = load_codec_model()
    crop = skimage.data.chelsea()[60:124, 160:256]  # 64 x 96: 6 tiles of 32
    whole, st_w = compress(crop, model=m, return_stats=True)
    tiles, st_t = compress(crop, model=m, tile_size=32, return_stats=True)
    assert st_w["payload"] == st_t["payload"] == "coded" and st_w["tiles"] == 1 and st_t["tiles"] == 6
    assert st_w["ideal_bits"] < 0.995 * st_t["ideal_bits"], (st_w, st_t)
    assert len(whole) < len(tiles)
    np.testing.assert_array_equal(np.asarray(decompress(whole, model=m)), crop)


def test_progress_bar_in_pixels_per_second(model, capfd):
    img = photo(30, 40)
    data = compress(img, model=model, progress=True)
    decompress(data, model=model, progress=True)
    err = capfd.readouterr().err
    assert "compress" in err and "decompress" in err and "px/s" in err and "1.20k/1.20k" in err, err


def _v3(model, layout=2, block=32, tile=0, width=8, height=8, streams=(bytes(4),)) -> bytes:
    sha = bytes.fromhex(compression._identity(model))
    body = MAGIC + struct.pack("<BBIIHBBBBBB", 3, 1, width, height, tile, 1, coder.QUANT_ID, coder.FREQ_BITS,
                               coder.PROB_BITS, coder.NUMERICS_ID, coder.CODER_ID)
    body += sha + b"\x01x" + bytes(4) + bytes([1]) + struct.pack("<BH", layout, block)
    body += b"".join(ptk_format._varint(len(s)) for s in streams) + b"".join(streams)
    return refix(body + bytes(4))


def test_version_3_header_fields_are_checked(model):
    img = photo(8, 8)
    data = compress(img, model=model)
    after_kind = 58 + 1 + data[58] + 4 + 1  # the layout and block fields follow the payload kind
    assert data[after_kind:after_kind + 3] == struct.pack("<BH", 2, 32)
    for kw, match in [(dict(layout=0), "layout"), (dict(layout=3), "layout"), (dict(block=15), "block"),
                      (dict(block=257), "block"), (dict(tile=8), "tile size 0"),
                      (dict(layout=1, tile=8, block=7), "block"), (dict(layout=1, tile=0), "tile_size")]:
        with pytest.raises(PtkChecksumError, match=match):
            decompress(_v3(model, **kw), model=model)
    ok = _v3(model, layout=1, tile=8, block=8)  # a valid v3 tile file reaches the decoder
    assert read_header(ok).layout == "tiles"
    bad = bytearray(data)
    bad[8] = 5
    with pytest.raises(PtkVersionError, match="unknown .ptk format version 5"):
        decompress(refix(bytes(bad)), model=model)
    # a whole image needs at least one word per 1024 pixels in its one stream (bounds decoding work per byte)
    with pytest.raises(PtkChecksumError, match="at least 16"):
        decompress(_v3(model, width=64, height=64, streams=[bytes(12)]), model=model)


def test_garbage_whole_image_stream_is_a_format_error(model):
    rng = np.random.default_rng(3)
    for n in (4, 64, 512):
        data = _v3(model, width=40, height=30, streams=[rng.integers(0, 256, max(n, 8), dtype=np.uint8).tobytes()])
        with pytest.raises(PtkChecksumError):
            decompress(data, model=model)


def test_memory_formula_bounds_a_12_megapixel_photo():
    """Working memory grows with the int16 canvas (6 bytes a pixel), not with the tables: 4000 x 3000 stays within
    a few hundred MB (the image itself, 36 MB, and the decoded copy come on top)."""
    assert wavefront.peak_bytes(3000, 4000) < 300 << 20
    assert wavefront.peak_bytes(3000, 4000) - wavefront.peak_bytes(1500, 2000) < 10 * (12_000_000 - 3_000_000)


def test_peak_rss_of_a_large_image_in_a_subprocess(tmp_path):
    """Measured: peak RSS of compress + decompress of a 1500 x 160 image (tiny model) in a fresh process stays
    near the interpreter + torch baseline, well below a design that kept every table or a float64 canvas."""
    script = f"""
import resource, sys, numpy as np, torch
sys.path.insert(0, {os.path.dirname(__file__)!r})
torch.set_num_threads(1)
from test_compression import tiny_model
from pixeltok.compression import compress, decompress
m = tiny_model()
yy, xx = np.mgrid[0:1500, 0:160]
img = np.stack([(yy // 7 + xx // 3) % 256, (yy // 5) % 256, (xx + 40) % 256], -1).astype(np.uint8)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = compress(img, model=m)
assert (np.asarray(decompress(data, model=m)) == img).all()
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    base, peak = map(int, out.stdout.split()[-2:])
    grown = (peak - base) * 1024
    # 240,000 pixels: all tables at once would be 240000 * 3 * 256 * 8 = 1.4 GB; the bound is one chunk + canvas
    assert grown < wavefront.peak_bytes(1500, 160), (grown >> 20, wavefront.peak_bytes(1500, 160) >> 20)


@pytest.mark.parametrize("h,w,tile", [(40, 1, None), (40, 33, 32), (41, 65, 32), (20, 3, None)])
def test_units_narrower_than_the_wavefront_slope(h, w, tile):
    """A unit narrower than the slope (x + slope * y = t) has empty wavefront steps: an edge tile 1 pixel wide with
    the tiny model (slope 2), 3 wide with the shipped one's slope 5 -- chelsea's last tile column (451 = 14 * 32 + 3)
    failed to decode."""
    torch.manual_seed(0)
    cfg = dict(context_rows=2, context_left=2, context_right=4, context_left_current=2, hidden_size=16,
               num_hidden_layers=1, head_hidden_size=8, num_mixtures=2)
    from pixeltok.compression import PixelContextCodecConfig, PixelContextCodecModel

    for m in (tiny_model(), PixelContextCodecModel(PixelContextCodecConfig(**cfg)).eval()):
        img = photo(h, w, seed=w)
        data = compress(img, model=m, tile_size=tile)
        assert read_header(data).payload == "coded"
        np.testing.assert_array_equal(np.asarray(decompress(data, model=m)), img)
