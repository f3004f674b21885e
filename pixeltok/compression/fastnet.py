"""Fast exact inference: :meth:`PixelContextCodecModel.exact_trunk_int` + :meth:`~PixelContextCodecModel.exact_head`
regrouped into a few large matrix products per wavefront step, bit for bit the same parameters.

Why it is the same: in the reference every pre-activation ``z = x @ Wq`` is a sum of integer products whose partial
sums stay below 2**53, so ``z`` is *the* exact integer, whatever order BLAS adds the terms in. Any other grouping of
the same terms whose partial sums also stay below 2**53 gives the same integer, and the post-ops (``floor(z *
2**-e) + b``, clamp, relu, ``/ 2**14``, the log-scale floor) are the same float64 operations on the same values.
:class:`FastExactNet` checks that bound from the weights when it is built (else callers use the reference path).

The regrouping (the reference does 4 + 3 x 3 products per step, the heads with 18 output columns):

* the raw features feed both the trunk and the three linear skips: one product ``a @ [W_in | W_skip0..2]``;
* head ``c`` sees ``cat([h, prev[:, :c]])``: the ``h`` part of all three heads is one product ``h @ [W_hin0..2]``
  done before anything is decoded; the ``c`` coded sub-pixels add ``c`` exact rank-1 terms when they are known;
* only ``g @ W_out`` (192 x 18) is left per channel.

The products run in float64 (exact, see above), or -- ``int8`` backend, when ``torch._int_mm`` is there and passes
a self-test -- as int8 digit products: ``x = sum_i 256**i x_i`` and ``W = sum_j 256**j W_j`` with balanced digits in
``[-128, 127]`` (3 digits each for 25-bit activations and 20-bit weights), ``x @ W = sum_ij 256**(i+j) (x_i @ W_j)``,
each digit product summed exactly in int32 (``|.| <= K * 2**14``) and recombined exactly in int64. On AVX-512 VNNI
int8 products run ~15x faster than float64 ones, so the 9 digit products cost about half the float64 product.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

try:  # optional, as for the tables (``_fast_tables``): fuses the digit split and recombination
    import numba
except ImportError:  # pragma: no cover
    numba = None

_EXACT_LIMIT = 2.0 ** 53  # float64 integers are exact below this


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


class _Layer:
    """One exact linear layer's integer weights ``W`` ``(in, out)`` float64, per-column ``inv = 2**-e`` and ``b``."""

    def __init__(self, qw):
        wq_t, inv, bq = qw
        self.w, self.inv, self.b = _np(wq_t), _np(inv), _np(bq)

    def cols(self, sl: slice) -> "_Layer":
        out = _Layer.__new__(_Layer)
        out.w, out.inv, out.b = self.w[:, sl], self.inv[sl], self.b[sl]
        return out


def _digits(x: np.ndarray) -> list[np.ndarray]:
    """int64 ``x`` -> balanced base-256 digits ``d_i`` in ``[-128, 127]`` (``x = sum 256**i d_i``), low first."""
    out = []
    while True:
        d = ((x + 128) & 255) - 128
        out.append(d)
        x = (x - d) >> 8
        if not x.any():
            return out


@functools.lru_cache(maxsize=None)
def int8_available() -> bool:
    """``torch._int_mm`` (int8 x int8 -> int32) exists and sums exactly here: random and extreme digits (all
    -128: products 2**14, which a saturating int16 kernel would clip) against numpy's int64 product."""
    if not hasattr(torch, "_int_mm"):
        return False
    rng = np.random.default_rng(0)
    try:
        for m, k, n in [(1, 8, 8), (2, 1, 3), (37, 384, 40), (64, 203, 18), (100, 386, 200)]:
            a, b = rng.integers(-128, 128, (m, k)), rng.integers(-128, 128, (k, n))
            a[0], b[:, 0] = -128, -128
            a[-1, ::2], b[::2, -1] = 127, -128
            got = torch._int_mm(torch.from_numpy(a.astype(np.int8)), torch.from_numpy(b.astype(np.int8)))
            if got.dtype != torch.int32 or not np.array_equal(got.numpy().astype(np.int64), a @ b):
                return False
    except Exception:  # no CPU kernel in this torch build, or shape limits
        return False
    return True


class _Int8Weights:
    """Integer weights ``(K, N)`` as int8 digit planes side by side, ``(K, digits * N)``, for one ``_int_mm``."""

    def __init__(self, w: np.ndarray):
        planes = _digits(w.astype(np.int64))
        self.n, self.nd = w.shape[1], len(planes)
        self.w8 = torch.from_numpy(np.ascontiguousarray(np.concatenate(planes, axis=1).astype(np.int8)))
        if w.shape[0] * 2 ** 14 >= 2 ** 31:  # a digit product's sum must fit int32
            raise ValueError("inner dimension too large for int32 digit sums")


if numba is not None:
    @numba.njit(cache=True, nogil=True)
    def _nb_digits(x, scale):  # pragma: no cover - compiled
        """Balanced base-256 digit planes of ``x / scale`` (float64 integers), per row only as many as its largest
        entry needs (``L`` digits hold ``[-128 S, 127 S]``, ``S = (256**L - 1) / 255``): int8 ``(R, K)``, the
        planes of row ``i`` consecutive, and ``nd`` the planes of each row."""
        m, k = x.shape
        nd = np.empty(m, dtype=np.int64)
        for i in range(m):
            hi, lo = 0.0, 0.0
            for j in range(k):
                hi = max(hi, x[i, j])
                lo = min(lo, x[i, j])
            hi, lo = hi / scale, lo / scale
            n_d, span = 1, 1.0
            while hi > 127.0 * span or lo < -128.0 * span:
                n_d += 1
                span = span * 256.0 + 1.0
            nd[i] = n_d
        out = np.empty((nd.sum(), k), dtype=np.int8)
        v = np.empty(k, dtype=np.int64)
        r = 0
        for i in range(m):
            for j in range(k):
                v[j] = np.int64(x[i, j] / scale)
            for p in range(nd[i]):
                for j in range(k):
                    d = ((v[j] + 128) & 255) - 128
                    out[r, j] = d
                    v[j] = (v[j] - d) >> 8
                r += 1
        return out, nd

    @numba.njit(cache=True, nogil=True)
    def _nb_combine(prod, nd, nd_w, n, scale, inv, b, lo, hi, mode, npost, out):  # pragma: no cover - compiled
        """Row ``i``: ``z = sum_p sum_j 256**(p + j) prod[row p of i, j n + c]`` in int64 (exact), then per ``mode``:
        0 ``out = z * scale``; 1 ``out = clip(floor(z * inv) + b, lo, hi)`` for the first ``npost`` columns,
        ``z * scale`` for the rest; 2 ``out += clip(...)`` (residual)."""
        z = np.empty(n, dtype=np.int64)
        r = 0
        for i in range(nd.shape[0]):
            z[:] = 0
            for p in range(nd[i]):
                sh = 8 * p
                if nd_w == 3:  # the usual 20-bit weights: a loop the compiler vectorizes
                    for c in range(n):
                        z[c] += ((np.int64(prod[r, 2 * n + c]) << 16) + (np.int64(prod[r, n + c]) << 8)
                                 + np.int64(prod[r, c])) << sh
                else:
                    for c in range(n):
                        v = np.int64(prod[r, (nd_w - 1) * n + c])
                        for j in range(nd_w - 2, -1, -1):
                            v = (v << 8) + prod[r, j * n + c]
                        z[c] += v << sh
                r += 1
            for c in range(n):
                f = np.float64(z[c]) * scale
                if mode == 0 or c >= npost:
                    out[i, c] = f
                else:  # the reference's float64 operations, in order: floor(z * inv) + b, clamp (relu: lo = 0)
                    y = min(max(np.floor(f * inv[c]) + b[c], lo), hi)
                    if mode == 1:
                        out[i, c] = y
                    else:
                        out[i, c] += y
        return out


if numba is not None:
    @numba.njit(cache=True, nogil=True)
    def _nb_head(zh, zs, p, wp_h, wp_s, inv_h, b_h, w_out, inv_o, b_o, inv_s, b_s, lim, one, floor, k):
        """:meth:`FastExactNet.head` in one pass per row (same integers, same float64 post-ops, in order)."""
        m, dh = zh.shape
        c, k3 = p.shape[1], w_out.shape[1]
        out = np.empty((m, 3, k), dtype=np.float64)
        g = np.empty(dh, dtype=np.float64)
        acc = np.empty(k3, dtype=np.float64)
        for i in range(m):
            for u in range(dh):
                z = zh[i, u]
                for j in range(c):
                    z += p[i, j] * wp_h[j, u]
                g[u] = min(max(np.floor(z * inv_h[u]) + b_h[u], 0.0), lim)
            acc[:] = 0.0
            for u in range(dh):  # exact integer sums (< 2**53): the order is free
                gu = g[u]
                for o in range(k3):
                    acc[o] += gu * w_out[u, o]
            for o in range(k3):
                y = min(max(np.floor(acc[o] * inv_o[o]) + b_o[o], -lim), lim)
                z = zs[i, o]
                for j in range(c):
                    z += p[i, j] * wp_s[j, o]
                y += min(max(np.floor(z * inv_s[o]) + b_s[o], -lim), lim)
                y /= one
                if o >= 2 * k:
                    y = max(y, floor)
                out[i, o // k, o % k] = y
        return out


def _int8_matmul_nb(x: np.ndarray, wd: "_Int8Weights", scale: int = 1, post=None, out=None) -> np.ndarray:
    """:func:`_int8_matmul` with the digit split and recombination compiled; ``post = (inv, b, lo, hi)`` applies
    the layer's post-op in the same pass to the first ``len(inv)`` columns (added into ``out`` when given: the
    residual blocks)."""
    m, n = x.shape[0], wd.n
    planes, nd = _nb_digits(np.ascontiguousarray(x), float(scale))
    prod = torch._int_mm(torch.from_numpy(planes), wd.w8).numpy()
    if post is None:
        mode, inv, b, lo, hi = 0, _EMPTY, _EMPTY, 0.0, 0.0
    else:
        inv, b, lo, hi = post
        mode = 1 if out is None else 2
    if out is None:
        out = np.empty((m, n), dtype=np.float64)
    return _nb_combine(prod, nd, wd.nd, n, float(scale), inv, b, lo, hi, mode, len(inv), out)


_EMPTY = np.zeros(0)


def _int8_matmul(x: np.ndarray, wd: _Int8Weights, scale: int = 1) -> np.ndarray:
    """Exact ``x @ W`` for integer-valued float64 ``x`` (``(M, K)``, multiples of ``scale``) -> float64.

    The digit planes of ``x`` are stacked along rows (one int8 product for all of them); a plane is only kept for
    the rows that need it (real activations rarely pass 2**15, so the third plane is usually a few rows)."""
    m, n = x.shape[0], wd.n
    r = x.astype(np.int64) if scale == 1 else (x * (1.0 / scale)).astype(np.int64)
    rows, planes, sel = np.arange(m), [], []
    while True:  # balanced digits, as _digits, dropping the rows already done
        d = ((r + 128) & 255) - 128
        planes.append(d.astype(np.int8))
        sel.append(rows)
        r = (r - d) >> 8
        more = r.any(axis=1)
        if not more.any():
            break
        if not more.all():
            rows, r = rows[more], r[more]
    p = torch._int_mm(torch.from_numpy(np.concatenate(planes)), wd.w8).numpy()  # (sum rows, digits * N) int32
    z = np.zeros((m, n), dtype=np.int64)
    start = 0
    for i, rws in enumerate(sel):  # plane i: sum_j 256**(i + j) (x_i @ W_j), exact in int64 (|.| < 2**53)
        blk = p[start:start + len(rws)]
        start += len(rws)
        c = blk[:, (wd.nd - 1) * n:].astype(np.int64)
        for j in range(wd.nd - 2, -1, -1):
            c <<= 8
            c += blk[:, j * n:(j + 1) * n]
        c <<= 8 * i
        if len(rws) == m:
            z += c
        else:
            z[rws] += c
    out = z.astype(np.float64)
    if scale != 1:
        out *= scale
    return out


def _post(z: np.ndarray, inv: np.ndarray, b: np.ndarray, lim: float, relu: bool) -> np.ndarray:
    """``floor(z * inv) + b`` clamped to ``[-lim, lim]`` (then relu), in place: the reference's operations, in order."""
    np.multiply(z, inv, out=z)
    np.floor(z, out=z)
    z += b
    return np.clip(z, 0.0 if relu else -lim, lim, out=z)  # relu(clamp(x, -lim, lim)) == clip(x, 0, lim)


class FastExactNet:
    """Exact parameters of a :class:`PixelContextCodecModel`, the same bits as ``exact_trunk_int`` / ``exact_head``.

    Usage per batch of pixels: ``st = net.trunk(a)`` (``a`` the ``(N, F)`` float64 integer features), then for
    ``c = 0, 1, 2`` in order ``net.head(st, c, prev)`` with ``prev`` ``(N, 3)`` integer levels whose first ``c``
    columns are known. ``net.exact`` is False when the weights break the 2**53 bound (use the reference)."""

    def __init__(self, model, backend: str | None = None):
        cfg = model.config
        ew = model._exact_weights()
        self.frac = cfg.exact_frac_bits
        self.lim = 2.0 ** cfg.exact_clamp_bits
        self.k = cfg.num_mixtures
        self.floor = cfg.min_log_scale
        inp = _Layer(ew["input_proj"])
        self.blocks = [_Layer(b) for b in ew["blocks"]]
        hin = [_Layer(m) for m in ew["head_in"]]
        self.hout = [_Layer(m) for m in ew["head_out"]]
        skip = [_Layer(m) for m in ew["head_skip"]]
        n_feat, d, dh = inp.w.shape[0], inp.w.shape[1], hin[0].w.shape[1]
        self.n_feat, self.d, self.dh = n_feat, d, dh
        # first product: features -> trunk input | the three skips' feature part
        self.w_first = np.ascontiguousarray(np.concatenate([inp.w] + [s.w[:n_feat] for s in skip], axis=1))
        self.inp = inp
        self.skip = skip
        self.skip_prev = [s.w[n_feat:] for s in skip]  # (c, 3K): rows of the coded sub-pixels
        # head inputs: trunk part of all three heads in one product, coded sub-pixels as rank-1 terms
        self.w_hin = np.ascontiguousarray(np.concatenate([m.w[:d] for m in hin], axis=1))
        self.hin = hin
        self.hin_prev = [m.w[d:] for m in hin]
        self.exact = self._bounds_ok(n_feat, d)
        if backend is None:
            backend = "int8" if int8_available() else "float64"
        if backend not in ("int8", "float64"):
            raise ValueError(f"backend must be 'int8' or 'float64', got {backend!r}")
        self.backend = backend
        if backend == "int8":  # the big products; g @ W_out (N = 3K) stays float64
            self._i8 = {"first": _Int8Weights(self.w_first), "hin": _Int8Weights(self.w_hin),
                        "blocks": [_Int8Weights(b.w) for b in self.blocks]}

    def _mm(self, x: np.ndarray, w: np.ndarray, key, scale: int = 1) -> np.ndarray:
        """Exact ``x @ w`` (float64 integers)."""
        if self.backend == "float64":
            return x @ w
        wd = self._i8[key] if isinstance(key, str) else self._i8[key[0]][key[1]]
        return _int8_matmul_nb(x, wd, scale) if numba is not None else _int8_matmul(x, wd, scale)

    def _layer(self, x: np.ndarray, i: int, residual: bool) -> np.ndarray:
        """Trunk block ``i``: ``x + relu(post(x @ W))`` (``residual``) or ``relu(post(x @ W))``."""
        blk = self.blocks[i]
        if self.backend == "int8" and numba is not None:  # one compiled pass: recombine, post-op, residual add
            return _int8_matmul_nb(x, self._i8["blocks"][i], 1, (blk.inv, blk.b, 0.0, self.lim),
                                   x if residual else None)
        y = _post(self._mm(x, blk.w, ("blocks", i)), blk.inv, blk.b, self.lim, True)
        if residual:
            x += y
            return x
        return y

    def _bounds_ok(self, n_feat: int, d: int) -> bool:
        """Every partial sum of every product below 2**53, for any input the exact path can see: features and coded
        sub-pixels ``|.| <= 2**14``, the trunk state ``0 <= h <= (1 + blocks) * 2**clamp`` (clamped residual adds),
        head hidden ``<= 2**clamp``. Bounds by the column L1 norms (any partial sum is at most the full one)."""
        one = 2.0 ** self.frac
        h_max = (1 + len(self.blocks)) * self.lim

        def l1(w):
            return float(np.abs(w).sum(axis=0).max()) if w.size else 0.0

        sums = [one * l1(self.w_first) + one * max(l1(p) for p in self.skip_prev),
                max(l1(b.w) * (1 + i) * self.lim for i, b in enumerate(self.blocks)) if self.blocks else 0.0,
                h_max * l1(self.w_hin) + one * max(l1(p) for p in self.hin_prev),
                self.lim * max(l1(m.w) for m in self.hout)]
        return max(sums) < _EXACT_LIMIT

    def trunk(self, a: np.ndarray) -> dict:
        """Integer features ``(N, F)`` float64 -> state for :meth:`head` (trunk state products done)."""
        d, lim = self.d, self.lim
        # the exact features are q * 64 and 2**14 flags: digits of a / 64 (two planes, not three)
        if self.backend == "int8" and numba is not None:  # post-op of the trunk columns in the same pass
            scale = 1 if np.fmod(a, 64.0).any() else 64
            z = _int8_matmul_nb(a, self._i8["first"], scale, (self.inp.inv, self.inp.b, 0.0, lim))
            h = np.ascontiguousarray(z[:, :d])
        else:
            scale = 64 if self.backend == "int8" and not np.fmod(a, 64.0).any() else 1
            z = self._mm(a, self.w_first, "first", scale)  # (N, d + 3 * 3K)
            h = _post(np.ascontiguousarray(z[:, :d]), self.inp.inv, self.inp.b, lim, True)
        for i in range(len(self.blocks)):
            h = self._layer(h, i, residual=True)
        return {"skip": z[:, d:], "hin": self._mm(h, self.w_hin, "hin")}

    def head(self, st: dict, c: int, prev: np.ndarray) -> np.ndarray:
        """Exact mixture params ``(N, 3, K)`` float64 of sub-pixel ``c``; ``prev`` ``(N, >= c)`` integer levels."""
        k3, dh, lim = 3 * self.k, self.dh, self.lim
        hin, skip, hout = self.hin[c], self.skip[c], self.hout[c]
        if numba is not None:
            p = (2.0 * np.asarray(prev[:, :c], dtype=np.float64) - 255.0) * 2.0 ** (self.frac - 8)
            return _nb_head(st["hin"][:, c * dh:(c + 1) * dh], st["skip"][:, c * k3:(c + 1) * k3], p,
                            self.hin_prev[c], self.skip_prev[c], hin.inv, hin.b, hout.w, hout.inv, hout.b,
                            skip.inv, skip.b, lim, 2.0 ** self.frac, self.floor, self.k)
        zg = st["hin"][:, c * dh:(c + 1) * dh].copy()
        zs = st["skip"][:, c * k3:(c + 1) * k3].copy()
        if c:
            p = (2.0 * np.asarray(prev[:, :c], dtype=np.float64) - 255.0) * 2.0 ** (self.frac - 8)  # exact q * 64
            for j in range(c):
                zg += p[:, j:j + 1] * self.hin_prev[c][j]
                zs += p[:, j:j + 1] * self.skip_prev[c][j]
        g = _post(zg, hin.inv, hin.b, lim, True)
        out = _post(g @ self.hout[c].w, self.hout[c].inv, self.hout[c].b, lim, False)
        out += _post(zs, skip.inv, skip.b, lim, False)
        out /= 2.0 ** self.frac
        out = out.reshape(-1, 3, self.k)
        np.maximum(out[:, 2], self.floor, out=out[:, 2])
        return out


def fast_net(model) -> FastExactNet:
    """The model's :class:`FastExactNet`, built once (like ``_exact_weights``: codec weights do not change)."""
    net = getattr(model, "_fast_exact", None)
    if net is None:
        net = model._fast_exact = FastExactNet(model)
    return net


def exact_net(model, reference: bool = False) -> FastExactNet | None:
    """The net the coders run: :func:`fast_net`, or None for the model's own exact path (``reference``, or weights
    too large for fastnet's 2**53 bound)."""
    if reference:
        return None
    net = fast_net(model)
    return net if net.exact else None
