"""Fast exact inference (``pixeltok.compression.fastnet``): the regrouped network -- float64 or int8 digit products --
gives bit for bit the parameters of the model's own ``exact_trunk_int`` / ``exact_head``, so tables, bytes and
decoded pixels are those of the reference path (existing ``.ptk`` files decode unchanged)."""

import os
import sys

import numpy as np
import pytest
import torch

from pixeltok.compression import coder, compress, decompress, fastnet, load_codec_model, wavefront

sys.path.insert(0, os.path.dirname(__file__))
from test_compression import photo, tiny_model  # noqa: E402

BACKENDS = ["float64"] + (["int8"] if fastnet.int8_available() else [])


def _shipped():
    m = load_codec_model()
    m.codec_name = "shipped"
    return m


def _real_crop(h=40, w=48):
    import skimage.data

    return np.ascontiguousarray(skimage.data.chelsea()[100:100 + h, 150:150 + w])


def _reference_params(model, a: torch.Tensor, prev: torch.Tensor):
    with torch.no_grad():
        hid = model.exact_trunk_int(a)
        return [model.exact_head(c, a, hid, prev) for c in range(3)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", ["tiny", "shipped", "shipped-noise"])
def test_params_bit_identical_to_the_reference(backend, which):
    """Whole images (real, random noise) and extreme inputs: every parameter equal to the reference's."""
    m = tiny_model() if which == "tiny" else _shipped()
    rng = np.random.default_rng(1)
    img = _real_crop() if which != "shipped-noise" else rng.integers(0, 256, (30, 37, 3), dtype=np.uint8)
    if which == "tiny":
        img = photo(31, 29, seed=3)
    net = fastnet.FastExactNet(m, backend)
    assert net.exact and net.backend == backend
    canvas = wavefront.Canvas(m, 1, *img.shape[:2], img[None])
    ys, xs = np.meshgrid(np.arange(img.shape[0]), np.arange(img.shape[1]), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    a = canvas.exact_features(ys, xs)
    prev = torch.from_numpy(img[ys, xs].astype(np.int64))
    ref = _reference_params(m, a, prev)
    st = net.trunk(a.numpy())
    for c in range(3):
        got = net.head(st, c, prev.numpy())
        np.testing.assert_array_equal(got, ref[c])
        np.testing.assert_array_equal(coder.mixture_freqs(got), coder.mixture_freqs(ref[c]))
    # any batch split gives the same rows (decoder steps are small, encoder chunks large)
    part = net.trunk(a.numpy()[5:17])
    np.testing.assert_array_equal(net.head(part, 2, prev.numpy()[5:17]), ref[2][5:17])


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_activations_use_more_digit_planes(backend):
    """Trunk states up to the clamp bound (2**22 per layer, 2**24 summed) and negative features: still exact (the
    int8 path adds a third and fourth digit plane for the rows that need them)."""
    m = tiny_model(seed=2)
    with torch.no_grad():  # large weights, and biases past the clamp (2**22 = 256.0) on half the units
        for p in m.parameters():
            p.mul_(40.0)
        for lin in [m.input_proj, *m.blocks, *m.head_in]:
            lin.bias[::2] = 300.0
    m._exact = None
    net = fastnet.FastExactNet(m, backend)
    assert net.exact
    rng = np.random.default_rng(0)
    n_feat = net.n_feat
    q = rng.choice(np.arange(-255, 256, 2), (64, n_feat))
    q[:, 3::4] = 256 * rng.integers(0, 2, (64, n_feat // 4))  # flags: 2**14 / 64
    a = torch.from_numpy(q * 64.0)
    prev = torch.from_numpy(rng.integers(0, 256, (64, 3)))
    with torch.no_grad():
        hid = m.exact_trunk_int(a)
    assert hid.max().item() >= 2 ** 23  # the clamped residual sums are really exercised
    ref = _reference_params(m, a, prev)
    st = net.trunk(a.numpy())
    for c in range(3):
        np.testing.assert_array_equal(net.head(st, c, prev.numpy()), ref[c])


def test_digit_products_are_exact():
    """The int8 digit product against numpy's int64 product, including huge and negative integers."""
    if "int8" not in BACKENDS:
        pytest.skip("torch._int_mm is not usable here")
    rng = np.random.default_rng(5)
    w = rng.integers(-2 ** 19, 2 ** 19 + 1, (70, 33))
    wd = fastnet._Int8Weights(w.astype(np.float64))
    x = rng.integers(-2 ** 24, 2 ** 24 + 1, (41, 70))
    x[:10] = rng.integers(-100, 100, (10, 70))  # rows needing one plane
    x[10:20] = rng.integers(0, 30000, (10, 70))  # two planes
    want = x @ w
    np.testing.assert_array_equal(fastnet._int8_matmul(x.astype(np.float64), wd), want)
    if fastnet.numba is not None:
        np.testing.assert_array_equal(fastnet._int8_matmul_nb(x.astype(np.float64), wd), want)
        np.testing.assert_array_equal(fastnet._int8_matmul_nb(64.0 * x, wd, 64), 64 * want)


def _both_paths(monkeypatch, model, img, **kw):
    fast = compress(img, model=model, **kw)
    monkeypatch.setattr(wavefront, "exact_net", lambda m, reference: None)
    ref = compress(img, model=model, **kw)
    ref_out = np.asarray(decompress(ref, model=model))
    monkeypatch.undo()
    return fast, ref, ref_out


@pytest.mark.parametrize("kind", ["photo", "noise", "real", "gray"])
def test_same_bytes_as_the_reference_path(monkeypatch, kind):
    """Identical ``.ptk`` bytes from the fast and the reference encoder; each decodes the other's file."""
    m = tiny_model()
    rng = np.random.default_rng(7)
    img = {"photo": photo(33, 41, seed=9), "noise": rng.integers(0, 256, (20, 23, 3), dtype=np.uint8),
           "real": _real_crop(24, 30), "gray": photo(21, 26, seed=4)[..., 1]}[kind]
    fast, ref, ref_out = _both_paths(monkeypatch, m, img)
    assert fast == ref
    np.testing.assert_array_equal(ref_out, img)
    np.testing.assert_array_equal(np.asarray(decompress(ref, model=m)), img)  # fast decoder, reference file
    fast_t, ref_t, _ = _both_paths(monkeypatch, m, img, tile_size=8, block_size=16)
    assert fast_t == ref_t
    np.testing.assert_array_equal(np.asarray(decompress(ref_t, model=m, batch_size=5)), img)


def test_shipped_model_real_photo_same_bytes_and_round_trip(monkeypatch):
    m = _shipped()
    img = _real_crop(28, 36)
    fast, ref, ref_out = _both_paths(monkeypatch, m, img)
    assert fast == ref
    np.testing.assert_array_equal(ref_out, img)
    np.testing.assert_array_equal(np.asarray(decompress(fast, model=m)), img)


def test_version_1_2_tile_decoder_fast_path():
    """``coder.decode_tiles`` (files of versions 1-2) decodes the same tiles through fastnet and the reference."""
    m = tiny_model()
    tiles = [photo(16, 16, seed=s) for s in range(3)] + [photo(5, 9, seed=8)]
    streams, _ = coder.encode_tiles(m, tiles)
    shapes = [t.shape[:2] for t in tiles]
    for reference in (False, True):
        for got, want in zip(coder.decode_tiles(m, streams, shapes, reference=reference), tiles):
            np.testing.assert_array_equal(got, want)


def test_bound_check_falls_back_to_the_reference(monkeypatch):
    """When a partial sum could pass the exact-integer limit (here lowered to 2**30), fastnet declines (``exact``
    False) and the codec runs the model's own path: the same file still round-trips."""
    monkeypatch.setattr(fastnet, "_EXACT_LIMIT", 2.0 ** 30)
    m = tiny_model()
    assert not fastnet.FastExactNet(m, "float64").exact
    assert fastnet.exact_net(m) is None
    img = photo(9, 11, seed=1)
    np.testing.assert_array_equal(np.asarray(decompress(compress(img, model=m), model=m)), img)


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_numba_same_params(monkeypatch, backend):
    """numba is optional: the numpy recombination / head give the same parameters."""
    m = tiny_model()
    img = photo(17, 19, seed=6)
    canvas = wavefront.Canvas(m, 1, *img.shape[:2], img[None])
    ys, xs = np.meshgrid(np.arange(17), np.arange(19), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    a = canvas.exact_features(ys, xs)
    prev = torch.from_numpy(img[ys, xs].astype(np.int64))
    ref = _reference_params(m, a, prev)
    monkeypatch.setattr(fastnet, "numba", None)
    net = fastnet.FastExactNet(m, backend)
    st = net.trunk(a.numpy())
    for c in range(3):
        np.testing.assert_array_equal(net.head(st, c, prev.numpy()), ref[c])
