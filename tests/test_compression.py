"""Lossless codec: bit-exact round trips, batch independence, and strict rejection of bad files/inputs."""

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
    PtkModelMismatchError,
    PtkTruncatedError,
    PtkVersionError,
    compress,
    decompress,
    load_codec_model,
    read_header,
)
from pixeltok.compression import coder
from pixeltok.compression.format import MAGIC

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


@pytest.mark.parametrize("h,w", [(1, 1), (5, 7), (32, 32), (33, 40), (70, 3)])
def test_round_trip_exact(model, h, w):
    img = photo(h, w, seed=h * 100 + w)
    data = compress(img, model=model)
    out = decompress(data, model=model)
    assert out.mode == "RGB" and out.size == (w, h)
    np.testing.assert_array_equal(np.asarray(out), img)
    hdr = read_header(data)
    assert (hdr.width, hdr.height, hdr.tile_size) == (w, h, 32)
    assert len(hdr.tile_lengths) == (-(-h // 32)) * (-(-w // 32))


def test_batch_size_independent(model):
    img = photo(40, 70, seed=3)
    a = compress(img, model=model, batch_size=1)
    b = compress(img, model=model, batch_size=7)
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
