"""Entropy coding with constriction's range coder, bit-exactly reproducible: the integer tables (all versions) and
the tile coder of ``.ptk`` versions 1-2 (``encode_tiles``/``decode_tiles``; version 3 codes whole images or tiles
with ``pixeltok.compression.wavefront``, whose tile streams with one adaptation block per tile are these, byte
for byte).

Pipeline for every sub-pixel (what the ``.ptk`` header pins with ``numerics``/``quantization``/``coder`` ids):

1. **Parameters** -- :meth:`PixelContextCodecModel.exact_head` integer inference: every activation and weight is
   an integer held in float64, all partial sums stay below 2**53, so the mixture parameters (logit_pi, mu, log_s)
   are exact multiples of 2**-14, independent of batch size, batch position, thread count or BLAS kernel
   (``NUMERICS_ID = 1``).
2. **Integer frequency tables** (``QUANT_ID = 2``, :func:`mixture_freqs`): the discretized logistic mixture over the
   256 levels evaluated with int64 arithmetic and lookup tables only -- no ``exp`` of the platform, no float
   rounding -- so every machine builds bit-identical tables from the same parameters. ``QUANT_ID = 1`` (float64
   ``np.exp`` + :func:`quantize_probs`) could differ by one ulp between CPUs (SIMD ``exp`` kernels) and is gone.
3. **Per-tile scale offsets** (``pixeltok.compression.adapt``): the encoder picks, per tile and coded channel, one
   of ``NUM_SCALE_OFFSETS`` offsets (multiples of 1/8) added to every log_s before step 2 (exact), and sends the
   indices first in the tile's stream.
4. **Range coding** (``CODER_ID = 3``): ``constriction.stream.queue.RangeEncoder`` (32-bit words, 24-bit
   precision): the offset indices (one per coded channel) with ``constriction.stream.model.Uniform(NUM_SCALE_OFFSETS)``,
   then the sub-pixels with ``constriction.stream.model.Categorical(perfect=False)`` fed the integer tables as float64
   (exact). One independent stream per tile; within a tile, symbols go in *wavefront* order: step ``t`` holds the
   pixels with ``x + slope * y == t`` (ascending ``y``), and each step codes all its R values, then G, then B.
   Streams shorter than ``format.min_stream_bytes`` (one word per 1024 pixels) are padded with zero words.
   **Grayscale** (``channels=1``): only the first channel is coded, with head 0 (R), whose inputs are the causal
   neighbourhood with R = G = B = the gray value and none of the current pixel's sub-pixels: G and B are the coded
   value, so they cost nothing. ``CODER_ID = 2`` (``.ptk`` version 1) coded L images as three channels R = G = B,
   with three offsets; it is still decoded (``channels=3``).

QUANT_ID 2, the exact procedure (a decoder in any language must repeat it bit for bit; ``>>`` is an arithmetic
shift = floor division by a power of two, ``//`` floor division, all values int64 with the bounds noted)::

    Lookup tables (see _integer_tables; SHA-256 pinned in TABLES_SHA256 and checked when first built):
      X(x0, s, n, b)[i] = exp(x0 - i*s) * 2**b, i < n, by the exact integer recurrence
          E_0 = rnd(exp(x0) * 2**96), c = rnd(exp(-s) * 2**96), E_{i+1} = (E_i * c) >> 96,
          entry_i = ((E_i >> (95 - b)) + 1) >> 1
        (rnd = round half even of Python decimal's correctly rounded exp, 60 digits; everything after is integer)
      EXP_LO = X(0, 2**-14, 128, 24)                 fine steps of exp(-x), x < 2**-7        (<= 2**24)
      INV_HI = X(7, 2**-7, 1921, 27)                 exp(7 - a/128), a = 0..1920              (<= 2**37.1)
      W_HI   = X(0, 2**-7, 2816, 30) + [0]           exp(-a/128), a < 22*128; 0 beyond       (<= 2**30)
      SIG[i], i = 0..11264: sigmoid((i - 5632) / 256) * 2**30; for i >= 5632, with E the raw recurrence value
          E_{i-5632} of X(0, 2**-8, ., .) (E_0 = 2**96): SIG[i] = (2**127 + 2**96 + E) // (2 * (2**96 + E)),
          and SIG[11264 - i] = 2**30 - SIG[i] (exactly symmetric)
        nondecreasing, SIG[0] = SIG[1] = 0, SIG[11263] = SIG[11264] = 2**30
      DSIG[i] = SIG[i+1] - SIG[i] (DSIG[11264] = 0),   QSIG[i] = (SIG[i] - DSIG[i] * i) << 16

    Per sub-pixel, params (3, K) -> q = rint(clip(params * 2**14, -2**40, 2**40))    (exact for exact_head output)
      lq = q[0];  mq = clip(q[1], -2**24, 2**24)  (|mu| <= 1024);  sq = clip(q[2], -7 * 2**14, 8 * 2**14)
    inverse scale, Q27:  u = sq + 7 * 2**14;  inv = (INV_HI[u >> 7] * EXP_LO[u & 127]) >> 24     (<= 2**37.1)
    weights, sum 2**32:  d = min(max(lq) - lq, 22 * 2**14);  w = (W_HI[d >> 7] * EXP_LO[d & 127]) >> 24
                         W = (w << 32) // sum(w);  W[first argmax W] += 2**32 - sum(W)
    edge argument, Q24:  A = (((-16256 - mq) * inv) >> 17) + 22 * 2**24   (|.| * inv < 2**61.2; -16256 = edge 1
                         in Q14, edges e_j = (2j - 256)/256, j = 1..255, bin j-1 | j),  B = (128 * inv) >> 17
                         t_jk = A_k + (j - 1) * B_k                       (t_jk / 2**24 - 22 ~ (e_j - mu) / s)
    sigmoid, Q30:        i = clip(t >> 16, 0, 11264);  sig_jk = (QSIG[i] + DSIG[i] * t) >> 16
                         (= linear interpolation in SIG, step 1/256; monotone in t; exact 0 / 2**30 saturation)
    CDF, Q38:            C_j = (sum_k W_k * sig_jk) >> 24  (sum <= 2**62),  C_0 = 0,  C_256 = 2**38
    frequencies:         x_j = C_{j+1} - C_j >= 0 (j = 0..255);  f_j = 1 + ((x_j * (2**24 - 256)) >> 38)
                         f[first argmax x] += 2**24 - sum(f)          -> every f_j >= 1, sum exactly 2**24

(rint rounds half to even; the k-sum is of integers, so its order is free.) Bins 0 and 255 take the open tails
(C_0 = 0, C_256 = the total). The log_s range [-7, 8] covers the model's ``min_log_scale = -7``; at log_s = 8
(s = 2981 against the [-1, 1] range) a component is flat over the 256 levels to ~1e-4 relative. The sigmoid step
2**-8 bounds the CDF error by 2e-7 and a bin's relative error by ~2e-4 (wide components, where a bin is narrower
than a table step and gets the chord's slope). That costs nothing measurable: KL(float64 mixture || these
tables) equals that of the 2**-24 grid itself (7.49e-6 bits/sub-pixel on real params), and on 122880 sub-pixels
of scikit-image photos the ideal code length is within 1e-7 (relative) of QUANT_ID 1's. Vectorised over rows
(chunks of 128 rows x 255 edges, one pass per mixture component), it is ~1.5-2x faster than the float64 path.
With numba installed, ``mixture_freqs`` runs the same integer procedure as one compiled pass per row
(``_fast_tables``: saturated edges skipped exactly), ~6x faster on one core; tests check it against the numpy path.

Shapes: tiles are ``(h, w, 3)`` uint8 with ``1 <= h, w <= tile_size`` (for ``channels=1``, R = G = B).
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Context, Decimal

import constriction
import numpy as np
import torch
from tqdm.auto import tqdm
from . import _fast_tables, adapt as adapt_mod
from .format import min_stream_bytes

FREQ_BITS = 24
PROB_BITS = 30  # resolution of the sigmoid table (QUANT_ID 2) / of quantize_probs' float grid
QUANT_ID = 2
NUMERICS_ID = 1
CODER_ID = 3  # 1: no per-tile offsets; 2: three offsets lead each stream, L coded as RGB; 3: one per coded channel
DECODER_IDS = (2, 3)  # coder ids decode_tiles reads (2 = .ptk version 1 files)
TOKEN_ORDER = "wavefront-rgb-interleaved"

# ---- QUANT_ID 2 constants (changing any of them changes the tables: bump QUANT_ID) ---------------------------
PARAM_FRAC_BITS = 14  # params are multiples of 2**-14 (the model's exact_frac_bits)
LOG_S_RANGE = (-7, 8)  # log_s is clamped to this range (min = the model's min_log_scale)
MU_LIMIT_BITS = 24  # |mu| <= 2**24 * 2**-14 = 1024
LOGIT_RANGE = 22  # mixture components below exp(-22) of the strongest one get weight 0
WEIGHT_BITS = 32  # normalised mixture weights sum to 2**32 (Q30 sigmoid * weight sum <= 2**62)
T_BITS = 24  # sigmoid argument fixed point
SIG_STEP_BITS = 8  # sigmoid table step 2**-8
SIG_RANGE = 22  # table covers t in [-22, 22]; sigmoid * 2**30 rounds to 0 / 2**30 beyond +-21.5
CDF_BITS = 38  # CDF total after the final shift (x * 2**24 < 2**62)
_LO_BITS, _INV_BITS, _W_BITS = 24, 27, 30  # fixed points of EXP_LO, INV_HI (exp(-log_s)), W_HI (exp(logit - max))
TABLES_SHA256 = "f67d0c8fdbba43e5b3e8c0ac266454fca68b60c1176a592c22f0e7c9aeee5c30"

_EDGES = (2.0 * np.arange(1, 256, dtype=np.float64) - 256.0) / 256.0  # bin boundaries between levels j-1 and j


def mixture_bin_probs(params: np.ndarray) -> np.ndarray:
    """Float64 reference (QUANT_ID 1, no longer used for coding: ``np.exp`` is not bit-portable across CPUs).

    ``(N, 3, K)`` (logit_pi, mu, log_s) float64 -> ``(N, 256)`` float64 bin probabilities (sum 1 up to rounding).
    """
    logit, mu, log_s = params[:, 0, :], params[:, 1, :], params[:, 2, :]
    K = logit.shape[1]
    m = logit[:, 0].copy()
    for k in range(1, K):
        m = np.maximum(m, logit[:, k])
    w = [np.exp(logit[:, k] - m) for k in range(K)]
    tot = w[0].copy()
    for k in range(1, K):
        tot = tot + w[k]
    cdf = np.zeros((params.shape[0], 255), dtype=np.float64)
    with np.errstate(over="ignore"):
        for k in range(K):
            t = (_EDGES[None, :] - mu[:, k, None]) * np.exp(-log_s[:, k])[:, None]
            cdf = cdf + (w[k] / tot)[:, None] * (1.0 / (1.0 + np.exp(-t)))
    full = np.concatenate([np.zeros((len(cdf), 1)), cdf, np.ones((len(cdf), 1))], axis=1)
    return np.maximum(np.diff(full, axis=1), 0.0)


# ---- QUANT_ID 2: integer tables -------------------------------------------------------------------------------
_FIX = 96  # fixed-point bits of the table recurrences


def _exp_fixed(num: int, den: int) -> int:
    """``round(exp(num / den) * 2**96)``: decimal's ``exp`` is correctly rounded, so this is the same everywhere.

    Every operation names its own 60-digit context: the caller's global decimal context plays no part."""
    ctx = Context(prec=60, rounding=ROUND_HALF_EVEN, Emax=999999, Emin=-999999)
    v = ctx.multiply(ctx.exp(ctx.divide(Decimal(num), Decimal(den))), Decimal(1 << _FIX))  # Decimal(int) is exact
    return int(v.to_integral_value(rounding=ROUND_HALF_EVEN, context=ctx))


def _exp_raw(x0_num: int, step_den: int, n: int) -> list[int]:
    """``E_i ~ exp((x0_num - i) / step_den) * 2**96``, ``i < n``, by the exact recurrence ``E_{i+1} = E_i c >> 96``."""
    e, c = _exp_fixed(x0_num, step_den), _exp_fixed(-1, step_den)
    out = []
    for _ in range(n):
        out.append(e)
        e = (e * c) >> _FIX
    return out


def _exp_series(x0_num: int, step_den: int, n: int, bits: int) -> list[int]:
    """``exp((x0_num - i) / step_den) * 2**bits`` for ``i < n``, rounded half up from :func:`_exp_raw`."""
    return [((e >> (_FIX - bits - 1)) + 1) >> 1 for e in _exp_raw(x0_num, step_den, n)]


@functools.lru_cache(maxsize=None)
def _integer_tables() -> dict[str, np.ndarray]:
    """The QUANT_ID 2 lookup tables (read-only int64), built once (~5 ms) with integer arithmetic only."""
    lo_log_s, hi_log_s = LOG_S_RANGE
    half = SIG_RANGE << SIG_STEP_BITS
    one = 1 << _FIX
    sig_pos = [((one << (PROB_BITS + 1)) + one + e) // ((one + e) << 1)
               for e in _exp_raw(0, 1 << SIG_STEP_BITS, half + 1)]
    sig = np.array([(1 << PROB_BITS) - v for v in sig_pos[:0:-1]] + sig_pos, dtype=np.int64)
    dsig = np.append(np.diff(sig), 0)
    tabs = {
        "exp_lo": np.array(_exp_series(0, 1 << PARAM_FRAC_BITS, 128, _LO_BITS), dtype=np.int64),
        "inv_hi": np.array(_exp_series(-lo_log_s * 128, 128, (hi_log_s - lo_log_s) * 128 + 1, _INV_BITS),
                           dtype=np.int64),
        "w_hi": np.array(_exp_series(0, 128, LOGIT_RANGE * 128, _W_BITS) + [0], dtype=np.int64),
        "sig": sig,
        "dsig": dsig,
        "qsig": (sig - dsig * np.arange(len(sig), dtype=np.int64)) << (T_BITS - SIG_STEP_BITS),
    }
    # the saturation and monotonicity the procedure relies on (clipped indices give exactly 0 / 2**30)
    if not ((dsig >= 0).all() and sig[0] == sig[1] == 0 and sig[-1] == sig[-2] == 1 << PROB_BITS):
        raise RuntimeError("pixeltok.coder: the sigmoid table is not monotone/saturated; the build is broken")
    digest = tables_sha256(tabs)
    if digest != TABLES_SHA256:
        raise RuntimeError(f"pixeltok.coder: integer coding tables have SHA-256 {digest}, expected {TABLES_SHA256}: "
                           "this platform's decimal/integer arithmetic differs; files would not decode elsewhere")
    for t in tabs.values():
        t.setflags(write=False)
    return tabs


def tables_sha256(tabs: dict[str, np.ndarray] | None = None) -> str:
    """SHA-256 over (name, little-endian int64 bytes) of every QUANT_ID 2 table, sorted by name."""
    tabs = _integer_tables() if tabs is None else tabs
    h = hashlib.sha256()
    for name in sorted(tabs):
        h.update(name.encode())
        h.update(tabs[name].astype("<i8").tobytes())
    return h.hexdigest()


def mixture_freqs(params: np.ndarray, chunk: int = 128, fast: bool | None = None) -> np.ndarray:
    """``(N, 3, K)`` (logit_pi, mu, log_s) float64 -> ``(N, 256)`` int64 frequency tables (QUANT_ID 2).

    Every entry >= 1, every row sums to exactly ``2**FREQ_BITS``; a pure integer function of ``params`` rounded to
    the 2**-14 grid (see the module docstring for the procedure), independent of the other rows and of ``chunk``.
    ``fast`` (default: when numba is installed) runs the edge loop as one compiled kernel (``_fast_tables``, same
    integers); ``False`` is the numpy reference.
    """
    if fast is None:
        fast = _fast_tables.AVAILABLE
    if not fast:
        return cdf_to_freqs(mixture_cdf(params, chunk))
    tb = _integer_tables()
    params = np.asarray(params, dtype=np.float64)
    if params.ndim != 3 or params.shape[1] != 3 or params.shape[2] < 1 or not np.isfinite(params).all():
        a0, b0, wn = _edge_terms(params)  # raises the reference's error
    a0, b0, wn = _fast_tables.edge_terms(params, tb, sys.modules[__name__])
    return _fast_tables.freqs(a0, b0, wn, tb["dsig"], tb["qsig"], T_BITS - SIG_STEP_BITS,
                              PROB_BITS + WEIGHT_BITS - CDF_BITS, CDF_BITS, FREQ_BITS)


def cdf_to_freqs(cdf: np.ndarray) -> np.ndarray:
    """``(N, 257)`` int64 CDF (0 .. ``2**CDF_BITS``, nondecreasing) -> ``(N, 256)`` int64 frequencies, each >= 1,
    each row summing to exactly ``2**FREQ_BITS`` (the first largest bin takes the rounding remainder)."""
    x = np.diff(cdf, axis=1)
    f = 1 + ((x * ((1 << FREQ_BITS) - 256)) >> CDF_BITS)
    f[np.arange(len(f)), np.argmax(x, axis=1)] += (1 << FREQ_BITS) - f.sum(axis=1)
    return f


def mixture_cdf(params: np.ndarray, chunk: int = 128) -> np.ndarray:
    """``(N, 3, K)`` params -> ``(N, 257)`` int64 integer CDF ``C`` of the mixture at the bin edges (QUANT_ID 2):
    ``C[:, 0] = 0``, ``C[:, 256] = 2**CDF_BITS``, nondecreasing; bin ``j`` has mass ``C[:, j + 1] - C[:, j]``.

    Rows are processed ``chunk`` at a time (128 rows x 255 edges x int64 stays in cache); the result does not
    depend on it.
    """
    if chunk < 1:
        raise ValueError(f"mixture_cdf: chunk must be >= 1, got {chunk}")
    a0, b0, wn = _edge_terms(params)
    n_rows, K = a0.shape
    tb = _integer_tables()
    fb = T_BITS - SIG_STEP_BITS
    dsig, qsig = tb["dsig"], tb["qsig"]
    j = np.arange(255, dtype=np.int64)

    cdf = np.empty((n_rows, 257), dtype=np.int64)
    cdf[:, 0] = 0
    cdf[:, 256] = 1 << CDF_BITS
    for s in range(0, n_rows, chunk):
        n = min(chunk, n_rows - s)
        acc = np.zeros((n, 255), dtype=np.int64)
        t, idx, v, v2 = (np.empty((n, 255), dtype=np.int64) for _ in range(4))
        for k in range(K):
            if not wn[s:s + n, k].any():  # weight 0 in every row: contributes nothing
                continue
            np.multiply(j[None, :], b0[s:s + n, k, None], out=t)
            t += a0[s:s + n, k, None]
            np.right_shift(t, fb, out=idx)
            np.take(dsig, idx, out=v, mode="clip")  # clip: idx < 0 or > 11264 hits the saturated ends (dsig 0)
            v *= t
            np.take(qsig, idx, out=v2, mode="clip")
            v += v2
            v >>= fb  # sigmoid, Q30
            v *= wn[s:s + n, k, None]
            acc += v
        acc >>= PROB_BITS + WEIGHT_BITS - CDF_BITS
        cdf[s:s + n, 1:256] = acc
    return cdf


def _edge_terms(params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row and component: the sigmoid argument at edge 1 (``A``, offset by ``SIG_RANGE``), its step per edge
    (``B > 0``) and the normalised weight ``W`` (Q32), all int64 ``(N, K)`` -- the first part of QUANT_ID 2."""
    params = np.asarray(params, dtype=np.float64)
    if params.ndim != 3 or params.shape[1] != 3 or params.shape[2] < 1:
        raise ValueError(f"mixture_cdf: params must be (N, 3, K) (logit_pi, mu, log_s) with K >= 1, "
                         f"got shape {params.shape}")
    if not np.isfinite(params).all():
        raise ValueError("mixture_cdf: params contain NaN or inf (the model's exact path never gives them)")
    tb = _integer_tables()
    n_rows, K = params.shape[0], params.shape[2]
    with np.errstate(over="ignore"):  # |params| near the float max: clipped just below
        q = np.rint(np.clip(params * float(1 << PARAM_FRAC_BITS), -2.0 ** 40, 2.0 ** 40)).astype(np.int64)
    lq = q[:, 0]
    mq = np.clip(q[:, 1], -(1 << MU_LIMIT_BITS), 1 << MU_LIMIT_BITS)
    one_q = 1 << PARAM_FRAC_BITS
    u = np.clip(q[:, 2], LOG_S_RANGE[0] * one_q, LOG_S_RANGE[1] * one_q) - LOG_S_RANGE[0] * one_q
    inv = (tb["inv_hi"][u >> 7] * tb["exp_lo"][u & 127]) >> _LO_BITS  # exp(-log_s), Q27, <= 2**37.1
    d = np.minimum(lq.max(axis=1, keepdims=True) - lq, LOGIT_RANGE * one_q)
    w = (tb["w_hi"][d >> 7] * tb["exp_lo"][d & 127]) >> _LO_BITS  # exp(logit - max), Q30
    wn = (w << WEIGHT_BITS) // w.sum(axis=1, keepdims=True)
    rows = np.arange(n_rows)
    wn[rows, np.argmax(wn, axis=1)] += (1 << WEIGHT_BITS) - wn.sum(axis=1)
    shift = PARAM_FRAC_BITS + _INV_BITS - T_BITS
    edge1 = 128 - one_q  # edge between levels 0 and 1, Q14; consecutive edges are 128 apart
    a0 = (((edge1 - mq) * inv) >> shift) + (SIG_RANGE << T_BITS)  # t of edge 1 (< 2**61.2 before the shift),
    # offset so that t >> fb is the SIG index
    b0 = (128 * inv) >> shift  # t step per edge (inv >= exp(-8) * 2**27, so b0 >= 43 > 0)
    return a0, b0, wn


def quantize_probs(p: np.ndarray, freq_bits: int = FREQ_BITS, prob_bits: int = PROB_BITS) -> np.ndarray:
    """``(N, 256)`` float64 -> ``(N, 256)`` int64 frequencies, each >= 1, each row summing to ``2**freq_bits``.

    QUANT_ID 1's quantizer (kept for the float reference): ``x = floor(p * 2**prob_bits + 0.5)``,
    ``f = 1 + x * (2**freq_bits - 256) // sum(x)``, the first maximal ``x`` takes the remainder.
    """
    n_sym = p.shape[1]
    x = np.floor(p * float(2 ** prob_bits) + 0.5).astype(np.int64)
    x[x.sum(axis=1) == 0] = 1  # cannot happen for a normalised p; keeps the division defined
    f = 1 + (x * ((1 << freq_bits) - n_sym)) // x.sum(axis=1, keepdims=True)
    f[np.arange(len(f)), np.argmax(x, axis=1)] += (1 << freq_bits) - f.sum(axis=1)
    return f


def wavefront(h: int, w: int, slope: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decoding steps of an ``h x w`` tile: list of ``(ys, xs)`` int64 arrays (ascending ``y``)."""
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    t = (xs + slope * ys).reshape(-1)
    order = np.lexsort((ys.reshape(-1), t))
    ys, xs, t = ys.reshape(-1)[order], xs.reshape(-1)[order], t[order]
    cuts = np.flatnonzero(np.diff(t)) + 1
    return list(zip(np.split(ys, cuts), np.split(xs, cuts)))


_ENCODE_BATCH_PIXELS = 1 << 16  # pixels per exact forward pass in the encoder (16 tiles of 64x64, 1 of 256x256)
_DECODE_BATCH_PIXELS = 1 << 20  # pixels of canvas per decoding batch (1024 tiles of 32x32, 16 of 256x256)


def _offset_model():
    return constriction.stream.model.Uniform(adapt_mod.NUM_SCALE_OFFSETS)


def _family():
    return constriction.stream.model.Categorical(perfect=False)


def _group_by_shape(tiles: list[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    groups = defaultdict(list)
    for i, t in enumerate(tiles):
        groups[t.shape[:2]].append(i)
    return groups


def coded_channels(mode: str, coder_id: int = CODER_ID) -> int:
    """How many channels a tile stream codes: 3 for RGB; for L, 1 (``CODER_ID`` 3) or 3 (``CODER_ID`` 2)."""
    return 1 if mode == "L" and coder_id >= 3 else 3


@torch.no_grad()
def tile_tables(model, tiles: np.ndarray, adapt: bool = True, channels: int = 3
                ) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Teacher-forced exact tables for same-shape tiles ``(B, h, w, 3)``.

    Returns symbols ``(B, S)`` int32 and frequencies ``(B, S, 256)`` int64 in coding order (``S = channels h w``),
    the wavefront steps, and the per-tile scale-offset indices ``(B, channels)`` (see ``pixeltok.compression.adapt``;
    all ``SCALE_OFFSET_ZERO`` when ``adapt`` is False). One exact forward pass over every pixel of every tile.
    ``channels=1`` codes only the first channel (grayscale tiles, R = G = B: the others are copies).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    b, h, w, _ = tiles.shape
    steps = wavefront(h, w, model.config.wavefront_slope)
    ys = torch.from_numpy(np.concatenate([s[0] for s in steps]))
    xs = torch.from_numpy(np.concatenate([s[1] for s in steps]))
    levels = torch.from_numpy(tiles.astype(np.int64))
    canvas = model.pad_canvas(levels)
    feats = model.gather_context(canvas, ys, xs).reshape(b * len(ys), -1)
    a, hid = model.exact_trunk(feats)
    prev = levels[:, ys, xs, :].reshape(b * len(ys), 3)
    syms = prev.numpy().reshape(b, len(ys), 3)[:, :, :channels]
    # head c only reads sub-pixels < c of the current pixel: head 0 alone never sees the uncoded G and B
    params = np.stack([model.exact_head(c, a, hid, prev) for c in range(channels)], axis=1)  # (B*L, C, 3, K)
    floor = model.config.min_log_scale
    if adapt:
        offs = adapt_mod.choose_scale_offsets(params.reshape(b, len(ys), *params.shape[1:]), syms, floor)
    else:
        offs = np.full((b, channels), adapt_mod.SCALE_OFFSET_ZERO, dtype=np.int64)
    deltas = adapt_mod.scale_offsets(offs)  # (B, C)
    freqs = np.stack([mixture_freqs(adapt_mod.apply_scale_offsets(params[:, c], np.repeat(deltas[:, c], len(ys)), floor))
                      for c in range(channels)], axis=1)
    freqs = freqs.reshape(b, len(ys), channels, 256)
    # coding order: per step, all R of the step's pixels, then G, then B (only R for grayscale)
    idx_pos, idx_ch, start = [], [], 0
    for sy, _ in steps:
        n = len(sy)
        for c in range(channels):
            idx_pos.append(np.arange(start, start + n))
            idx_ch.append(np.full(n, c))
        start += n
    ip, ic = np.concatenate(idx_pos), np.concatenate(idx_ch)
    return syms[:, ip, ic].astype(np.int32), freqs[:, ip, ic, :], steps, offs


def encode_tiles(model, tiles: list[np.ndarray], batch_size: int = 16, progress: bool = False,
                 adapt: bool = True, channels: int = 3) -> tuple[list[bytes], list[float]]:
    """Code every tile into its own range-coder stream. Returns ``(streams, ideal_bits)``.

    Each stream starts with the tile's scale-offset indices, one per coded channel (uniform over
    ``NUM_SCALE_OFFSETS``; ``adapt=False`` sends the neutral offset, for measuring what adaptation buys), then its
    sub-pixels in wavefront order. ``channels=1``: grayscale tiles (R = G = B), only the gray value is coded.

    ``ideal_bits[i]`` is ``-sum log2(f / 2**FREQ_BITS)`` of tile i under the quantized tables (the real stream is
    a few bytes longer: 32-bit words and the coder's flush).
    """
    streams: list[bytes | None] = [None] * len(tiles)
    ideal = [0.0] * len(tiles)
    bar = tqdm(total=len(tiles), desc="compress", unit="tile", disable=not progress)
    for (h, w), idx in _group_by_shape(tiles).items():
        per_batch = max(1, min(batch_size, _ENCODE_BATCH_PIXELS // (h * w)))  # bounds memory; bytes do not change
        for s in range(0, len(idx), per_batch):
            chunk = idx[s:s + per_batch]
            syms, freqs, _, offs = tile_tables(model, np.stack([tiles[i] for i in chunk]), adapt=adapt,
                                               channels=channels)
            for j, i in enumerate(chunk):
                enc = constriction.stream.queue.RangeEncoder()
                enc.encode(offs[j].astype(np.int32), _offset_model())
                enc.encode(syms[j], _family(), freqs[j].astype(np.float64))
                words = enc.get_compressed().astype("<u4").tobytes()
                # zero words decode as the implicit end of stream: the padding bounds the pixels per byte
                streams[i] = words + bytes(max(0, min_stream_bytes(h, w, CODER_ID) - len(words)))
                f_sel = freqs[j][np.arange(len(syms[j])), syms[j]]
                ideal[i] = float(-(np.log2(f_sel.astype(np.float64)) - FREQ_BITS).sum()
                                 + channels * np.log2(adapt_mod.NUM_SCALE_OFFSETS))
            bar.update(len(chunk))
    bar.close()
    return streams, ideal


@torch.no_grad()
def decode_front(model, a, hid, delta_rows: np.ndarray, floor, decs: list, fam, channels: int, n: int,
                 net=None) -> torch.Tensor:
    """Decode one wavefront step: ``n`` pixels from each of ``len(decs)`` streams (rows ``j*n:(j+1)*n`` belong to
    stream ``j``), channel by channel, each channel's tables conditioned on the ones already decoded. ``delta_rows``:
    ``(len(decs) * n, channels)`` scale offsets. ``a, hid``: the reference's exact features and trunk state, or with
    ``net`` (a ``fastnet.FastExactNet``) ``hid`` is ``net.trunk``'s state (same parameters, bit for bit).
    Returns ``(len(decs) * n, 3)`` int64 levels (grey: G = B = R)."""
    rows = len(decs) * n
    prev = np.zeros((rows, 3), dtype=np.int64)
    for c in range(channels):
        if net is None:
            params = model.exact_head(c, a, hid, torch.from_numpy(prev))
        else:
            params = net.head(hid, c, prev)
        f = mixture_freqs(adapt_mod.apply_scale_offsets(params, delta_rows[:, c], floor)).astype(np.float64)
        for j, dec in enumerate(decs):
            prev[j * n:(j + 1) * n, c] = dec.decode(fam, f[j * n:(j + 1) * n])
    if channels == 1:  # grayscale: G = B = the coded value
        prev[:, 1:] = prev[:, :1]
    return torch.from_numpy(prev)


def decode_tiles(model, streams: list[bytes], shapes: list[tuple[int, int]], batch_size: int = 64,
                 progress: bool = False, channels: int = 3, reference: bool = False) -> list[np.ndarray]:
    """Inverse of :func:`encode_tiles`: decodes many same-shape tiles in lock-step (batch over tiles).

    The decoder only ever reads already-decoded pixels (the causal neighbourhood), so its state is the canvas
    itself -- the analogue of a KV cache -- and each wavefront step is one exact forward pass for all tiles.
    Returns ``(h, w, 3)`` uint8 tiles (R = G = B for ``channels=1``). A stream that is not a valid encoding raises
    ``ValueError`` or constriction's ``AssertionError`` (callers map both to a format error). ``reference``: the
    model's own ``exact_trunk``/``exact_head`` instead of ``fastnet`` (same tables, slower).
    """
    from .fastnet import exact_net

    net = exact_net(model, reference)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if len(shapes) != len(streams):
        raise ValueError(f"{len(streams)} streams for {len(shapes)} tile shapes")
    out: list[np.ndarray | None] = [None] * len(streams)
    bar = tqdm(total=len(streams), desc="decompress", unit="tile", disable=not progress)
    groups = defaultdict(list)
    for i, shp in enumerate(shapes):
        groups[tuple(shp)].append(i)
    slope = model.config.wavefront_slope
    fam = _family()
    for (h, w), idx in groups.items():
        steps = wavefront(h, w, slope)
        per_batch = max(1, min(batch_size, _DECODE_BATCH_PIXELS // (h * w)))  # bounds the canvas memory
        for s in range(0, len(idx), per_batch):
            chunk = idx[s:s + per_batch]
            b = len(chunk)
            decs = []
            for i in chunk:
                if len(streams[i]) % 4:
                    raise ValueError(f"tile {i}: stream length {len(streams[i])} is not a multiple of 4")
                decs.append(constriction.stream.queue.RangeDecoder(np.frombuffer(streams[i], dtype="<u4").astype(np.uint32)))
            offs = np.stack([dec.decode(_offset_model(), channels) for dec in decs]).astype(np.int64)  # (b, C)
            deltas = adapt_mod.scale_offsets(offs)
            floor = model.config.min_log_scale
            levels = torch.zeros(b, h, w, 3, dtype=torch.int64)
            canvas = model.pad_canvas(levels)
            c0 = model.config.context_rows
            x0 = max(model.config.context_left, model.config.context_left_current)
            for sy, sx in steps:
                n = len(sy)
                ys, xs = torch.from_numpy(sy), torch.from_numpy(sx)
                feats = model.gather_context(canvas, ys, xs).reshape(b * n, -1)
                if net is None:
                    a, hid = model.exact_trunk(feats)
                else:  # the same integer features as exact_trunk's
                    a, hid = None, net.trunk(torch.round(feats.to(torch.float64) * 2.0 ** net.frac).numpy())
                prev = decode_front(model, a, hid, np.repeat(deltas, n, axis=0), floor, decs, fam, channels, n,
                                    net=net)
                vals = prev.reshape(b, n, 3)
                levels[:, ys, xs, :] = vals
                canvas[:, ys + c0, xs + x0, :3] = (2.0 * vals.to(torch.float64) - 255.0) / 256.0
            for j, i in enumerate(chunk):
                out[i] = levels[j].numpy().astype(np.uint8)
            bar.update(b)
    bar.close()
    return out
