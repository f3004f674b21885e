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
