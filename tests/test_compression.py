"""Lossless codec: bit-exact round trips, batch independence, and strict rejection of bad files/inputs."""

import hashlib
import os
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from pixeltok.compression import (
    ImageInputError,
    PixelContextCodecConfig,
    PixelContextCodecModel,
    PtkChecksumError,
    PtkFormatError,
    PtkLimitError,
    PtkModelMismatchError,
    PtkTruncatedError,
    PtkVersionError,
    compress,
    decompress,
    load_codec_model,
    read_header,
)
import pixeltok.compression as compression
from pixeltok.compression import coder
from pixeltok.compression import format as ptk_format
from pixeltok.compression.format import MAGIC

DATA = os.path.join(os.path.dirname(__file__), "data")
# .ptk version 1 files written by the previous release (shipped model), with the SHA-256 of np.asarray(image)
V1_FIXTURES = {
    "v1_rgb_40x24.ptk": ("RGB", (40, 24), "d945431db21f918dafb4b346c8c8e4c6e43365e37aa019bc328c21249ad20b41"),
    "v1_l_20x20.ptk": ("L", (20, 20), "816f8b6c4f39b6bc63971a41221782a8926a92d200f3c7fdf9d63affee02905f"),
}

# header without the model name (empty coder parameters), + file CRC
STORED_OVERHEAD = 8 + 1 + 1 + 4 + 4 + 2 + 6 + 32 + 1 + 4 + 1 + 3 + 1 + 4
TINY = dict(context_rows=2, context_left=2, context_right=1, context_left_current=2, hidden_size=24,
            num_hidden_layers=1, head_hidden_size=12, num_mixtures=3)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    m = PixelContextCodecModel(PixelContextCodecConfig(**TINY)).eval()
    with torch.no_grad():  # random but non-trivial predictions
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def photo(h, w, seed=0):
    """A smooth-ish synthetic photo-like crop (gradient + noise), uint8 (h, w, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy * 3 + xx, 128 + xx * 2 - yy, 200 - yy - xx], -1)
    return np.clip(base + rng.integers(-6, 7, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("tile", [None, 32])
@pytest.mark.parametrize("h,w", [(1, 1), (5, 7), (32, 32), (33, 40), (70, 3)])
def test_round_trip_exact(model, h, w, tile):
    img = photo(h, w, seed=h * 100 + w)
    data = compress(img, model=model, tile_size=tile)
    out = decompress(data, model=model)
    assert out.mode == "RGB" and out.size == (w, h)
    np.testing.assert_array_equal(np.asarray(out), img)
    hdr = read_header(data)
    assert hdr.version == 4 and hdr.layout == ("whole" if tile is None else "tiles")
    assert (hdr.width, hdr.height, hdr.tile_size, hdr.block) == (w, h, tile or 0, 32)
    assert len(data) <= STORED_OVERHEAD + len(hdr.model_name) + img.size  # never above raw pixels + header
    if hdr.payload == "coded":
        assert len(hdr.tile_lengths) == (1 if tile is None else (-(-h // 32)) * (-(-w // 32)))
    else:  # only where no stream can be smaller than the raw pixels: 1x1 = 3 bytes, a stream >= 4
        assert (h, w) == (1, 1) and hdr.tile_lengths == []


def test_batch_size_independent(model):
    img = photo(40, 70, seed=3)
    a = compress(img, model=model, batch_size=1, tile_size=32)
    b = compress(img, model=model, batch_size=7, tile_size=32)
    assert a == b  # the bytes do not depend on the encoder's batch
    out = decompress(a, model=model, batch_size=2)  # nor does decoding on another batch size
    np.testing.assert_array_equal(np.asarray(out), img)


def test_grayscale_and_pil_path(model, tmp_path):
    g = Image.fromarray(photo(9, 11)[..., 0], "L")
    p = tmp_path / "g.png"
    g.save(p)
    out = decompress(compress(str(p), model=model), model=model)
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(g))


def test_quantized_tables_valid():
    rng = np.random.default_rng(0)
    params = np.stack([rng.normal(size=(50, 4)), rng.uniform(-1, 1, (50, 4)), rng.uniform(-7, 1, (50, 4))], 1)
    f = coder.quantize_probs(coder.mixture_bin_probs(params))
    assert f.dtype == np.int64 and (f >= 1).all() and (f.sum(1) == 2 ** coder.FREQ_BITS).all()


def test_truncated_file(model):
    data = compress(photo(10, 10), model=model)
    for cut in (3, 20, len(data) // 2, len(data) - 1):
        with pytest.raises(PtkFormatError):
            decompress(data[:cut], model=model)
    with pytest.raises(PtkTruncatedError, match="truncated"):
        decompress(data[:-5], model=model)


def test_flipped_bytes_never_give_wrong_image(model):
    img = photo(12, 12)
    data = compress(img, model=model)
    for pos in range(len(MAGIC), len(data), 3):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(PtkFormatError):
            decompress(bytes(bad), model=model)
    bad = bytearray(data)
    bad[len(data) - 10] ^= 0x01  # inside the payload
    with pytest.raises(PtkChecksumError, match="CRC32"):
        decompress(bytes(bad), model=model)


def test_wrong_model(model):
    data = compress(photo(8, 8), model=model)
    with pytest.raises(PtkModelMismatchError, match="sha256"):
        decompress(data, model=tiny_model(seed=1))


def test_unknown_version_and_bad_magic(model):
    data = bytearray(compress(photo(4, 4), model=model))
    data[8] = 9
    with pytest.raises(PtkVersionError, match="version 9"):
        decompress(bytes(data), model=model)
    with pytest.raises(PtkFormatError, match="not a .ptk"):
        decompress(b"PNG\x00" + bytes(data[4:]), model=model)


@pytest.mark.parametrize("bad,match", [
    (Image.new("RGBA", (4, 4), (1, 2, 3, 100)), "mode"),
    (np.zeros((4, 4, 3), np.float32) + 0.5, None),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
])
def test_bad_inputs(model, bad, match):
    with pytest.raises(ImageInputError, match=match):
        compress(bad, model=model)


def test_bad_model_argument():
    with pytest.raises(TypeError, match="PixelContextCodecModel"):
        compress(photo(2, 2), model=42)


def test_shipped_checkpoint_round_trip():
    import skimage.data

    m = load_codec_model()
    crop = skimage.data.chelsea()[100:120, 200:237]  # 20 x 37: one full-width and one edge tile
    data, stats = compress(crop, model=m, return_stats=True)
    np.testing.assert_array_equal(np.asarray(decompress(data, model=m)), crop)
    assert read_header(data).model_name == "pixeltok/codec-default"
    # the trained model must actually compress a real photo crop (8 bits per sub-pixel uncompressed)
    assert stats["payload_bytes"] * 8 / crop.size < 6.0


def test_fresh_model_starts_from_colour_difference_predictor():
    """Untrained, the skip predictor gives mu_R = mean(left, up) and mu_G = R + mean(G - R of left, up)."""
    torch.manual_seed(0)
    m = PixelContextCodecModel(PixelContextCodecConfig(**TINY)).eval()
    with torch.no_grad():
        for lin in m.head_out:
            lin.weight.zero_()  # drop the random MLP part, keep the skip
            lin.bias.zero_()
    tile = photo(8, 8, seed=3)
    with torch.no_grad():
        params = m(torch.from_numpy(tile).long()[None], return_params=True).params[0]  # (8, 8, 3, 3, K)
    u = (2.0 * tile.astype(np.float64) - 255.0) / 256.0
    y, x = 4, 5
    mu = params[y, x, :, 1, 0].double().numpy()
    exp_r = (u[y, x - 1, 0] + u[y - 1, x, 0]) / 2
    exp_g = u[y, x, 0] + ((u[y, x - 1, 1] - u[y, x - 1, 0]) + (u[y - 1, x, 1] - u[y - 1, x, 0])) / 2
    exp_b = u[y, x, 1] + ((u[y, x - 1, 2] - u[y, x - 1, 1]) + (u[y - 1, x, 2] - u[y - 1, x, 1])) / 2
    np.testing.assert_allclose(mu, [exp_r, exp_g, exp_b], atol=1e-6)


def test_bf16_autocast_keeps_the_mixture_in_float32():
    """Training under bf16 autocast (the recipe's default) must not round mu/log_s to bfloat16's 8-bit mantissa."""
    m = tiny_model()
    x = torch.from_numpy(np.stack([photo(16, 16, seed=s) for s in range(4)])).long()
    with torch.no_grad():
        ref = m(x, return_params=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x, return_params=True)
    assert out.params.dtype == torch.float32 and out.loss.dtype == torch.float32
    assert torch.isfinite(out.loss) and abs(out.loss.item() - ref.loss.item()) < 0.05


def test_per_tile_scale_offsets_are_chosen_sent_and_decoded():
    """A flat tile and a noisy tile pull the offsets in opposite directions; both decode exactly, and adapting
    costs fewer bits than the neutral offset (the 15 bits of side information included)."""
    from pixeltok.compression import adapt

    m = tiny_model()
    rng = np.random.default_rng(0)
    flat = np.full((16, 16, 3), 120, np.uint8)
    noisy = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    tiles = [flat, noisy]
    _, _, _, offs = coder.tile_tables(m, np.stack(tiles))
    assert (offs[0] < adapt.SCALE_OFFSET_ZERO).any() and (offs[1] > adapt.SCALE_OFFSET_ZERO).all(), offs
    assert (offs[0] < offs[1]).all(), offs
    streams, ideal = coder.encode_tiles(m, tiles)
    _, ideal_neutral = coder.encode_tiles(m, tiles, adapt=False)
    assert all(a < b for a, b in zip(ideal, ideal_neutral)), (ideal, ideal_neutral)
    for got, want in zip(coder.decode_tiles(m, streams, [(16, 16)] * 2, batch_size=1), tiles):
        np.testing.assert_array_equal(got, want)


# ---- hardening: crafted headers, old files, grayscale, stored fallback, input types, silence ------------------
def refix(data: bytes) -> bytes:
    """Recompute the trailing file CRC: a crafted file, past the corruption check."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def craft(model, streams=(), stored=None, version=2, width=8, height=8, mode=1, tile_size=32,
          coder_id=None, pixels_crc32=0) -> bytes:
    """A file with arbitrary header fields and a valid file CRC, laid out by hand from the format table (version 1:
    no payload-kind byte, coder id 2)."""
    sha = bytes.fromhex(compression._identity(model))
    coder_id = coder_id if coder_id is not None else (2 if version == 1 else coder.CODER_ID)
    body = MAGIC + struct.pack("<BBIIHBBBBBB", version, mode, width, height, tile_size, 1, coder.QUANT_ID,
                               coder.FREQ_BITS, coder.PROB_BITS, coder.NUMERICS_ID, coder_id)
    body += sha + bytes([1]) + b"x" + struct.pack("<I", pixels_crc32)
    if version >= 2:
        body += bytes([1 if stored is None else 2])
    if stored is None:
        body += b"".join(ptk_format._varint(len(t)) for t in streams) + b"".join(streams)
    else:
        body += stored
    return refix(body + bytes(4))


@pytest.mark.parametrize("name", sorted(V1_FIXTURES))
def test_version_1_files_still_decode(name):
    mode, size, sha = V1_FIXTURES[name]
    data = open(os.path.join(DATA, name), "rb").read()
    assert data[8] == 1  # format version
    img = decompress(data)
    assert (img.mode, img.size) == (mode, size)
    assert hashlib.sha256(np.asarray(img).tobytes()).hexdigest() == sha


def test_version_1_mode_swap_is_refused():
    """Version 1's pixel CRC does not cover the mode byte: an RGB file with mode = L and a fixed file CRC decoded
    as a (wrong) L image. The decoder now checks that an L file's pixels are gray."""
    data = bytearray(open(os.path.join(DATA, "v1_rgb_40x24.ptk"), "rb").read())
    data[9] = ptk_format.MODES["L"]
    with pytest.raises(PtkChecksumError, match="not gray"):
        decompress(refix(bytes(data)))


def test_image_crc_covers_mode_and_size(model):
    """Version 2: the same 12 stored bytes as a 6x2 L image or a 2x2 RGB one differ only in header fields that
    the image CRC covers."""
    px = np.arange(12, dtype=np.uint8).reshape(2, 6)
    data = craft(model, stored=px.tobytes(), mode=2, width=6, height=2,
                 pixels_crc32=ptk_format.image_crc32("L", px))
    np.testing.assert_array_equal(np.asarray(decompress(data, model=model)), px)
    bad = bytearray(data)
    bad[9] = ptk_format.MODES["RGB"]
    bad[10:18] = struct.pack("<II", 2, 2)
    with pytest.raises(PtkChecksumError, match="CRC32"):
        decompress(refix(bytes(bad)), model=model)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("w,h,tile", [(65535, 65535, 65535), (8192, 8192, 8192), (600, 600, 512),
                                      (4096, 4096, 4096), (300, 300, 257), (2 ** 31, 1, 32), (10, 10 ** 7, 1)])
def test_crafted_sizes_are_refused_before_allocating(model, w, h, tile, version):
    """Used to die in a 32 GiB MemoryError (65535^3), take 12 s and 5 GB (8192^3) or raise constriction's
    AssertionError (tiles 512-4096): every size is checked against the limits and the bytes present first."""
    n_tiles = (-(-w // tile)) * (-(-h // tile))
    data = craft(model, streams=[bytes(64)] * (n_tiles if n_tiles <= 16 else 1), width=w, height=h, tile_size=tile,
                 version=version)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(PtkFormatError) as e:
            decompress(data, model=model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0 and peak < 1 << 20
    assert isinstance(e.value, (PtkLimitError, PtkTruncatedError)), e.value


def test_size_limits_in_the_encoder(model, monkeypatch):
    for bad in (0, ptk_format.MAX_TILE_SIZE + 1, 65535, 2.5, True):
        with pytest.raises(ValueError, match="tile_size"):
            compress(photo(4, 4), model=model, tile_size=bad)
    for bad in (0, 15, 257, 2.5):
        with pytest.raises(ValueError, match="block_size"):
            compress(photo(4, 4), model=model, block_size=bad)
    monkeypatch.setattr(compression, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageInputError, match="100 pixels"):
        compress(photo(10, 11), model=model)
    monkeypatch.setattr(ptk_format, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(PtkLimitError, match="limit of 100 pixels"):
        decompress(craft(model, streams=[bytes(4)], width=10, height=11), model=model)


def test_tile_stream_lengths_are_checked(model):
    for version in (1, 2):
        with pytest.raises(PtkChecksumError, match="multiple of 4"):
            decompress(craft(model, streams=[bytes(6)], version=version), model=model)
    # coder id 3: at least one word per 1024 pixels, so a file cannot ask for more than ~256 pixels of work per byte
    with pytest.raises(PtkChecksumError, match="at least 16"):
        decompress(craft(model, streams=[bytes(12)], width=64, height=64, tile_size=64), model=model)
    data = bytearray(craft(model, streams=[bytes(8)]))
    with pytest.raises(PtkTruncatedError):
        decompress(refix(bytes(data[:-6]) + bytes(4)), model=model)


def test_garbage_tile_streams_give_a_format_error(model):
    """Streams that are no valid encoding (past the file CRC) made constriction raise AssertionError, which
    escaped decompress; every decoder failure is now a PtkChecksumError."""
    rng = np.random.default_rng(0)
    causes = set()
    for version in (1, 2):
        for n in (4, 8, 64, 256):
            data = craft(model, streams=[rng.integers(0, 256, n, dtype=np.uint8).tobytes()], width=40, height=40,
                         tile_size=40, version=version)
            with pytest.raises(PtkChecksumError) as e:
                decompress(data, model=model)
            causes.add(type(e.value.__cause__).__name__)
    assert "AssertionError" in causes, causes


@pytest.mark.parametrize("bad", [None, 2 ** 36, 1.5, [1, 2], np.zeros(4, np.uint8)])
def test_decompress_refuses_other_types(model, bad):
    """``decompress(2**36)`` used to allocate 64 GiB of zeros (``bytes(2**36)``)."""
    with pytest.raises(TypeError, match="bytes, bytearray, memoryview or a path"):
        decompress(bad, model=model)
    with pytest.raises(TypeError, match="bytes, bytearray, memoryview or a path"):
        read_header(bad)


def test_decompress_accepts_bytes_like_and_paths(model, tmp_path, monkeypatch):
    img = photo(6, 5)
    data = compress(img, model=model)
    p = tmp_path / "x.ptk"
    p.write_bytes(data)
    for d in (bytearray(data), memoryview(data), p, str(p)):
        np.testing.assert_array_equal(np.asarray(decompress(d, model=model)), img)
    monkeypatch.setattr(ptk_format, "MAX_FILE_BYTES", len(data) - 1)
    with pytest.raises(PtkLimitError, match="larger than"):
        decompress(p, model=model)


def test_grayscale_codes_one_channel(model):
    """L images were coded as R = G = B, three channels: now only the gray value is coded (head 0, with the gray
    neighbourhood as context), so an L file is smaller than the same pixels given as RGB."""
    g = photo(24, 40)[..., 1]
    data_l, st_l = compress(Image.fromarray(g, "L"), model=model, return_stats=True)
    data_rgb, st_rgb = compress(np.repeat(g[..., None], 3, axis=2), model=model, return_stats=True)
    assert len(data_l) < len(data_rgb) and st_l["ideal_bits"] < st_rgb["ideal_bits"]
    assert st_l["payload"] == st_rgb["payload"] == "coded"
    assert read_header(data_l).coder_id == coder.CODER_ID == 3
    out = decompress(data_l, model=model)
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), g)


def test_shipped_model_grayscale_photo_below_raw():
    """A 96x64 L crop of a real photo: smaller than its 6,144 raw bytes and than the old three-channel coding."""
    import skimage.data

    m = load_codec_model()
    crop = skimage.data.camera()[440:504, 300:396]
    data = compress(Image.fromarray(crop, "L"), model=m)
    rgb = compress(np.repeat(crop[..., None], 3, axis=2), model=m)
    assert len(data) < 0.9 * crop.size and len(data) < 0.9 * len(rgb), (len(data), len(rgb))
    np.testing.assert_array_equal(np.asarray(decompress(data, model=m)), crop)


@pytest.mark.parametrize("gray", [False, True])
def test_stored_fallback_never_larger_than_raw(model, gray):
    """Noise costs the model more than 8 bits per sub-pixel: the file stores the pixels instead, and decoding a
    stored file needs no (or any) model."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (20, 30) if gray else (20, 30, 3), dtype=np.uint8)
    data, st = compress(Image.fromarray(img) if gray else img, model=model, return_stats=True)
    hdr = read_header(data)
    assert len(data) == STORED_OVERHEAD + len(hdr.model_name) + img.size
    assert st["payload"] == hdr.payload == "stored" and st["ideal_bits"] > 8 * img.size
    for m in (model, tiny_model(seed=1), None):
        out = decompress(data, model=m)
        assert out.mode == ("L" if gray else "RGB")
        np.testing.assert_array_equal(np.asarray(out), img)


def test_compress_and_decompress_print_nothing(capfd, monkeypatch):
    """No "Loading weights" bar (transformers' loader) or anything else on stdout/stderr with progress=False."""
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(compression, "_DEFAULT", None)  # so the shipped model is loaded inside the capture
    bars = hf_logging.is_progress_bar_enabled()
    mine = hf_logging.set_tqdm_hook(None)  # the caller's hook (None here) must be back after the load
    img = photo(8, 9)
    np.testing.assert_array_equal(np.asarray(decompress(compress(img, effort="network"))), img)
    assert compression._DEFAULT is not None
    for effort in ("fast", "max"):
        np.testing.assert_array_equal(np.asarray(decompress(compress(img, effort=effort))), img)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert hf_logging.set_tqdm_hook(mine) is None and hf_logging.is_progress_bar_enabled() == bars
