"""A compiled (numba) kernel for the QUANT_ID 2 edge loop of :func:`coder.mixture_cdf` + :func:`coder.cdf_to_freqs`.

Same integer procedure, bit for bit (tests compare it with the numpy path on golden and random parameters): per
row, per mixture component with a non-zero weight, per bin edge ``j``: ``t = A + j B``, ``i = clip(t >> 16, 0,
11264)``, ``sig = (QSIG[i] + DSIG[i] t) >> 16``, ``acc_j += W sig``; then ``C_j = acc_j >> 24`` and the frequencies.
Because ``B > 0`` the edges below ``t = 0`` give exactly ``sig = 0`` (DSIG[0] = QSIG[0] = 0) and those from
``t >> 16 >= 11264`` exactly ``2**30`` (DSIG[11264] = 0), so the loop only visits the edges in between and adds the
saturated constant to the rest (once, as a running sum in the CDF pass): a component a few levels wide costs ~100 edges, not 255. One fused pass per row
instead of ~10 numpy passes over ``(rows, 255)`` int64 arrays (one thread, see :func:`freqs`).

``numba`` is optional: without it ``coder`` uses the numpy path (same tables, several times slower).
"""

from __future__ import annotations

import numpy as np

try:  # pragma: no cover - exercised when numba is installed
    import numba
except ImportError:  # pragma: no cover
    numba = None

AVAILABLE = numba is not None

if AVAILABLE:
    @numba.njit(cache=True, nogil=True)
    def _freqs_kernel(a0, b0, wn, dsig, qsig, fb, sig_last, cdf_shift, cdf_bits, freq_bits, out):
        n, K = a0.shape
        top = np.int64(sig_last) << fb  # t from which t >> fb >= sig_last: saturated at 2**30
        one30 = qsig[sig_last] >> fb
        total_f = np.int64(1) << freq_bits
        scale = total_f - 256
        acc = np.empty(255, dtype=np.int64)
        sat_from = np.empty(256, dtype=np.int64)  # saturated weight added from edge j on (summed in the CDF pass)
        for r in range(n):
            acc[:] = 0
            sat_from[:] = 0
            for k in range(K):
                w = wn[r, k]
                if w == 0:
                    continue
                a = a0[r, k]
                b = b0[r, k]
                # first edge with t >= 0, first edge with t >= top (b > 0: t increases with j)
                if a >= 0:
                    jlo = 0
                else:
                    jlo = min(255, (-a + b - 1) // b)
                if a >= top:
                    jhi = 0
                else:
                    jhi = min(255, (top - a + b - 1) // b)
                jlo = min(jlo, jhi)
                for j in range(jlo, jhi):
                    t = a + j * b
                    i = t >> fb
                    if i > sig_last:
                        i = sig_last
                    v = (qsig[i] + dsig[i] * t) >> fb
                    acc[j] += v * w
                sat_from[jhi] += one30 * w  # the same integer sums as adding it to every edge >= jhi
            # CDF C_0 = 0, C_j = acc_{j-1} >> shift, C_256 = 2**cdf_bits; frequencies as in cdf_to_freqs
            prev = np.int64(0)
            best, best_x = 0, np.int64(-1)
            s = np.int64(0)
            sat = np.int64(0)
            for j in range(256):
                if j < 255:
                    sat += sat_from[j]
                c = ((acc[j] + sat) >> cdf_shift) if j < 255 else (np.int64(1) << cdf_bits)
                x = c - prev
                prev = c
                if x > best_x:
                    best_x = x
                    best = j
                f = 1 + ((x * scale) >> cdf_bits)
                out[r, j] = f
                s += f
            out[r, best] += total_f - s


    @numba.njit(cache=True, nogil=True)
    def _edge_terms_kernel(params, inv_hi, exp_lo, w_hi, frac_bits, log_s_lo, log_s_hi, mu_limit_bits, logit_range,
                           weight_bits, lo_bits, shift, edge1, sig_offset):
        """``coder._edge_terms`` for one call, row by row (the same integer operations, no temporaries)."""
        n, _, K = params.shape
        a0 = np.empty((n, K), dtype=np.int64)
        b0 = np.empty((n, K), dtype=np.int64)
        wn = np.empty((n, K), dtype=np.int64)
        w = np.empty(K, dtype=np.int64)
        lq = np.empty(K, dtype=np.int64)
        one_q = np.int64(1) << frac_bits
        scale = float(one_q)
        lim = 2.0 ** 40
        mu_lim = np.int64(1) << mu_limit_bits
        for r in range(n):
            for k in range(K):
                lq[k] = np.int64(np.rint(min(max(params[r, 0, k] * scale, -lim), lim)))
            m = lq[0]
            for k in range(1, K):
                m = max(m, lq[k])
            tot = np.int64(0)
            for k in range(K):
                d = min(m - lq[k], logit_range * one_q)
                w[k] = (w_hi[d >> 7] * exp_lo[d & 127]) >> lo_bits
                tot += w[k]
            s = np.int64(0)
            best, best_w = 0, np.int64(-1)
            for k in range(K):
                v = (w[k] << weight_bits) // tot
                wn[r, k] = v
                s += v
                if v > best_w:
                    best_w = v
                    best = k
            wn[r, best] += (np.int64(1) << weight_bits) - s
            for k in range(K):
                mq = np.int64(np.rint(min(max(params[r, 1, k] * scale, -lim), lim)))
                mq = min(max(mq, -mu_lim), mu_lim)
                sq = np.int64(np.rint(min(max(params[r, 2, k] * scale, -lim), lim)))
                u = min(max(sq, log_s_lo * one_q), log_s_hi * one_q) - log_s_lo * one_q
                inv = (inv_hi[u >> 7] * exp_lo[u & 127]) >> lo_bits
                a0[r, k] = (((edge1 - mq) * inv) >> shift) + sig_offset
                b0[r, k] = (128 * inv) >> shift
        return a0, b0, wn


def edge_terms(params: np.ndarray, tb: dict, c) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compiled :func:`coder._edge_terms` (``c`` = the coder module, for its constants)."""
    one_q = 1 << c.PARAM_FRAC_BITS
    return _edge_terms_kernel(np.ascontiguousarray(params, dtype=np.float64), tb["inv_hi"], tb["exp_lo"], tb["w_hi"],
                              c.PARAM_FRAC_BITS, c.LOG_S_RANGE[0], c.LOG_S_RANGE[1], c.MU_LIMIT_BITS, c.LOGIT_RANGE,
                              c.WEIGHT_BITS, c._LO_BITS, c.PARAM_FRAC_BITS + c._INV_BITS - c.T_BITS, 128 - one_q,
                              c.SIG_RANGE << c.T_BITS)


def freqs(a0: np.ndarray, b0: np.ndarray, wn: np.ndarray, dsig: np.ndarray, qsig: np.ndarray, fb: int,
          cdf_shift: int, cdf_bits: int, freq_bits: int) -> np.ndarray:
    """One thread: numba's parallel launch (OpenMP layer) resets torch's thread count (OMP_NUM_THREADS=1 became 2,
    oversubscribing a shared machine), and the kernel is ~10% of a pixel's cost next to the network."""
    out = np.empty((a0.shape[0], 256), dtype=np.int64)
    _freqs_kernel(np.ascontiguousarray(a0), np.ascontiguousarray(b0), np.ascontiguousarray(wn), dsig, qsig, fb,
                  len(dsig) - 1, cdf_shift, cdf_bits, freq_bits, out)
    return out

