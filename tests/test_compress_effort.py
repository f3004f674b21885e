"""compress(effort=...): the adaptive context-mixing coder inside .ptk files (version 4, coder id 4) next to the
network, through the public API and the CLI; damaged or foreign files fail with the format errors."""

import struct

import numpy as np
import pytest
from PIL import Image

from pixeltok.cli import main
from pixeltok.compression import (DEFAULT_CHECKPOINT, PtkChecksumError, PtkTruncatedError, PtkVersionError, compress,
                                  decompress, format as ptk_format, read_header)


def photo(h, w, seed=0, channels=3):
    """Smooth gradients + noise: compressible, but not trivially."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    base = (x * 3 + y * 2)[..., None] + np.array([0, 40, 90])[:channels]
    return np.clip(base + rng.normal(0, 4, (h, w, channels)), 0, 255).astype(np.uint8).squeeze()


def refix(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", __import__("zlib").crc32(data[:-4]))


@pytest.mark.parametrize("effort", ["fast", "max"])
@pytest.mark.parametrize("tile", [None, 16])
@pytest.mark.parametrize("gray", [False, True])
def test_adaptive_efforts_round_trip_exactly(effort, tile, gray):
    img = photo(37, 45, seed=3, channels=1 if gray else 3)
    data, st = compress(Image.fromarray(img) if gray else img, effort=effort, tile_size=tile, return_stats=True)
    out = decompress(data)
    assert out.mode == ("L" if gray else "RGB")
    np.testing.assert_array_equal(np.asarray(out), img)
    hdr = read_header(data)
    assert (hdr.version, hdr.coder_id, hdr.numerics_id, hdr.model_name) == (4, 4, 2, ptk_format.ADAPTIVE_NAME)
    assert st["effort"] == effort and st["payload"] == "coded" and st["tiles"] == (1 if tile is None else 9)
    assert len(data) < 0.8 * img.size  # below raw (noise of sigma 4 alone costs ~4 bits a sub-pixel)


def test_default_is_adaptive_and_a_model_means_the_network(tmp_path):
    img = photo(20, 24)
    assert read_header(compress(img)).coder_id == ptk_format.ADAPTIVE_CODER_ID
    with pytest.raises(ValueError, match="effort must be one of"):
        compress(img, effort="slow")
    with pytest.raises(ValueError, match="only used with effort='network'"):
        compress(img, effort="fast", model=DEFAULT_CHECKPOINT)


def test_adaptive_files_need_no_model_and_beat_the_network_on_a_photo():
    import skimage.data

    img = np.ascontiguousarray(skimage.data.chelsea()[100:164, 150:214])
    fast, net = compress(img, effort="fast"), compress(img, effort="network")
    assert np.array_equal(np.asarray(decompress(fast, model=DEFAULT_CHECKPOINT)), img)  # a model is ignored
    assert len(fast) < len(net)


def test_damaged_adaptive_files_fail_with_format_errors():
    img = photo(30, 30)
    data = compress(img, effort="fast")
    hdr = read_header(data)
    n = hdr.tile_lengths[0]
    start = len(data) - 4 - n
    flipped = bytearray(data)
    flipped[start + n // 2] ^= 0x55
    with pytest.raises(PtkChecksumError):  # the file CRC
        decompress(bytes(flipped))
    with pytest.raises(PtkChecksumError):  # a stream that lies, CRC fixed: the decoder or the pixel CRC refuses it
        decompress(refix(bytes(flipped)))
    with pytest.raises(PtkTruncatedError):
        decompress(data[:-9])
    foreign = bytearray(data)
    foreign[26] ^= 1  # the adaptive identity hash: another adaptive model's file
    with pytest.raises(PtkVersionError, match="adaptive model"):
        decompress(refix(bytes(foreign)))


def test_a_tiny_stream_for_a_huge_image_is_refused_before_decoding():
    """Coder id 4 needs one byte per 32,768 pixels: a 4-byte stream cannot claim 4000 x 4000 pixels."""
    hdr = read_header(compress(photo(8, 8), effort="fast"))
    hdr.width = hdr.height = 4000
    with pytest.raises(PtkChecksumError, match="at least 489"):
        decompress(ptk_format.write(hdr, [bytes(4)]))
    hdr.width = hdr.height = 181  # 32,761 pixels: 4 bytes are a valid length, and the decoder says what is wrong
    with pytest.raises(PtkChecksumError, match="could not be decoded"):
        decompress(ptk_format.write(hdr, [bytes(4)]))


def test_cli_effort_flag(tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(photo(24, 30)).save(src)
    assert main(["compress", str(src), "-o", str(tmp_path / "a.ptk"), "--effort", "fast"]) == 0
    assert "effort fast" in capsys.readouterr().out
    assert main(["decompress", str(tmp_path / "a.ptk"), "-o", str(tmp_path / "b.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), photo(24, 30))
    capsys.readouterr()
    assert main(["compress", str(src), "-o", str(tmp_path / "c.ptk"), "--effort", "fast",
                 "--model", DEFAULT_CHECKPOINT]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and len(err.splitlines()) == 1


def test_progress_bar_moves_in_pixels_per_second(capfd):
    img = photo(64, 48)
    data = compress(img, effort="fast", progress=True)
    decompress(data, progress=True)
    err = capfd.readouterr().err
    assert "compress: 100%" in err and "decompress: 100%" in err and "px/s" in err
