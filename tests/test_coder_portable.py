"""QUANT_ID 2: the integer-only mixture -> frequency tables (``coder.mixture_freqs``) are valid, monotone, close to
the float64 mixture, and bit-identical on every machine (golden SHA-256s below: computed without any float
``exp``, so a different CPU, libm or numpy SIMD kernel must reproduce them exactly)."""

import hashlib
from decimal import Context, Decimal

import numpy as np
import pytest
import torch

from pixeltok.compression import PixelContextCodecConfig, PixelContextCodecModel, coder

TOTAL = 1 << coder.FREQ_BITS
# SHA-256 of the lookup tables and of the frequency tables of golden_params(); a change here changes every
# .ptk file: bump coder.QUANT_ID (and only then update these)
TABLES_SHA256 = "f67d0c8fdbba43e5b3e8c0ac266454fca68b60c1176a592c22f0e7c9aeee5c30"
GOLDEN_FREQS_SHA256 = "6d9b2bc120d1c040e71115e95174d9d7421ab8a7e81073ec9e4c83cbd8c8ae96"


def _lcg(n: int, seed: int) -> list[int]:
    """Portable pseudo-random 32-bit integers (numpy's generators promise no stream stability across versions)."""
    out, x = [], seed
    for _ in range(n):
        x = (1664525 * x + 1013904223) % 2 ** 32
        out.append(x)
    return out


def golden_params() -> np.ndarray:
    """``(64, 3, 6)`` params on the 2**-14 grid: typical rows plus extremes (tiny/huge scales, mu at and beyond
    the edges, one dominant component, equal logits)."""
    r = np.array(_lcg(64 * 3 * 6, 12345), dtype=np.int64).reshape(64, 3, 6)
    logit = (r[:, 0] % (16 * 2 ** 14)) - 8 * 2 ** 14  # [-8, 8)
    mu = (r[:, 1] % (3 * 2 ** 14)) - 3 * 2 ** 13  # [-1.5, 1.5)
    log_s = (r[:, 2] % (9 * 2 ** 14)) - 8 * 2 ** 14  # [-8, 1): some below the -7 clamp
    p = np.stack([logit, mu, log_s], 1).astype(np.float64) / 2 ** 14
    p[0, 2] = -7.0  # tiniest scale, mu on a level centre
    p[0, 1] = (2 * 100 - 255) / 256
    p[1, 2] = 12.0  # beyond the upper clamp
    p[2, 1] = -1.0  # mu exactly on the outer edges / far outside
    p[3, 1] = 1.0
    p[4, 1] = -700.0
    p[5, 1] = 2000.0
    p[6, 0] = [40.0, 0, 0, 0, 0, 0]  # one dominant component (others below exp(-22))
    p[7, 0] = 0.0  # equal weights
    p[8, 1] = 128 / 2 ** 14 * 3 - 1.0  # mu exactly on a bin edge
    return p


def random_params(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.stack([rng.normal(0, 2, (n, k)), rng.uniform(-1.1, 1.1, (n, k)), rng.uniform(-7, 1, (n, k))], 1)
    return np.round(p * 2 ** 14) / 2 ** 14  # the exact_head grid


def assert_valid(f: np.ndarray, n: int):
    assert f.dtype == np.int64 and f.shape == (n, 256)
    assert (f >= 1).all()
    assert (f.sum(axis=1) == TOTAL).all()


def test_tables_golden_and_meaning():
    tb = coder._integer_tables()
    assert coder.tables_sha256() == TABLES_SHA256 == coder.TABLES_SHA256
    sig, half = tb["sig"], coder.SIG_RANGE << coder.SIG_STEP_BITS
    assert (np.diff(sig) >= 0).all() and sig[half] == 2 ** 29
    np.testing.assert_array_equal(sig + sig[::-1], 2 ** 30)  # exactly symmetric
    ctx = Context(prec=50)
    for i in (half + 1, half + 300, half + 2000, half + 5000):  # the entries are what the docstring says
        x = Decimal(i - half) / 256
        want = ctx.divide(Decimal(2 ** 30), 1 + ctx.exp(-x))
        assert abs(Decimal(int(sig[i])) - want) <= 1
    for a in (0, 1, 900, 1920):
        want = ctx.exp(Decimal(7) - Decimal(a) / 128) * 2 ** 27
        assert abs(Decimal(int(tb["inv_hi"][a])) - want) <= 1
    assert tb["w_hi"][0] == 2 ** 30 and tb["w_hi"][-1] == 0 and tb["exp_lo"][0] == 2 ** 24
    with pytest.raises(ValueError):
        tb["sig"][0] = 1  # read-only: nobody can corrupt the cached tables


def test_no_platform_exp(monkeypatch):
    """Neither the tables nor the frequencies may touch a float exp (np.exp differs by an ulp across CPUs)."""
    import math

    def boom(*a, **k):
        raise AssertionError("float exp used on the QUANT_ID 2 path")

    p = random_params(40, 3, seed=5)
    want = coder.mixture_freqs(p)
    coder._integer_tables.cache_clear()
    monkeypatch.setattr(np, "exp", boom)
    monkeypatch.setattr(math, "exp", boom)
    try:
        np.testing.assert_array_equal(coder.mixture_freqs(p), want)
    finally:
        coder._integer_tables.cache_clear()


def test_tables_ignore_the_global_decimal_context():
    import decimal

    coder._integer_tables.cache_clear()
    try:
        with decimal.localcontext() as ctx:  # a caller's odd global context must not leak into the tables
            ctx.prec, ctx.rounding = 6, decimal.ROUND_FLOOR
            assert coder.tables_sha256() == TABLES_SHA256
    finally:
        coder._integer_tables.cache_clear()


def test_golden_freqs():
    f = coder.mixture_freqs(golden_params())
    assert_valid(f, 64)
    import hashlib

    assert hashlib.sha256(f.astype("<i8").tobytes()).hexdigest() == GOLDEN_FREQS_SHA256


@pytest.mark.parametrize("k", [1, 3, 6])
def test_valid_on_random_params(k):
    assert_valid(coder.mixture_freqs(random_params(300, k, seed=k)), 300)


@pytest.mark.parametrize("logit,mu,log_s", [
    (0.0, 0.0, -7.0), (0.0, 0.0, -30.0), (0.0, 0.0, 8.0), (0.0, 0.0, 1e6),  # tiny / clamped / huge scales
    (0.0, -1.0, -7.0), (0.0, 1.0, -7.0), (0.0, -1e9, -7.0), (0.0, 1e9, 5.0),  # mu at / far beyond the edges
    (1e9, 0.3, -2.0), (-1e9, 0.3, -2.0),  # huge logits
])
def test_valid_on_extreme_params(logit, mu, log_s):
    p = random_params(20, 4, seed=7)
    p[:, :, 0] = [logit, mu, log_s]
    assert_valid(coder.mixture_freqs(p), 20)


def test_tails_and_peaks():
    p = np.zeros((4, 3, 2))
    p[:, 0] = [[30.0, 0.0]] * 4  # component 0 dominant: component 1 gets weight 0
    p[:, 2] = -7.0
    p[:, 1, 0] = [-3.0, 3.0, (2 * 17 - 255) / 256, (2 * 200 - 255) / 256]
    p[:, 1, 1] = 0.0
    f = coder.mixture_freqs(p)
    assert f[0, 0] == TOTAL - 255 and f[1, 255] == TOTAL - 255  # open tails take everything
    assert f[2].argmax() == 17 and f[3].argmax() == 200
    assert f[2, 17] > 0.97 * TOTAL  # s = e**-7: sigmoid(+-4.28) -> 97.3 % in the centre bin


def test_cdf_monotone_and_moves_with_mu():
    p = random_params(200, 5, seed=3)
    c = coder.mixture_cdf(p)
    assert c.shape == (200, 257) and (c[:, 0] == 0).all() and (c[:, 256] == 2 ** coder.CDF_BITS).all()
    assert (np.diff(c, axis=1) >= 0).all()
    # one component swept in mu on the 2**-14 grid: the integer CDF at every edge never increases with mu
    sweep = np.zeros((2000, 3, 1))
    sweep[:, 1, 0] = (np.arange(2000) - 1000) / 2 ** 10
    sweep[:, 2, 0] = -4.0
    cs = coder.mixture_cdf(sweep)
    assert (np.diff(cs, axis=0) <= 0).all() and (np.diff(cs, axis=1) >= 0).all()


def test_independent_of_chunk_and_row_order():
    p = random_params(301, 6, seed=11)
    f = coder.mixture_freqs(p)
    for chunk in (1, 7, 300, 1000):
        np.testing.assert_array_equal(coder.mixture_freqs(p, chunk=chunk), f)
    perm = np.random.default_rng(0).permutation(301)
    np.testing.assert_array_equal(coder.mixture_freqs(p[perm]), f[perm])
    np.testing.assert_array_equal(coder.mixture_freqs(p[5:6]), f[5:6])


def test_close_to_float_reference():
    """KL(float64 mixture || integer tables) is the 2**-24 grid's own cost: no worse than quantize_probs'."""
    p = random_params(2000, 6, seed=1)
    ref = coder.mixture_bin_probs(p)
    q_int = coder.mixture_freqs(p) / TOTAL
    q_flt = coder.quantize_probs(ref) / TOTAL

    def kl(q):  # bits per symbol
        return float((ref * np.log2(np.maximum(ref, 1e-300) / q)).sum(axis=1).mean())

    assert kl(q_int) < 1e-5
    assert kl(q_int) < kl(q_flt) * 1.01
    # per bin: within the sigmoid table's chord error (the first largest bin also takes the rounding remainder)
    rel = np.where(ref > 1e-3, np.abs(q_int / np.maximum(ref, 1e-300) - 1), 0.0)
    rel[np.arange(len(rel)), q_int.argmax(axis=1)] = 0
    assert rel.max() < 4e-4


def test_bad_params():
    with pytest.raises(ValueError, match="NaN or inf"):
        coder.mixture_freqs(np.full((2, 3, 2), np.nan))
    with pytest.raises(ValueError, match=r"\(N, 3, K\)"):
        coder.mixture_freqs(np.zeros((2, 2, 2)))
    assert coder.mixture_freqs(np.zeros((0, 3, 4))).shape == (0, 256)


def _random_model(seed=0):
    torch.manual_seed(seed)
    m = PixelContextCodecModel(PixelContextCodecConfig(hidden_size=32, num_hidden_layers=1, head_hidden_size=16)).eval()
    with torch.no_grad():  # random but non-trivial predictions
        for prm in m.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    return m


def test_round_trip_encode_decode_tiles():
    m = _random_model()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.clip(np.stack([yy * 4 + xx, 120 + xx * 3 - yy, 220 - 2 * yy - xx], -1)
                     + rng.integers(-5, 6, (32, 32, 3)), 0, 255).astype(np.uint8)
    tiles = [smooth, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), smooth[:8, :8].copy(),
             smooth[8:16, 16:24].copy(), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), smooth[:5, :7].copy()]
    streams, ideal = coder.encode_tiles(m, tiles, batch_size=4)
    out = coder.decode_tiles(m, streams, [t.shape[:2] for t in tiles], batch_size=3)
    for t, o in zip(tiles, out):
        np.testing.assert_array_equal(o, t)
    for s, b in zip(streams, ideal):
        # ideal = code length under our tables; constriction's fast quantizer codes with ~f + 1 per bin (a hair
        # cheaper on noise), plus its 32-bit words and flush
        assert abs(8 * len(s) - b) <= 64 + 0.03 * b
    # the tables the coder used are mixture_freqs of the exact params
    syms, freqs, _, _ = coder.tile_tables(m, tiles[2][None])
    assert_valid(freqs[0], syms.shape[1])


def test_grayscale_tiles_code_one_channel():
    """``channels=1``: only the gray value is coded (head 0, gray neighbourhood as context); G = B come back as
    copies, and the stream is shorter than coding the same tile as three channels."""
    m = _random_model()
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:16, 0:24]
    g = np.clip(yy * 5 + xx * 2 + rng.integers(-4, 5, (16, 24)), 0, 255).astype(np.uint8)
    tiles = [np.repeat(g[..., None], 3, axis=2), np.repeat(g[:7, :9, None], 3, axis=2)]
    syms, freqs, _, offs = coder.tile_tables(m, tiles[0][None], channels=1)
    assert syms.shape == (1, 16 * 24) and freqs.shape == (1, 16 * 24, 256) and offs.shape == (1, 1)
    assert sorted(syms[0].tolist()) == sorted(g.reshape(-1).tolist())
    streams, ideal = coder.encode_tiles(m, tiles, channels=1)
    streams3, ideal3 = coder.encode_tiles(m, tiles, channels=3)
    assert all(len(a) < len(b) for a, b in zip(streams, streams3)) and all(a < b for a, b in zip(ideal, ideal3))
    for got, want in zip(coder.decode_tiles(m, streams, [t.shape[:2] for t in tiles], channels=1), tiles):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="channels"):
        coder.encode_tiles(m, tiles, channels=2)


def test_streams_padded_to_one_word_per_1024_pixels():
    """A near-certain model codes a flat 64x64 tile in one 32-bit word; CODER_ID 3 pads it with zero words to
    ceil(4096 / 1024) = 4 so that no file can ask for more than ~256 pixels of decoding per byte. The padding
    decodes the same (the range decoder reads missing words as zeros)."""
    from pixeltok.compression import format as ptk_format

    m = _random_model()
    k = m.config.num_mixtures
    with torch.no_grad():
        for out, skip in zip(m.head_out, m.head_skip):
            for p in (out.weight, out.bias, skip.weight, skip.bias):
                p.zero_()
            skip.bias[k:2 * k] = -3.0  # mu far below level 0: all the mass in the open bin 0
            skip.bias[2 * k:] = -7.0
    tiles = [np.zeros((64, 64, 3), np.uint8), np.zeros((32, 32, 3), np.uint8), np.zeros((20, 70, 3), np.uint8)]
    streams, ideal = coder.encode_tiles(m, tiles)
    assert max(ideal) < 32
    assert [len(s) for s in streams] == [16, 4, 8]
    assert [ptk_format.min_stream_bytes(*t.shape[:2], coder.CODER_ID) for t in tiles] == [16, 4, 8]
    for got, want in zip(coder.decode_tiles(m, streams, [t.shape[:2] for t in tiles]), tiles):
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not coder._fast_tables.AVAILABLE, reason="numba not installed")
@pytest.mark.parametrize("k", [1, 3, 6])
def test_compiled_kernel_equals_the_numpy_reference(k):
    """The numba edge loop (saturated edges skipped, one fused pass per row) gives the same integers as the numpy
    path, on the golden extremes and on random rows."""
    for p in (golden_params()[..., :k], random_params(3000, k, 40 + k)):
        np.testing.assert_array_equal(coder.mixture_freqs(p, fast=True), coder.mixture_freqs(p, fast=False))
    fast = coder.mixture_freqs(golden_params(), fast=True)
    assert hashlib.sha256(fast.astype("<i8").tobytes()).hexdigest() == GOLDEN_FREQS_SHA256


def test_table_kernel_leaves_torch_threads_alone():
    """numba's parallel launch used to reset torch's thread count (OMP_NUM_THREADS=1 became 2 threads)."""
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        coder.mixture_freqs(random_params(2000, 6, 5))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(n)
