"""Adaptive lossless codec for whole uint8 photos: integer-only context mixing, no trained weights.

Everything adapts while coding and the decoder repeats the encoder's arithmetic exactly (int64 only, no floats in
the modelling path, so the output is bit-identical on every CPU):

* Order: per pixel in raster order, channels G, R, B by default (grayscale: one plane). R and B see the already
  coded G (and R) of the same pixel.
* Prediction (x8 fixed point): 12 sub-predictors -- JPEG-XL's four "self-correcting" ones (gradient W+NE-N and N/W
  corrected by neighbouring true errors), MED, two normalised-LMS predictors on a radius-2 neighbourhood (+ the
  current pixel's G/R minus their neighbours), "difference plane" predictors (G + MED of R-G, ...) and a third
  NLMS on the difference plane, which carry the inter-channel correlation. They are blended with weights
  1 / (sum of their recent errors around the pixel)^2 (JXL's weighted predictor, here with a wider error window),
  then a small NLMS stage (weights per error class) predicts the blend's own error from the neighbours' errors
  and corrects it.
* Residual: r = x - P (P in 0..255) binarised as zero flag, sign, unary bit length of |r|-1 and mantissa bits,
  where values outside 0..255 are never given probability (forced decisions are not coded).
* Each binary decision is predicted by 6 adaptive context tables (16-bit probability + hit count, rate 1/(n+1.5)),
  keyed by channel, tree node and quantised local statistics (error energy, best sub-predictor's error, spread
  of the sub-predictors, fractional part of the prediction, where other predictors point, residuals of the
  pixel's earlier channels); two logistic mixers (weights selected by node, and by node + error class) averaged in
  the stretch domain, then an interpolating APM (SSE) stage.
* Entropy coder: 32-bit carry-less binary arithmetic coder (lpaq1 style) with 16-bit probabilities.

* Per-image parameters (:class:`AdaptiveParams`, 8 bytes via :func:`params_to_bytes`): NLMS steps, mixer rate,
  APM rate and weight, blend exponent, channel order, passed to the kernels as integer arguments. The encoder may
  search them (:func:`choose_params`, "effort max"); ``DEFAULT_PARAMS`` give exactly the original codec's bytes.

The stretch/squash tables are built with exact decimal arithmetic (correctly rounded, machine independent).
"""
from __future__ import annotations

import decimal
import math
from typing import NamedTuple

import numba
import numpy as np

__all__ = ["encode_adaptive", "decode_adaptive", "choose_params", "AdaptiveParams", "DEFAULT_PARAMS", "CANDIDATES",
           "CHANNEL_ORDERS", "PARAM_RANGES", "PARAMS_NBYTES", "PARAMS_VERSION", "params_to_bytes", "params_from_bytes",
           "MAX_PIXELS"]

MAX_PIXELS = 1 << 28  # decode_adaptive refuses larger sizes (a corrupted header must not allocate terabytes)

NODES = 130     # binarisation tree: 0 zero flag, 1 sign, then per sign 8 unary + 7 buckets x 8 mantissa nodes
NS = 12         # sub-predictors
NT = 6          # context tables per decision
NIN = NT + 1    # mixer inputs (+ bias)
LIMIT = 1023    # largest counter count (10-bit field): rate 1/(n + 1.5) settles at ~1/1024
MIX_INIT = 4000  # initial mixer weight (16.16)
LMS4_MU_G = 16000  # NLMS step (/65536) of the fast copy on the first channel
LMS_EPS = 64    # NLMS energy floors (bound the reciprocal: 2^32 / 64 = 2^26)
LMS3_EPS = 256
_TSZ = (32, 64, 96, 196, 64, 484)  # contexts per channel of each table


def _build_tables():
    """squash (d in -2047..2047, 1/256 logit units -> 16-bit p), stretch (its inverse), counter rates, log quantisers,
    reciprocals (the blend weights come from :func:`_blend_table`)."""
    ctx = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)
    sq = np.empty(4095, np.int32)
    for i, d in enumerate(range(-2047, 2048)):
        e = ctx.exp(ctx.divide(decimal.Decimal(-d), decimal.Decimal(256)))
        v = ctx.divide(decimal.Decimal(65536), ctx.add(decimal.Decimal(1), e))
        sq[i] = min(65535, max(1, int(v.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))))
    # stretch at 12-bit resolution (p16 >> 4; bucket centres), inverse of squash as in lpaq1
    st = np.minimum(np.searchsorted(sq, np.arange(8, 65536, 16), side="left") - 2047, 2047).astype(np.int32)
    rt = np.array([(65536 * 2) // (2 * n + 3) for n in range(LIMIT + 1)], np.int32)
    bounds = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
    q16 = np.array([sum(1 for b in bounds if e >= b) for e in range(4096)], np.int32)
    bounds32 = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 19, 22, 26, 30, 35, 41, 48, 56, 65, 76, 88, 102, 118, 137,
                160, 186, 216, 250, 290)
    q32 = np.array([sum(1 for b in bounds32 if e >= b) for e in range(4096)], np.int32)
    rc = np.array([(1 << 32) // max(n, 1) for n in range(4096)], np.int64)
    return sq, st, rt, q16, q32, rc


_SQ, _ST, _RT, _Q16, _Q32, _RC = _build_tables()


# ---------------------------------------------------------------------------------------------------------------
# Per-image parameters. The encoder may pick them per image (choose_params); the caller stores params_to_bytes(p)
# and hands the same AdaptiveParams to the decoder. DEFAULT_PARAMS reproduce the codec's original constants exactly.

PARAMS_VERSION = 1
PARAMS_NBYTES = 8  # version byte + one byte per field

# channel coding orders (image channel coded 1st, 2nd, 3rd); later channels are predicted from earlier ones
CHANNEL_ORDERS = ((1, 0, 2), (1, 2, 0), (0, 1, 2), (0, 2, 1), (2, 1, 0), (2, 0, 1))  # G R B, G B R, R G B, ...


class AdaptiveParams(NamedTuple):
    """Codec tunables, each a small int (one byte of :func:`params_to_bytes`); ranges in ``PARAM_RANGES``.

    lms_mu:        step of the spatial NLMS predictors and the difference-plane one, in units of 100/65536
    lms3_mu:       step of the error-correcting NLMS stage, in units of 10/65536 (its inputs are x8 errors)
    mix_lr:        logistic mixers' learning rate, in units of 1/4
    apm_shift:     APM update rate 2^-apm_shift per unit weight (x128 for a full bucket)
    apm_w:         final p = ((4 - apm_w) * mixer + apm_w * APM) / 4
    blend_exp:     sub-predictor blend weight 1 / err^(blend_exp / 2)
    channel_order: index into ``CHANNEL_ORDERS`` (ignored for grayscale)
    """
    lms_mu: int = 48
    lms3_mu: int = 30
    mix_lr: int = 16
    apm_shift: int = 13
    apm_w: int = 3
    blend_exp: int = 4
    channel_order: int = 0


DEFAULT_PARAMS = AdaptiveParams()

# inclusive ranges; the bounds keep every int64 product in the kernel far from overflow:
#   NLMS: |err| < 2^12, mu <= 25500 < 2^15, reciprocal <= 2^32 / LMS_EPS = 2^26  -> < 2^53 before the shift
#   error stage: 2^12 * 2550 * 2^24 < 2^48; mixer: |err| <= 2^16 * 64 / 4 = 2^20, x |stretch| 2^11 -> 2^31
#   APM: shift >= 7 never overshoots (the bucket weight is <= 128); blend: weights <= 2^34, x 2^12 x 12 < 2^50
PARAM_RANGES = {"lms_mu": (1, 255), "lms3_mu": (1, 255), "mix_lr": (1, 64), "apm_shift": (7, 16), "apm_w": (0, 4),
                "blend_exp": (2, 6), "channel_order": (0, len(CHANNEL_ORDERS) - 1)}


def _check_params(p) -> AdaptiveParams:
    if not isinstance(p, AdaptiveParams):
        raise ValueError(f"params must be AdaptiveParams, got {type(p).__name__}")
    for name, v in zip(p._fields, p):
        lo, hi = PARAM_RANGES[name]
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"AdaptiveParams.{name} = {v!r} is outside {lo}..{hi}")
    return p


def params_to_bytes(p: AdaptiveParams) -> bytes:
    """``PARAMS_NBYTES`` bytes: ``PARAMS_VERSION`` then one byte per field in declaration order."""
    _check_params(p)
    return bytes([PARAMS_VERSION, *(int(v) for v in p)])


def params_from_bytes(b: bytes) -> AdaptiveParams:
    """Inverse of :func:`params_to_bytes`; ``ValueError`` (naming the field and value) for anything invalid."""
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise ValueError(f"params must be bytes, got {type(b).__name__}")
    b = bytes(b)
    if len(b) != PARAMS_NBYTES:
        raise ValueError(f"params must be {PARAMS_NBYTES} bytes, got {len(b)}")
    if b[0] != PARAMS_VERSION:
        raise ValueError(f"unknown params version {b[0]} (this codec reads version {PARAMS_VERSION})")
    return _check_params(AdaptiveParams(*b[1:]))


_W2_CACHE: dict[int, np.ndarray] = {}


def _blend_table(blend_exp: int) -> np.ndarray:
    """(4096,) int64: 2^38 // (e^(blend_exp / 2) + 16), exact integers (isqrt for odd ``blend_exp``); larger errors
    use the entry of e >> 6, shifted down (``_kernel_args``)."""
    if blend_exp not in _W2_CACHE:
        _W2_CACHE[blend_exp] = np.array([(1 << 38) // (math.isqrt(e ** blend_exp) + 16) for e in range(4096)],
                                        np.int64)
    return _W2_CACHE[blend_exp]


# choose_params' default list, from one-at-a-time and pairwise sweeps on bands of the skimage photos (whole and 2x
# downscaled). _SLOW (slower APM, APM weight 2/4, slower mixers, faster error stage) beat the defaults by ~0.2% on
# every photo; the others add what varied most per image: NLMS step, blend exponent, channel order.
_SLOW = DEFAULT_PARAMS._replace(apm_shift=14, apm_w=2, mix_lr=12, lms3_mu=42)
CANDIDATES = (
    DEFAULT_PARAMS,
    _SLOW,
    _SLOW._replace(lms_mu=96),
    _SLOW._replace(blend_exp=5),
    _SLOW._replace(lms3_mu=60, blend_exp=5),
    _SLOW._replace(channel_order=3),               # R B G
    _SLOW._replace(lms_mu=96, channel_order=1),    # G B R
    _SLOW._replace(blend_exp=5, channel_order=1),
)


def _kernel_args(p: AdaptiveParams, channels: int) -> tuple:
    """The trailing ``_kernel`` arguments for ``p``: order, blend table + shift and the scaled tunables."""
    order = np.array(CHANNEL_ORDERS[p.channel_order] if channels == 3 else (0,), np.int64)
    # e >= 4096 uses the entry of e >> 6 divided by 64^(blend_exp / 2) = 2^(3 blend_exp)
    return (_blend_table(p.blend_exp), order, 3 * p.blend_exp, 100 * p.lms_mu, 10 * p.lms3_mu, p.mix_lr,
            p.apm_shift, p.apm_w)


@numba.njit(cache=True, nogil=True)
def _qs(r):
    """Signed residual -> 0..6 (0, 1-2, 3-7, 8+ each sign)."""
    a = r if r >= 0 else -r
    q = 0 if a == 0 else (1 if a <= 2 else (2 if a <= 7 else 3))
    return 3 + q if r >= 0 else 3 - q


@numba.njit(cache=True, nogil=True)
def _qd(d):
    """Signed offset in x8 units -> 0..10."""
    a = d if d >= 0 else -d
    q = 0 if a < 4 else (1 if a < 8 else (2 if a < 16 else (3 if a < 32 else (4 if a < 64 else 5))))
    return 5 + q if d >= 0 else 5 - q


@numba.njit(cache=True, nogil=True)
def _med(n, w, nw):
    mx = n if n > w else w
    mn = n if n < w else w
    m = n + w - nw
    return mx if m > mx else (mn if m < mn else m)


@numba.njit(cache=True, nogil=True)
def _bitlen(v):
    n = 0
    while v > 0:
        v >>= 1
        n += 1
    return n


@numba.njit(cache=True, nogil=True, inline="always")
def _bit(bit, node, dec, ctxb, PR, MW, msel, MW2, msel2, AP, actx, cs, buf, SQ, ST, RT, stv, mix_lr, apm_shift,
         apm_w):
    """Model + code one binary decision (encoder: ``bit`` given; decoder: returned).

    ``mix_lr`` (mixer step, 1/4 units), ``apm_shift`` and ``apm_w`` are :class:`AdaptiveParams` tunables."""
    dot = 0
    dot2 = 0
    for t in range(NT):
        s = ST[PR[ctxb[t] + node] >> 14]
        stv[t] = s
        dot += MW[msel + t] * s
        dot2 += MW2[msel2 + t] * s
    stv[NT] = 256
    dot = (dot + MW[msel + NT] * 256) >> 16
    dot2 = (dot2 + MW2[msel2 + NT] * 256) >> 16
    dot = min(2047, max(-2047, dot))
    dot2 = min(2047, max(-2047, dot2))
    pm1 = SQ[dot + 2047]
    pm2 = SQ[dot2 + 2047]
    dot = (dot + dot2) >> 1
    pm = SQ[dot + 2047]
    pos = dot + 2048  # APM: interpolate between 33 buckets over the stretch domain
    j = pos >> 7
    wt = pos & 127
    ai = actx * 33 + j
    pa = (AP[ai] * (128 - wt) + AP[ai + 1] * wt) >> 7
    p = (pm * (4 - apm_w) + pa * apm_w) >> 2
    p = min(65535 - 24, max(24, p))
    # arithmetic coder, p = P(bit = 1) / 65536
    x1 = cs[0]
    x2 = cs[1]
    rng = x2 - x1
    xmid = x1 + (rng >> 16) * p + (((rng & 0xFFFF) * p) >> 16)
    if dec:
        bit = 1 if cs[2] <= xmid else 0
    if bit:
        x2 = xmid
    else:
        x1 = xmid + 1
    while ((x1 ^ x2) & 0xFF000000) == 0:
        pp = cs[3]
        if dec:
            b = buf[pp] if pp < buf.shape[0] else 0  # past the end: zeros (length checked by the caller)
            cs[2] = ((cs[2] << 8) & 0xFFFFFFFF) | b
        elif pp < buf.shape[0]:
            buf[pp] = x2 >> 24
        cs[3] = pp + 1
        x1 = (x1 << 8) & 0xFFFFFFFF
        x2 = ((x2 << 8) & 0xFFFFFFFF) | 255
    cs[0] = x1
    cs[1] = x2
    # updates: mixers (each on its own output), APM (both buckets), counters
    g = bit << 16
    err = ((g - pm1) * mix_lr) >> 2  # |err| < 2^20, |stv * err| < 2^31
    err2 = ((g - pm2) * mix_lr) >> 2
    for t in range(NIN):
        MW[msel + t] = min(4000000, max(-4000000, MW[msel + t] + ((stv[t] * err) >> 16)))
        MW2[msel2 + t] = min(4000000, max(-4000000, MW2[msel2 + t] + ((stv[t] * err2) >> 16)))
    AP[ai] += ((g - AP[ai]) * (128 - wt)) >> apm_shift  # apm_shift >= 7: never overshoots g
    AP[ai + 1] += ((g - AP[ai + 1]) * wt) >> apm_shift
    for t in range(NT):
        i = ctxb[t] + node
        v = PR[i]
        n = v & 1023
        pr = v >> 10
        pr = min(65535, max(1, pr + (((g - pr) * RT[n]) >> 16)))
        if n < LIMIT:
            n += 1
        PR[i] = (pr << 10) | n
    return bit


@numba.njit(cache=True, nogil=True, inline="always")
def _recip(n, RC):
    """~2^32 / n for 1 <= n < 2^30 from a 4096-entry table (relative error < 1.6%), instead of a division."""
    if n < 4096:
        return RC[n]
    if n < (1 << 18):
        return RC[n >> 6] >> 6
    if n < (1 << 24):
        return RC[n >> 12] >> 12
    return RC[min(4095, n >> 18)] >> 18


@numba.njit(cache=True, nogil=True)
def _clamp8(v):
    return min(3072, max(-1024, v))


@numba.njit(cache=True, nogil=True, inline="always")
def _nlms_step(W, k, inputs, n, g):
    """One normalised-LMS update of weight set ``W[k, :n]``: ``+= g * inputs / 2^16`` rounded, clamped to 2^18."""
    for j in range(n):
        W[k, j] = min(262144, max(-262144, W[k, j] + ((g * inputs[j] + 32768) >> 16)))


@numba.njit(cache=True, nogil=True)
def _kernel(img, dec, buf, SQ, ST, RT, Q16, Q32, RC, W2, order, w2_shift, lms_mu, lms3_mu, mix_lr, apm_shift,
            apm_w, rows_done):
    """Encode ``img`` (H, W, C) uint8 into ``buf`` (dec=False) or decode ``buf`` into ``img`` (dec=True).

    ``order`` (C,) int64: image channel coded k-th; ``W2`` (4096,) blend weight table with its large-error shift
    ``w2_shift``; the rest are the integer tunables of :class:`AdaptiveParams`, already scaled (see
    ``_kernel_args``).

    Returns the number of payload bytes written (may exceed ``buf`` size: then nothing past it was written) or
    consumed by the decoder (4 bytes of read-ahead included, so a consistent payload gives exactly its length).
    """
    H, W, C = img.shape
    PW = W + 4  # 2 columns of padding either side
    # 3-row rings (row y at (y + 2) % 3): memory O(W), the decoder never holds more than the causal rows
    V = np.zeros((C, 3, PW), np.int32)        # pixel values
    TE = np.zeros((C, 3, PW), np.int32)       # blend's true error P8 - 8x
    AE = np.zeros((C, 3, PW), np.int32)       # |final residual|
    RS = np.zeros((C, 3, PW), np.int32)       # final residual
    ER = np.zeros((C, 3, PW, NS), np.int32)   # |sub-prediction error| (x8)
    EA = np.zeros((C, PW, NS), np.int32)      # rows y-1, y-2 part of the blend's error window
    toff = np.zeros(NT + 1, np.int64)
    for t in range(NT):
        toff[t + 1] = toff[t] + _TSZ[t] * C * NODES
    PR = np.full(toff[NT], 32768 << 10, np.int32)   # packed: 16-bit probability << 10 | count
    MW = np.full(C * NODES * NIN, MIX_INIT, np.int32)
    MW2 = np.full(C * 16 * NODES * NIN, MIX_INIT, np.int32)
    NA = C * NODES * 4
    AP = np.empty(NA * 33, np.int32)
    for a in range(NA):
        for j in range(33):
            AP[a * 33 + j] = SQ[min(2047, (j - 16) * 128) + 2047]
    NL = 24
    LW = np.zeros((C, NL), np.int64)   # LMS weights, Q14
    LW2 = np.zeros((C * 4, NL), np.int64)  # 4 weight sets per channel: edge direction x energy
    LW3 = np.zeros((C * 16, 12), np.int64)  # 16 sets: best sub-predictor's error x spread
    LW4 = np.zeros((C, NL), np.int64)
    l4 = np.zeros(NL, np.int64)
    ld = np.zeros(NL, np.int64)
    l3 = np.zeros(12, np.int64)
    ctxb = np.zeros(NT, np.int64)
    stv = np.zeros(NIN, np.int64)
    s = np.zeros(NS, np.int64)
    wa = np.zeros(NS, np.int64)
    cs = np.zeros(4, np.int64)  # x1, x2, x (decoder), byte position
    cs[1] = 0xFFFFFFFF
    if dec:
        for i in range(4):
            cs[2] = (cs[2] << 8) | (buf[i] if i < buf.shape[0] else 0)
        cs[3] = 4
    gc = 0
    rc = 0
    for y in range(H):
        rows_done[0] = y  # read by another thread for a progress bar (the kernel runs without the GIL)
        yy = y + 2
        r0 = yy % 3
        r1 = (yy - 1) % 3
        r2 = (yy - 2) % 3
        if y > 0:  # left padding of this row := N of its first pixel, right padding of the row above := its last
            for k in range(C):
                for arr in (V, TE, AE, RS):
                    arr[k, r0, 0] = arr[k, r1, 2]
                    arr[k, r0, 1] = arr[k, r1, 2]
                    arr[k, r1, W + 2] = arr[k, r1, W + 1]
                    arr[k, r1, W + 3] = arr[k, r1, W + 1]
                for i in range(NS):
                    ER[k, r0, 0, i] = ER[k, r1, 2, i]
                    ER[k, r0, 1, i] = ER[k, r1, 2, i]
                    ER[k, r1, W + 2, i] = ER[k, r1, W + 1, i]
                    ER[k, r1, W + 3, i] = ER[k, r1, W + 1, i]
        for k in range(C):  # the rows above are complete: their part of every pixel's error window, once per row
            for xx in range(2, W + 2):
                for i in range(NS):
                    EA[k, xx, i] = (2 * (ER[k, r1, xx - 1, i] + ER[k, r1, xx, i] + ER[k, r1, xx + 1, i])
                                    + ER[k, r1, xx + 2, i] + ER[k, r2, xx - 1, i] + ER[k, r2, xx, i]
                                    + ER[k, r2, xx + 1, i])
        for x in range(W):
            xx = x + 2
            for k in range(C):
                c = order[k]
                if y == 0:  # first row: every pixel above is "W" (first pixel: 128, or this pixel's G)
                    wv = V[k, r0, xx - 1] if x > 0 else (V[0, r0, xx] if k > 0 else 128)
                    for dx in range(-1, 3):
                        V[k, r1, xx + dx] = wv
                        V[k, r2, xx + dx] = wv
                    if x == 0:
                        V[k, r0, xx - 1] = wv
                        V[k, r0, xx - 2] = wv
                Nv = V[k, r1, xx]
                Wv = V[k, r0, xx - 1]
                NWv = V[k, r1, xx - 1]
                NEv = V[k, r1, xx + 1]
                NNv = V[k, r2, xx]
                WWv = V[k, r0, xx - 2]
                NNEv = V[k, r2, xx + 1]
                teN = TE[k, r1, xx]
                teW = TE[k, r0, xx - 1]
                teNW = TE[k, r1, xx - 1]
                teNE = TE[k, r1, xx + 1]
                # ---- sub-predictors (x8); 1..3 are JPEG-XL's error-corrected ones
                s[0] = 8 * (Wv + NEv - Nv)
                s[1] = _clamp8(8 * Nv - (((teW + teN + teNE) * 16) >> 5))
                s[2] = _clamp8(8 * Wv - (((teW + teN + teNW) * 10) >> 5))
                s[3] = _clamp8(8 * Nv - (((teNW + teN + teNE) * 7) >> 5))
                s[5] = 8 * _med(Nv, Wv, NWv)
                # NLMS inputs: neighbours minus a local reference (+ current G/R minus their neighbours)
                ref = (Nv + Wv + 1) >> 1
                ld[0] = Nv - ref
                ld[1] = Wv - ref
                ld[2] = NWv - ref
                ld[3] = NEv - ref
                ld[4] = NNv - ref
                ld[5] = WWv - ref
                ld[6] = NNEv - ref
                ld[7] = V[k, r1, xx - 2] - ref
                ld[8] = V[k, r2, xx - 1] - ref
                ld[9] = V[k, r1, xx + 2] - ref
                nl = 10
                if k > 0:
                    gc = V[0, r0, xx]
                    ld[10] = gc - V[0, r1, xx]
                    ld[11] = gc - V[0, r0, xx - 1]
                    nl = 12
                    dN = Nv - V[0, r1, xx]
                    dW = Wv - V[0, r0, xx - 1]
                    s[6] = 8 * gc + 4 * (dW + dN)
                    s[7] = 8 * gc + 8 * _med(dN, dW, NWv - V[0, r1, xx - 1])
                    s[8] = 8 * (gc + dW + (NEv - V[0, r1, xx + 1]) - dN)
                    if k > 1:
                        rc = V[1, r0, xx]
                        ld[12] = rc - V[1, r1, xx]
                        ld[13] = rc - V[1, r0, xx - 1]
                        nl = 14
                        s[9] = 8 * rc + 8 * _med(Nv - V[1, r1, xx], Wv - V[1, r0, xx - 1],
                                                 NWv - V[1, r1, xx - 1])
                    else:
                        s[9] = 8 * (gc + dN)
                else:
                    s[6] = 4 * (Wv + NEv)
                    s[7] = 4 * (Nv + NEv)
                    s[8] = 8 * (Nv + NEv - NNEv)
                    s[9] = 8 * (Nv + Wv - NWv)
                acc = 0
                en = LMS_EPS
                for j in range(nl):
                    acc += LW[k, j] * ld[j]
                    en += ld[j] * ld[j]
                lp = min(2840, max(-800, 8 * ref + (acc >> 11)))
                s[4] = lp
                n2 = nl  # second LMS: same inputs + a few more, weights chosen by edge direction and energy
                dh = abs(Wv - WWv) + abs(Nv - NWv) + abs(NEv - Nv)
                dv = abs(Wv - NWv) + abs(Nv - NNv) + abs(NEv - NNEv)
                ee = (2 * AE[k, r0, xx - 1] + 2 * AE[k, r1, xx] + AE[k, r1, xx - 1] + AE[k, r1, xx + 1]
                      + AE[k, r0, xx - 2] + AE[k, r2, xx])
                kl = k * 4 + (2 if dh > dv else 0) + (1 if ee >= 24 else 0)
                ld[n2] = V[k, r2, xx - 2] - ref
                ld[n2 + 1] = V[k, r2, xx + 2] - ref
                n2 += 2
                if k > 0:
                    ld[n2] = gc - V[0, r1, xx - 1]
                    ld[n2 + 1] = gc - V[0, r1, xx + 1]
                    n2 += 2
                    if k > 1:
                        ld[n2] = rc - V[1, r1, xx - 1]
                        ld[n2 + 1] = rc - V[1, r1, xx + 1]
                        n2 += 2
                acc = 0
                en2 = en
                for j in range(n2):
                    acc += LW2[kl, j] * ld[j]
                for j in range(nl, n2):
                    en2 += ld[j] * ld[j]
                lp2 = min(2840, max(-800, 8 * ref + (acc >> 11)))
                s[10] = lp2
                # third LMS: on the difference plane X - G for R and B (colour is locally constant); on G a
                # faster-adapting copy of the first one
                if k > 0:
                    G = V[0]
                    dNn = Nv - G[r1, xx]
                    dWn = Wv - G[r0, xx - 1]
                    rd = (dNn + dWn + 1) >> 1
                    l4[0] = dNn - rd
                    l4[1] = dWn - rd
                    l4[2] = NWv - G[r1, xx - 1] - rd
                    l4[3] = NEv - G[r1, xx + 1] - rd
                    l4[4] = NNv - G[r2, xx] - rd
                    l4[5] = WWv - G[r0, xx - 2] - rd
                    l4[6] = NNEv - G[r2, xx + 1] - rd
                    l4[7] = gc - G[r1, xx]
                    l4[8] = gc - G[r0, xx - 1]
                    l4[9] = gc - G[r1, xx - 1]
                    l4[10] = gc - G[r1, xx + 1]
                    n4 = 11
                    if k > 1:
                        l4[11] = rc - V[1, r1, xx]
                        l4[12] = rc - V[1, r0, xx - 1]
                        l4[13] = (rc - gc) - rd
                        n4 = 14
                    b4 = 8 * (gc + rd)
                    mu4 = lms_mu
                else:
                    for j in range(10):
                        l4[j] = ld[j]
                    n4 = 10
                    b4 = 8 * ref
                    mu4 = LMS4_MU_G
                acc = 0
                en4 = LMS_EPS
                for j in range(n4):
                    acc += LW4[k, j] * l4[j]
                    en4 += l4[j] * l4[j]
                lp4 = min(2840, max(-800, b4 + (acc >> 11)))
                s[11] = lp4
                # ---- blend, weights 1 / err^2 over a causal window (+ same pixel of the previous channel)
                sw = 0
                sp = 0
                emin = 1 << 40
                ibest = 0
                for i in range(NS):
                    e = EA[k, xx, i] + 2 * (ER[k, r0, xx - 1, i] + ER[k, r0, xx - 2, i])
                    if k > 0:
                        e += ER[k - 1, r0, xx, i]
                    if e < emin:
                        emin = e
                        ibest = i
                    # table, not a division: |sub-prediction error| < 2^13, 15 terms: e < 2^17, e >> 6 < 4096
                    wgt = W2[e] if e < 4096 else (W2[e >> 6] >> w2_shift) + 1
                    wa[i] = wgt
                    sw += wgt
                    sp += wgt * s[i]
                P8 = _clamp8((sp + (sw >> 1)) // sw)
                sd = 0  # weighted spread of the sub-predictors around the blend
                for i in range(NS):
                    e = s[i] - P8
                    sd += wa[i] * (e if e >= 0 else -e)
                sd = min(4095, sd // sw)
                # ---- error-correcting NLMS stage on the neighbours' blend errors
                l3[0] = -teW
                l3[1] = -teN
                l3[2] = -teNW
                l3[3] = -teNE
                l3[4] = -TE[k, r0, xx - 2]
                l3[5] = -TE[k, r2, xx]
                n3 = 6
                if k > 0:
                    l3[6] = -TE[0, r0, xx]
                    n3 = 7
                    if k > 1:
                        l3[7] = -TE[1, r0, xx]
                        n3 = 8
                l3[n3] = -TE[k, r1, xx + 2]
                l3[n3 + 1] = -TE[k, r2, xx - 1]
                l3[n3 + 2] = -TE[k, r2, xx + 1]
                l3[n3 + 3] = -TE[k, r1, xx - 2]
                n3 += 4
                k3 = k * 16 + (Q16[min(4095, emin // 5)] >> 2) * 4 + min(3, Q16[sd] >> 2)
                acc = 0
                en3 = LMS3_EPS
                for j in range(n3):
                    acc += LW3[k3, j] * l3[j]
                    en3 += l3[j] * l3[j]
                P8b = P8 + min(64, max(-64, acc >> 14))
                P = min(255, max(0, (P8b + 4) >> 3))
                frac = (P8b + 4) & 7
                if P8b + 4 < 0 or P8b + 4 > 2047:
                    frac = 4
                # ---- contexts
                aW = AE[k, r0, xx - 1]
                aN = AE[k, r1, xx]
                E1 = min(4095, 2 * aW + 2 * aN + AE[k, r1, xx - 1] + AE[k, r1, xx + 1]
                         + AE[k, r0, xx - 2] + AE[k, r2, xx])
                if k > 0:  # the same pixel's earlier channels: their residual size is the best local scale hint
                    E1 = min(4095, E1 + 4 * (AE[0, r0, xx] if k == 1 else (AE[0, r0, xx] + AE[1, r0, xx]) >> 1))
                q1 = Q16[E1]
                qw = Q16[min(4095, emin // 5)]
                ctxb[0] = toff[0] + (k * 32 + Q32[min(4095, emin // 5)]) * NODES
                if k > 0:
                    ec = AE[0, r0, xx] * 8 if k == 1 else (AE[0, r0, xx] + AE[1, r0, xx]) * 4
                    c1 = (Q16[min(4095, ec)] >> 1) * 8 + (q1 >> 1)
                    c3 = _qs(RS[0, r0, xx]) * 7 + (_qs(RS[1, r0, xx]) if k > 1 else 3)
                    c5 = _qd(s[7] - P8) * 11 + _qd(s[6] - P8)
                else:
                    c1 = (Q16[min(aW * 8, 4095)] >> 1) * 8 + (Q16[min(aN * 8, 4095)] >> 1)
                    c3 = _qs(RS[k, r1, xx - 1]) * 7 + _qs(RS[k, r1, xx + 1])
                    c5 = _qd(s[0] - P8) * 11 + _qd(s[5] - P8)
                ctxb[1] = toff[1] + (k * 64 + c1) * NODES
                d4 = s[4] - P8b
                sg = 1 if d4 > 2 else (2 if d4 < -2 else 0)
                ctxb[2] = toff[2] + (k * 96 + (frac * 3 + sg) * 4 + (q1 >> 2)) * NODES
                ctxb[3] = toff[3] + (k * 196 + c3 * 4 + (q1 >> 2)) * NODES
                ctxb[4] = toff[4] + (k * 64 + Q16[sd] * 4 + (q1 >> 2)) * NODES
                ctxb[5] = toff[5] + (k * 484 + c5 * 4 + (q1 >> 2)) * NODES
                msb = k * NODES
                m2b = (k * 16 + qw) * NODES
                asb = (k * NODES) * 4 + (q1 >> 2)
                # ---- code the residual
                r = 0 if dec else np.int64(img[y, x, c]) - P
                nz = _bit(1 if r != 0 else 0, 0, dec, ctxb, PR, MW, msb * NIN, MW2, m2b * NIN, AP, asb,
                          cs, buf, SQ, ST, RT, stv, mix_lr, apm_shift, apm_w)
                if nz:
                    if P == 0:
                        neg = 0
                    elif P == 255:
                        neg = 1
                    else:
                        neg = _bit(1 if r < 0 else 0, 1, dec, ctxb, PR, MW, (msb + 1) * NIN, MW2,
                                   (m2b + 1) * NIN, AP, asb + 4, cs, buf, SQ, ST, RT, stv, mix_lr, apm_shift, apm_w)
                    maxv = (P if neg else 255 - P) - 1  # v = |r| - 1 in [0, maxv]
                    v = (-r if r < 0 else r) - 1
                    nb = 2 + neg * 64
                    kk = 0
                    if maxv > 0:
                        kmax = _bitlen(maxv)
                        kv = _bitlen(v)
                        while kk < kmax:  # unary bit length; the last one is implied
                            nd = nb + kk
                            b = _bit(1 if kk < kv else 0, nd, dec, ctxb, PR, MW, (msb + nd) * NIN, MW2,
                                     (m2b + nd) * NIN, AP, asb + nd * 4, cs, buf, SQ, ST, RT, stv, mix_lr,
                                     apm_shift, apm_w)
                            if not b:
                                break
                            kk += 1
                    vd = 0
                    if kk > 0:
                        vd = 1 << (kk - 1)
                        t = 0
                        for pos in range(kk - 2, -1, -1):  # mantissa, MSB first; bits above maxv are forced 0
                            m = 1 << pos
                            if (vd | m) <= maxv:
                                if t == 0:
                                    ti = 0
                                elif t == 1:
                                    ti = 1 + ((vd >> (pos + 1)) & 1)
                                else:
                                    ti = min(7, t + 1)
                                nd = nb + 8 + (kk - 2) * 8 + ti
                                b = _bit(1 if (v & m) else 0, nd, dec, ctxb, PR, MW, (msb + nd) * NIN, MW2,
                                         (m2b + nd) * NIN, AP, asb + nd * 4, cs, buf, SQ, ST, RT, stv, mix_lr,
                                         apm_shift, apm_w)
                                if b:
                                    vd |= m
                            t += 1
                    r = -(vd + 1) if neg else vd + 1
                xv = P + r  # always in 0..255 by construction, even for a corrupted payload
                if dec:
                    img[y, x, c] = xv
                # ---- updates
                V[k, r0, xx] = xv
                x8 = 8 * xv
                for i in range(NS):
                    e = s[i] - x8
                    ER[k, r0, xx, i] = e if e >= 0 else -e
                TE[k, r0, xx] = P8 - x8
                AE[k, r0, xx] = r if r >= 0 else -r
                RS[k, r0, xx] = r
                # NLMS steps: error * mu / energy, energy's reciprocal from a table (|product| < 2^52)
                _nlms_step(LW3, k3, l3, n3, ((x8 - P8b) * lms3_mu * _recip(en3, RC)) >> 18)
                _nlms_step(LW4, k, l4, n4, ((x8 - lp4) * mu4 * _recip(en4, RC)) >> 21)
                _nlms_step(LW2, kl, ld, n2, ((x8 - lp2) * lms_mu * _recip(en2, RC)) >> 21)
                _nlms_step(LW, k, ld, nl, ((x8 - lp) * lms_mu * _recip(en, RC)) >> 21)
    rows_done[0] = H
    if not dec:  # flush 4 bytes
        x1 = cs[0]
        for i in range(4):
            pp = cs[3]
            if pp < buf.shape[0]:
                buf[pp] = (x1 >> 24) & 255
            cs[3] = pp + 1
            x1 = (x1 << 8) & 0xFFFFFFFF
    return cs[3]


def _as_image(pixels: np.ndarray) -> np.ndarray:
    img = np.asarray(pixels)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"expected (H, W, 3) or (H, W) uint8 pixels, got {img.dtype} array of shape {img.shape}")
    if img.ndim == 2:
        img = img[:, :, None]
    img = np.ascontiguousarray(img)
    # the kernel also writes pixels (when decoding): numba will not compile that for a read-only array (e.g. an
    # image's np.asarray view), so such input is copied
    return img if img.flags.writeable else img.copy()


def _run(img: np.ndarray, dec: bool, buf: np.ndarray, args: tuple, on_rows=None) -> int:
    """One ``_kernel`` pass; with ``on_rows`` it runs in a worker thread (numba releases the GIL) while this thread
    reports the rows done so far, ``on_rows(rows)``, about ten times a second."""
    rows = np.zeros(1, np.int64)
    if on_rows is None:
        return int(_kernel(img, dec, buf, _SQ, _ST, _RT, _Q16, _Q32, _RC, *args, rows))
    import threading

    out = []
    worker = threading.Thread(target=lambda: out.append(_kernel(img, dec, buf, _SQ, _ST, _RT, _Q16, _Q32, _RC,
                                                                *args, rows)), daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
        on_rows(int(rows[0]))
    if not out:
        raise RuntimeError("the adaptive coder's kernel failed")
    return int(out[0])


def _encode(img: np.ndarray, p: AdaptiveParams, on_rows=None) -> bytes:
    """``img`` (H, W, C) contiguous uint8, ``p`` validated -> payload."""
    if img.size == 0:
        return b""
    args = _kernel_args(p, img.shape[2])
    cap = img.size + img.size // 8 + 1024
    buf = np.zeros(cap, np.uint8)
    n = _run(img, False, buf, args, on_rows)
    if n > cap:  # incompressible beyond the bound: code again into a buffer of the exact size
        buf = np.zeros(n, np.uint8)
        n = _run(img, False, buf, args)
    return buf[:n].tobytes()


def encode_adaptive(pixels: np.ndarray, params: AdaptiveParams = DEFAULT_PARAMS, on_rows=None) -> bytes:
    """Losslessly code ``pixels``, a ``(H, W, 3)`` RGB or ``(H, W)`` grayscale uint8 array.

    Returns only the arithmetic-coded payload (the caller stores H, W, the channel count and, unless ``params`` is
    ``DEFAULT_PARAMS``, :func:`params_to_bytes`). Deterministic: the same pixels and params give the same bytes on
    any machine; ``DEFAULT_PARAMS`` give the payload of the codec before params existed. ``on_rows``: called with
    the number of rows coded so far, about ten times a second (a progress bar).
    """
    return _encode(_as_image(pixels), _check_params(params), on_rows)


def choose_params(pixels: np.ndarray, candidates=None, max_sample_pixels: int = 65536) -> AdaptiveParams:
    """Encoder-side search ("effort max"): the candidate whose payload is smallest on a sample of ``pixels``.

    ``candidates``: sequence of AdaptiveParams (default ``CANDIDATES``; ``DEFAULT_PARAMS`` need not be among
    them). The sample is the whole image if it has at most ``max_sample_pixels`` pixels, else a band of full rows
    around the middle (the codec adapts along raster order, so full rows resemble the real run better than small
    tiles). Costs ``len(candidates)`` encodes of the sample. Deterministic: ties go to the earlier candidate.
    """
    img = _as_image(pixels)
    cands = [_check_params(c) for c in (CANDIDATES if candidates is None else candidates)]
    if not cands:
        raise ValueError("candidates is empty")
    if img.size == 0 or len(cands) == 1:
        return cands[0]
    H, W = img.shape[:2]
    rows = max(1, min(H, int(max_sample_pixels) // max(W, 1)))
    y0 = (H - rows) // 2
    sample = np.ascontiguousarray(img[y0:y0 + rows])
    sizes = [len(_encode(sample, c)) for c in cands]
    return cands[int(np.argmin(sizes))]


def decode_adaptive(payload: bytes, height: int, width: int, channels: int,
                    params: AdaptiveParams = DEFAULT_PARAMS, on_rows=None) -> np.ndarray:
    """Decode a payload of :func:`encode_adaptive` (coded with the same ``params``) -> ``(height, width, 3)``
    (channels 3) or ``(height, width)`` (channels 1) uint8.

    Raises ``ValueError`` for bad arguments (also more than ``MAX_PIXELS`` pixels) or a payload whose length does
    not match what the decoder consumed (truncation, trailing bytes, most corruptions). A corrupted payload of the
    right length can decode to a wrong image (add a checksum outside if that matters); the time is always bounded
    (exactly ``height * width * channels`` residuals are decoded). ``on_rows`` as in :func:`encode_adaptive`.
    """
    if isinstance(payload, (bytearray, memoryview)):
        payload = bytes(payload)
    if not isinstance(payload, bytes):
        raise ValueError(f"payload must be bytes, got {type(payload).__name__}")
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    height, width, channels = int(height), int(width), int(channels)
    _check_params(params)
    if height * width > MAX_PIXELS:
        raise ValueError(f"{width}x{height} has more than MAX_PIXELS = {MAX_PIXELS} pixels")
    img = np.zeros((height, width, channels), np.uint8)
    if img.size == 0:
        if payload:
            raise ValueError(f"payload of {len(payload)} bytes for an empty image")
    else:
        if len(payload) < 4:
            raise ValueError(f"payload of {len(payload)} bytes is truncated (a coded image has at least 4)")
        buf = np.frombuffer(payload, np.uint8).copy()
        n = _run(img, True, buf, _kernel_args(params, channels), on_rows)
        if n != len(payload):
            what = "truncated" if n > len(payload) else "corrupted or has trailing bytes"
            raise ValueError(f"payload is {what}: the decoder consumed {n} bytes, the payload has {len(payload)}")
    return img if channels == 3 else np.ascontiguousarray(img[:, :, 0])
