"""Entropy coding of 32x32 (or smaller edge) tiles with constriction's range coder, bit-exactly reproducible.

Pipeline for every sub-pixel (what the ``.ptk`` header pins with ``numerics``/``quantization``/``coder`` ids):

1. **Parameters** -- :meth:`PixelContextCodecModel.exact_params`-style integer inference: every activation and
   weight is an integer held in float64, all partial sums stay below 2**53, so the mixture parameters are exact,
   independent of batch size, batch position, thread count or BLAS kernel (``NUMERICS_ID = 1``).
2. **Bin probabilities** -- discretized logistic mixture over the 256 levels, in float64 numpy, element-wise only
   (the K-mixture sums are explicit Python-ordered loops, so no reduction order can vary with the array shape).
3. **Integer frequencies** (``QUANT_ID = 1``, ``FREQ_BITS = 24``, ``PROB_BITS = 30``)::

       x_j    = floor(p_j * 2**PROB_BITS + 0.5)                       (int64)
       f_j    = 1 + (x_j * (2**FREQ_BITS - 256)) // sum_j x_j          (every symbol >= 1)
       f_argmax += 2**FREQ_BITS - sum_j f_j                           (first maximal x_j takes the remainder)

   so each table sums to exactly ``2**FREQ_BITS`` and is a pure integer function of step 2.
4. **Range coding** (``CODER_ID = 1``): ``constriction.stream.queue.RangeEncoder`` (32-bit words, 24-bit
   precision), ``constriction.stream.model.Categorical(perfect=False)`` fed the integer tables as float64 (exact).
   One independent stream per tile; within a tile, symbols go in *wavefront* order: step ``t`` holds the pixels
   with ``x + slope * y == t`` (ascending ``y``), and each step codes all its R values, then G, then B.

Shapes: tiles are ``(h, w, 3)`` uint8 with ``1 <= h, w <= tile_size``.
"""

from __future__ import annotations

from collections import defaultdict

import constriction
import numpy as np
import torch
from tqdm.auto import tqdm

FREQ_BITS = 24
PROB_BITS = 30
QUANT_ID = 1
NUMERICS_ID = 1
CODER_ID = 1
TOKEN_ORDER = "wavefront-rgb-interleaved"

_EDGES = (2.0 * np.arange(1, 256, dtype=np.float64) - 256.0) / 256.0  # bin boundaries between levels j-1 and j


def mixture_bin_probs(params: np.ndarray) -> np.ndarray:
    """``(N, 3, K)`` (logit_pi, mu, log_s) float64 -> ``(N, 256)`` float64 bin probabilities (sum 1 up to rounding)."""
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


def quantize_probs(p: np.ndarray, freq_bits: int = FREQ_BITS, prob_bits: int = PROB_BITS) -> np.ndarray:
    """``(N, 256)`` float64 -> ``(N, 256)`` int64 frequencies, each >= 1, each row summing to ``2**freq_bits``."""
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


def _family():
    return constriction.stream.model.Categorical(perfect=False)


def _group_by_shape(tiles: list[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    groups = defaultdict(list)
    for i, t in enumerate(tiles):
        groups[t.shape[:2]].append(i)
    return groups


@torch.no_grad()
def tile_tables(model, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Teacher-forced exact tables for same-shape tiles ``(B, h, w, 3)``.

    Returns symbols ``(B, S)`` int32 and frequencies ``(B, S, 256)`` int64 in coding order (``S = 3 h w``), plus
    the wavefront steps. One exact forward pass over every pixel of every tile.
    """
    b, h, w, _ = tiles.shape
    steps = wavefront(h, w, model.config.wavefront_slope)
    ys = torch.from_numpy(np.concatenate([s[0] for s in steps]))
    xs = torch.from_numpy(np.concatenate([s[1] for s in steps]))
    levels = torch.from_numpy(tiles.astype(np.int64))
    canvas = model.pad_canvas(levels)
    feats = model.gather_context(canvas, ys, xs).reshape(b * len(ys), -1)
    a, hid = model.exact_trunk(feats)
    prev = levels[:, ys, xs, :].reshape(b * len(ys), 3)
    freqs = np.stack([quantize_probs(mixture_bin_probs(model.exact_head(c, a, hid, prev))) for c in range(3)], axis=1)
    freqs = freqs.reshape(b, len(ys), 3, 256)
    syms = prev.numpy().reshape(b, len(ys), 3)
    # coding order: per step, all R of the step's pixels, then G, then B
    idx_pos, idx_ch, start = [], [], 0
    for sy, _ in steps:
        n = len(sy)
        for c in range(3):
            idx_pos.append(np.arange(start, start + n))
            idx_ch.append(np.full(n, c))
        start += n
    ip, ic = np.concatenate(idx_pos), np.concatenate(idx_ch)
    return syms[:, ip, ic].astype(np.int32), freqs[:, ip, ic, :], steps


def encode_tiles(model, tiles: list[np.ndarray], batch_size: int = 16, progress: bool = False) -> tuple[list[bytes], list[float]]:
    """Code every tile into its own range-coder stream. Returns ``(streams, ideal_bits)``.

    ``ideal_bits[i]`` is ``-sum log2(f / 2**FREQ_BITS)`` of tile i under the quantized tables (the real stream is
    a few bytes longer: 32-bit words and the coder's flush).
    """
    streams: list[bytes | None] = [None] * len(tiles)
    ideal = [0.0] * len(tiles)
    bar = tqdm(total=len(tiles), desc="compress", unit="tile", disable=not progress)
    for (h, w), idx in _group_by_shape(tiles).items():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            syms, freqs, _ = tile_tables(model, np.stack([tiles[i] for i in chunk]))
            for j, i in enumerate(chunk):
                enc = constriction.stream.queue.RangeEncoder()
                enc.encode(syms[j], _family(), freqs[j].astype(np.float64))
                streams[i] = enc.get_compressed().astype("<u4").tobytes()
                f_sel = freqs[j][np.arange(len(syms[j])), syms[j]]
                ideal[i] = float(-(np.log2(f_sel.astype(np.float64)) - FREQ_BITS).sum())
            bar.update(len(chunk))
    bar.close()
    return streams, ideal


@torch.no_grad()
def decode_tiles(model, streams: list[bytes], shapes: list[tuple[int, int]], batch_size: int = 64,
                 progress: bool = False) -> list[np.ndarray]:
    """Inverse of :func:`encode_tiles`: decodes many same-shape tiles in lock-step (batch over tiles).

    The decoder only ever reads already-decoded pixels (the causal neighbourhood), so its state is the canvas
    itself -- the analogue of a KV cache -- and each wavefront step is one exact forward pass for all tiles.
    """
    out: list[np.ndarray | None] = [None] * len(streams)
    bar = tqdm(total=len(streams), desc="decompress", unit="tile", disable=not progress)
    groups = defaultdict(list)
    for i, shp in enumerate(shapes):
        groups[tuple(shp)].append(i)
    slope = model.config.wavefront_slope
    fam = _family()
    for (h, w), idx in groups.items():
        steps = wavefront(h, w, slope)
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            b = len(chunk)
            decs = []
            for i in chunk:
                if len(streams[i]) % 4:
                    raise ValueError(f"tile {i}: stream length {len(streams[i])} is not a multiple of 4")
                decs.append(constriction.stream.queue.RangeDecoder(np.frombuffer(streams[i], dtype="<u4").astype(np.uint32)))
            levels = torch.zeros(b, h, w, 3, dtype=torch.int64)
            canvas = model.pad_canvas(levels)
            c0 = model.config.context_rows
            x0 = max(model.config.context_left, model.config.context_left_current)
            for sy, sx in steps:
                n = len(sy)
                ys, xs = torch.from_numpy(sy), torch.from_numpy(sx)
                feats = model.gather_context(canvas, ys, xs).reshape(b * n, -1)
                a, hid = model.exact_trunk(feats)
                prev = torch.zeros(b * n, 3, dtype=torch.int64)
                for c in range(3):
                    f = quantize_probs(mixture_bin_probs(model.exact_head(c, a, hid, prev))).astype(np.float64)
                    col = np.empty(b * n, dtype=np.int64)
                    for j, dec in enumerate(decs):
                        col[j * n:(j + 1) * n] = dec.decode(fam, f[j * n:(j + 1) * n])
                    prev[:, c] = torch.from_numpy(col)
                vals = prev.reshape(b, n, 3)
                levels[:, ys, xs, :] = vals
                canvas[:, ys + c0, xs + x0, :3] = (2.0 * vals.to(torch.float64) - 255.0) / 256.0
            for j, i in enumerate(chunk):
                out[i] = levels[j].numpy().astype(np.uint8)
            bar.update(b)
    bar.close()
    return out
