"""The adaptive integer context-mixing codec (pixeltok.compression.adaptive): exact round trips, size sanity,
determinism, and that bad payloads end in ValueError (or a wrong image of the right shape), never a crash or hang."""

import hashlib

import numpy as np
import pytest

from pixeltok.compression.adaptive import (CANDIDATES, DEFAULT_PARAMS, PARAM_RANGES, PARAMS_NBYTES, PARAMS_VERSION,
                                           AdaptiveParams, choose_params, decode_adaptive, encode_adaptive,
                                           params_from_bytes, params_to_bytes)


def _roundtrip(img: np.ndarray) -> bytes:
    data = encode_adaptive(img)
    ch = 3 if img.ndim == 3 else 1
    out = decode_adaptive(data, img.shape[0], img.shape[1], ch)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, img)
    return data


def _gradient(h=40, w=60):
    y, x = np.mgrid[:h, :w]
    return np.stack([(x * 4) % 256, (y * 3 + x) % 256, (255 - y * 2) % 256], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def chelsea_crop():
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.chelsea()[100:196, 200:296])


def test_roundtrip_noise():
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = _roundtrip(img)
    assert len(data) < img.size * 1.1 + 64  # noise: near raw size, no blow-up


def test_roundtrip_flat_and_extremes():
    for v in (0, 128, 255):
        data = _roundtrip(np.full((30, 31, 3), v, np.uint8))
        assert len(data) < 64  # ~0.1 bit per sub-pixel while the counters learn
    _roundtrip(np.full((9, 7), 255, np.uint8))


def test_roundtrip_extreme_values():
    """Predictions at 0 / 255 force the sign and bound the magnitude (those decisions are not coded)."""
    rng = np.random.default_rng(3)
    _roundtrip((rng.integers(0, 2, (23, 29, 3)) * 255).astype(np.uint8))
    near = rng.integers(0, 4, (23, 29, 3)) + np.where(rng.integers(0, 2, (23, 29, 1)) == 1, 252, 0)
    _roundtrip(near.astype(np.uint8))
    _roundtrip((rng.integers(0, 2, (31, 17)) * 255).astype(np.uint8))


def test_roundtrip_random_shapes_and_textures():
    rng = np.random.default_rng(4)
    for _ in range(6):
        h, w = (int(v) for v in rng.integers(1, 24, 2))
        base = rng.integers(0, 256, (h, w, 3)).astype(np.int64)
        img = (base + rng.integers(-3, 4, (h, w, 3)) * int(rng.integers(0, 40))) % 256
        _roundtrip(img.astype(np.uint8))
        _roundtrip(np.ascontiguousarray(img[..., 0].astype(np.uint8)))


def test_roundtrip_gradient_and_smooth_is_small():
    img = _gradient()
    data = _roundtrip(img)
    assert len(data) < img.size / 8  # smooth: far below raw


def test_roundtrip_thin_images():
    rng = np.random.default_rng(1)
    for shape in ((1, 57, 3), (57, 1, 3), (1, 1, 3), (1, 40), (40, 1), (2, 2)):
        _roundtrip(rng.integers(0, 256, shape, dtype=np.uint8))
    _roundtrip(_gradient(1, 80))
    _roundtrip(_gradient(80, 1))


def test_roundtrip_grayscale(chelsea_crop):
    data = _roundtrip(np.ascontiguousarray(chelsea_crop[..., 1]))
    assert len(data) < chelsea_crop[..., 1].size * 0.8


def test_roundtrip_photo_crop(chelsea_crop):
    data = _roundtrip(chelsea_crop)
    assert len(data) * 8 / chelsea_crop.size < 5.0  # bits per sub-pixel on a 96 x 96 photo crop


def test_non_contiguous_input(chelsea_crop):
    view = chelsea_crop[::2, ::-1]
    assert encode_adaptive(view) == encode_adaptive(np.ascontiguousarray(view))
    _roundtrip(np.ascontiguousarray(view))


def test_deterministic(chelsea_crop):
    assert encode_adaptive(chelsea_crop) == encode_adaptive(chelsea_crop.copy())


def test_empty_image():
    assert encode_adaptive(np.zeros((0, 5, 3), np.uint8)) == b""
    assert decode_adaptive(b"", 0, 5, 3).shape == (0, 5, 3)
    with pytest.raises(ValueError):
        decode_adaptive(b"\x00", 0, 5, 3)


def test_bad_arguments():
    with pytest.raises(ValueError):
        encode_adaptive(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError):
        encode_adaptive(np.zeros((4, 4), np.uint16))
    data = encode_adaptive(np.zeros((4, 4), np.uint8))
    for args in ((4, 4, 2), (-1, 4, 1), (4, 4.0, 1)):
        with pytest.raises(ValueError):
            decode_adaptive(data, *args)
    with pytest.raises(ValueError):
        decode_adaptive("not bytes", 4, 4, 1)
    with pytest.raises(ValueError):  # a corrupted header must not allocate terabytes
        decode_adaptive(data, 1 << 20, 1 << 20, 3)


def test_truncated_payload_raises(chelsea_crop):
    data = encode_adaptive(chelsea_crop)
    for cut in (0, 1, 3, len(data) // 2, len(data) - 1):
        with pytest.raises(ValueError):
            decode_adaptive(data[:cut], *chelsea_crop.shape)
    with pytest.raises(ValueError):  # trailing bytes are inconsistent too
        decode_adaptive(data + b"\x00\x01", *chelsea_crop.shape)


def test_corrupted_payload_valueerror_or_wrong_image(chelsea_crop):
    """A flipped byte desynchronises the coder: the decoder then either consumes a different number of bytes than
    the payload has (ValueError) or, rarely, returns some image of the right shape. Nothing else, and bounded."""
    data = encode_adaptive(chelsea_crop)
    rng = np.random.default_rng(2)
    raised = 0
    for _ in range(6):
        bad = bytearray(data)
        i = int(rng.integers(0, len(bad)))
        bad[i] ^= 1 << int(rng.integers(0, 8))
        try:
            out = decode_adaptive(bytes(bad), *chelsea_crop.shape)
        except ValueError:
            raised += 1
        else:
            assert out.shape == chelsea_crop.shape and out.dtype == np.uint8
    assert raised >= 1
    garbage = rng.integers(0, 256, 500, dtype=np.uint8).tobytes()
    try:
        out = decode_adaptive(garbage, 64, 64, 3)
    except ValueError:
        pass
    else:
        assert out.shape == (64, 64, 3)


# ---- per-image parameters

# sha256 of payloads recorded with the codec before AdaptiveParams existed: DEFAULT_PARAMS must stay bit-identical
_GOLDEN = {
    "chelsea96": (12391, "e17bbe5b9c72d4e25d4a634a4270f4031451c3c64b4d5595e637eb4a4c3104cd"),
    "chelsea200x300": (71599, "a4cf74576b7002ea9d8b95581fdee1e29a42ef77b8659437bf18ed76b6d66da9"),
    "coffee128": (19769, "8faecd39ec2234d8ea6f3b64abaea6ee165cfe6ddb8c309ba7f1cbe17f1db8b6"),
    "camera128": (8058, "5987732500eb6c9d02db56c4ed2f6cf4ac426940c3d43680808e5be10875e631"),
}


def _golden_images():
    skimage_data = pytest.importorskip("skimage.data")
    ch = skimage_data.chelsea()
    return {"chelsea96": ch[100:196, 200:296], "chelsea200x300": ch[50:250, 100:400],
            "coffee128": skimage_data.coffee()[100:228, 200:328], "camera128": skimage_data.camera()[200:328, 200:328]}


def test_default_params_bit_identical_to_original():
    for name, img in _golden_images().items():
        data = encode_adaptive(np.ascontiguousarray(img))
        assert (len(data), hashlib.sha256(data).hexdigest()) == _GOLDEN[name], name
        assert encode_adaptive(img, DEFAULT_PARAMS) == data


def _nondefault_params():
    lo = AdaptiveParams(*(PARAM_RANGES[f][0] for f in AdaptiveParams._fields))
    hi = AdaptiveParams(*(PARAM_RANGES[f][1] for f in AdaptiveParams._fields))
    return [lo, hi, *CANDIDATES[1:], DEFAULT_PARAMS._replace(channel_order=4)]


def test_roundtrip_nondefault_params(chelsea_crop):
    rng = np.random.default_rng(5)
    imgs = [np.ascontiguousarray(chelsea_crop[:40, :48]), np.ascontiguousarray(chelsea_crop[:33, :29, 0]),
            rng.integers(0, 256, (9, 11, 3), dtype=np.uint8), (rng.integers(0, 2, (12, 10, 3)) * 255).astype(np.uint8)]
    for p in _nondefault_params():
        assert params_from_bytes(params_to_bytes(p)) == p
        for img in imgs:
            data = encode_adaptive(img, p)
            out = decode_adaptive(data, img.shape[0], img.shape[1], 3 if img.ndim == 3 else 1, p)
            assert np.array_equal(out, img), p
    # the params change the payload, and decoding with other params does not silently give the image back
    img = imgs[0]
    a, b = encode_adaptive(img), encode_adaptive(img, CANDIDATES[1])
    assert a != b
    try:
        out = decode_adaptive(b, *img.shape)
    except ValueError:
        pass
    else:
        assert not np.array_equal(out, img)


def test_params_bytes_format():
    data = params_to_bytes(DEFAULT_PARAMS)
    assert len(data) == PARAMS_NBYTES == 8 and data[0] == PARAMS_VERSION
    assert data == bytes([1, 48, 30, 16, 13, 3, 4, 0])  # stable: stored in file headers
    assert params_from_bytes(data) == DEFAULT_PARAMS
    assert params_from_bytes(bytearray(data)) == DEFAULT_PARAMS


def test_params_from_bytes_rejects_bad_bytes():
    good = params_to_bytes(DEFAULT_PARAMS)
    for bad, match in ((good[:-1], "8 bytes"), (good + b"\x00", "8 bytes"), (b"", "8 bytes"),
                       (bytes([2]) + good[1:], "version 2"), (bytes([0]) + good[1:], "version 0")):
        with pytest.raises(ValueError, match=match):
            params_from_bytes(bad)
    with pytest.raises(ValueError):
        params_from_bytes("not bytes")
    for i, field in enumerate(AdaptiveParams._fields):
        lo, hi = PARAM_RANGES[field]
        for v in {lo - 1, hi + 1} & set(range(256)):
            bad = bytearray(good)
            bad[1 + i] = v
            with pytest.raises(ValueError, match=f"{field} = {v}"):
                params_from_bytes(bytes(bad))


def test_bad_params_objects_rejected():
    img = np.zeros((4, 4), np.uint8)
    for p in ((48, 30, 16, 13, 3, 4, 0), DEFAULT_PARAMS._replace(mix_lr=0), DEFAULT_PARAMS._replace(apm_w=2.0),
              DEFAULT_PARAMS._replace(channel_order=6)):
        with pytest.raises(ValueError):
            encode_adaptive(img, p)
        with pytest.raises(ValueError):
            decode_adaptive(b"\x00" * 4, 4, 4, 1, p)
        with pytest.raises(ValueError):
            params_to_bytes(p)


def test_choose_params_deterministic_and_from_candidates(chelsea_crop):
    p = choose_params(chelsea_crop)
    assert p in CANDIDATES and choose_params(chelsea_crop.copy()) == p
    # the pick is the smallest of the candidates' payloads on the sample (here: the whole 96 x 96 crop)
    sizes = [len(encode_adaptive(chelsea_crop, c)) for c in CANDIDATES]
    assert len(encode_adaptive(chelsea_crop, p)) == min(sizes)
    cands = [DEFAULT_PARAMS, DEFAULT_PARAMS._replace(mix_lr=64), DEFAULT_PARAMS._replace(apm_shift=7)]
    q = choose_params(chelsea_crop, cands, max_sample_pixels=2000)  # a band of rows: 20 x 96
    assert q in cands and choose_params(chelsea_crop, cands, max_sample_pixels=2000) == q
    assert choose_params(chelsea_crop[..., 0], [cands[2]]) == cands[2]
    with pytest.raises(ValueError):
        choose_params(chelsea_crop, [])
