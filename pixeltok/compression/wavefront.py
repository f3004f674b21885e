"""Coding *units* -- the whole image, or independent tiles -- as one wavefront each (``.ptk`` version 3).

A unit is a rectangle of the image whose pixels see each other as context and nothing outside it (outside reads as
zero with a 0 "in-image" flag, as the model was trained at tile borders). ``layout="whole"``: one unit, the image, so
the causal window crosses what used to be tile borders and a pixel on row 32 sees the real rows 28-31 above it.
``layout="tiles"``: the old grid of independent ``tile_size`` tiles (random access, parallel decode).

Inside a unit the symbol order is the model's wavefront (step ``t`` holds the pixels with ``x + slope * y == t``, in
ascending ``y``; per step all R, then all G, then all B): every pixel of a step depends only on earlier steps, so
the decoder runs one exact forward pass per step over every pixel on the front (and, for tiles, over every tile of
the same shape in lock-step).

Adaptation: the unit is cut into ``block`` x ``block`` adaptation blocks (raster order, edge blocks smaller); the
encoder picks one log-scale offset per block and coded channel (``adapt``) and sends the indices first in the unit's
stream (``Uniform(NUM_SCALE_OFFSETS)``, block-major, channel-minor). With ``block >= the unit`` that is one offset per
channel at the start of the stream: exactly ``coder`` id 3's tile streams of version 2, which this code reproduces
byte for byte. The offsets are chosen from the float network (a first, teacher-forced pass; any choice decodes
correctly), the coded tables come from the exact integer network (second pass), so the tables are bit-identical
in encoder and decoder.

Memory: the state is the unit's canvas of ``q = 2v - 255`` as int16 (0 = outside), ``6 (H + rows) (W + left +
right)`` bytes, plus one chunk of tables (``ENCODE_CHUNK_PIXELS`` pixels x channels x 256 int64) in the encoder and
one wavefront step in the decoder: see :func:`peak_bytes`.
"""

from __future__ import annotations

import constriction
import numpy as np
import torch
from tqdm.auto import tqdm

from . import adapt as adapt_mod
from .coder import CODER_ID, FREQ_BITS, _family, _offset_model, decode_front, mixture_freqs
from .fastnet import exact_net
from .format import min_stream_bytes

ADAPT_BLOCK = 32  # default adaptation block of version-3 files
ENCODE_CHUNK_PIXELS = 2048  # pixels per exact forward pass + table build in the encoder (bytes do not depend on it)
CHOOSE_CHUNK_PIXELS = 8192  # pixels per float pass when choosing offsets
DECODE_BATCH_PIXELS = 1 << 20  # pixels of same-shape tiles decoded in lock-step


def _geometry(model):
    c = model.config
    left = max(c.context_left, c.context_left_current)
    offs = np.array(c.offsets, dtype=np.int64)
    return c.context_rows, left, c.context_right, offs


class Canvas:
    """``b`` same-shape units as int16 ``q = 2v - 255`` (odd, so never 0) in a zero border: ``(b, Hp * Wp, 3)``."""

    def __init__(self, model, b: int, h: int, w: int, levels: np.ndarray | None = None):
        self.rows, self.left, right, offs = _geometry(model)
        self.b, self.h, self.w = b, h, w
        self.hp, self.wp = h + self.rows, w + self.left + right
        self.q = np.zeros((b, self.hp, self.wp, 3), dtype=np.int16)
        if levels is not None:
            self.q[:, self.rows:, self.left:self.left + w] = 2 * levels.astype(np.int16) - 255
        self.flat = self.q.reshape(b, self.hp * self.wp, 3)
        self.off_flat = offs[:, 0] * self.wp + offs[:, 1]  # (n_ctx,)

    def _index(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return (ys + self.rows) * self.wp + xs + self.left

    def context(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """``(b, n, n_ctx, 3)`` int16 neighbourhood q values of pixels ``(ys, xs)`` (0 = outside the unit)."""
        return self.flat[:, self._index(ys, xs)[:, None] + self.off_flat[None, :]]

    def exact_features(self, ys, xs) -> torch.Tensor:
        """Integer features on the exact grid, ``(b * n, n_ctx * 4)`` float64: ``q * 64`` and ``2**14`` flags --
        exactly ``round(model.pad_canvas(...) * 2**14)``."""
        ctx = self.context(ys, xs)
        f = np.empty(ctx.shape[:3] + (4,), dtype=np.float64)
        np.multiply(ctx, 64.0, out=f[..., :3])
        np.multiply(ctx[..., 0] != 0, 16384.0, out=f[..., 3])
        return torch.from_numpy(f.reshape(self.b * len(ys), -1))

    def float_features(self, ys, xs) -> torch.Tensor:
        """The same features as unit values (``q / 256``, flag 1) in float32, for the training-path network."""
        ctx = self.context(ys, xs)
        f = np.empty(ctx.shape[:3] + (4,), dtype=np.float32)
        np.multiply(ctx, 1.0 / 256, out=f[..., :3])
        f[..., 3] = ctx[..., 0] != 0
        return torch.from_numpy(f.reshape(self.b * len(ys), -1))

    def put(self, ys, xs, vals: np.ndarray) -> None:
        """Write decoded levels ``(b, n, 3)`` at ``(ys, xs)``."""
        self.flat[:, self._index(ys, xs)] = 2 * vals.astype(np.int16) - 255

    def levels(self) -> np.ndarray:
        q = self.q[:, self.rows:, self.left:self.left + self.w]
        return ((q.astype(np.int16) + 255) >> 1).astype(np.uint8)


def step_range(h: int, w: int, slope: int) -> int:
    return (w - 1) + slope * (h - 1) + 1


def step_pixels(t: int, h: int, w: int, slope: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of wavefront step ``t`` of an ``h x w`` unit, ascending ``y`` (same order as ``coder.wavefront``)."""
    y_lo = max(0, -(-(t - (w - 1)) // slope))
    y_hi = min(h - 1, t // slope)
    ys = np.arange(y_lo, y_hi + 1, dtype=np.int64)
    return ys, t - slope * ys


def step_chunks(h: int, w: int, slope: int, min_pixels: int):
    """Consecutive wavefront steps grouped into chunks of at least ``min_pixels`` pixels (the last may be smaller):
    yields ``(ys, xs, sizes)``, ``sizes`` the pixels of each step."""
    ys_l, xs_l, sizes, n = [], [], [], 0
    for t in range(step_range(h, w, slope)):
        ys, xs = step_pixels(t, h, w, slope)
        if not len(ys):  # units narrower than the slope have empty steps
            continue
        ys_l.append(ys)
        xs_l.append(xs)
        sizes.append(len(ys))
        n += len(ys)
        if n >= min_pixels:
            yield np.concatenate(ys_l), np.concatenate(xs_l), sizes
            ys_l, xs_l, sizes, n = [], [], [], 0
    if sizes:
        yield np.concatenate(ys_l), np.concatenate(xs_l), sizes


def block_grid(h: int, w: int, block: int) -> tuple[int, int]:
    return -(-h // block), -(-w // block)


def _coding_order(sizes: list[int], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and channels of a chunk in coding order: per step, the step's R values, then G, then B."""
    starts = np.cumsum([0] + sizes[:-1])
    rows = [np.arange(s, s + n) for s, n in zip(starts, sizes) for _ in range(channels)]
    chans = [np.full(n, c) for n in sizes for c in range(channels)]
    return np.concatenate(rows), np.concatenate(chans)


@torch.no_grad()
def choose_offsets(model, canvas: Canvas, levels: np.ndarray, block: int, channels: int) -> np.ndarray:
    """Per-block scale-offset indices ``(b, nby, nbx, channels)`` from the float network, teacher-forced over each
    unit (context inside the unit only, as in coding)."""
    b, h, w = canvas.b, canvas.h, canvas.w
    nby, nbx = block_grid(h, w, block)
    out = np.empty((b, nby, nbx, channels), dtype=np.int64)
    floor = model.config.min_log_scale
    dtype = model.input_proj.weight.dtype
    # groups of whole blocks with the same shape in a band of block rows, at most CHOOSE_CHUNK_PIXELS at a time
    for by in range(nby):
        y0, bh = by * block, min(block, h - by * block)
        widths = [(bx, min(block, w - bx * block)) for bx in range(nbx)]
        for bw in sorted({wd for _, wd in widths}):
            cols = [bx for bx, wd in widths if wd == bw]
            per = max(1, CHOOSE_CHUNK_PIXELS // (bh * bw * b))
            for s in range(0, len(cols), per):
                sel = cols[s:s + per]
                yy, xx = np.meshgrid(np.arange(bh), np.arange(bw), indexing="ij")
                ys = (y0 + yy.reshape(-1))[None, :].repeat(len(sel), 0).reshape(-1)
                xs = (np.array(sel)[:, None] * block + xx.reshape(-1)[None, :]).reshape(-1)
                feats = canvas.float_features(ys, xs).to(dtype)  # (b * n, F), n = len(sel) * bh * bw
                hid = model.trunk(feats)
                lv = levels[:, ys, xs, :].reshape(-1, 3)
                x = torch.from_numpy((2.0 * lv - 255.0) / 256.0).to(dtype)
                params = torch.stack([model.head(c, hid, feats, x) for c in range(channels)], dim=1)  # (b*n, C, 3, K)
                params = params.float().numpy().reshape(b * len(sel), bh * bw, channels, 3, -1)
                syms = lv[:, :channels].reshape(b * len(sel), bh * bw, channels)
                best = adapt_mod.choose_scale_offsets(params, syms, floor)  # (b * len(sel), C)
                out[:, by, sel, :] = best.reshape(b, len(sel), channels)
    return out


def _coding_positions(sizes: list[int], channels: int) -> np.ndarray:
    """``pos[c, r]``: where row ``r`` of a chunk, channel ``c``, goes in coding order (inverse of _coding_order)."""
    rows, chans = _coding_order(sizes, channels)
    pos = np.empty((channels, len(rows) // channels), dtype=np.int64)
    pos[chans, rows] = np.arange(len(rows))
    return pos


def encode_units(model, levels: np.ndarray, block: int, channels: int = 3, adapt: bool = True,
                 bar: tqdm | None = None, reference: bool = False) -> tuple[list[bytes], list[float]]:
    """Code ``b`` same-shape units ``levels (b, h, w, 3)`` uint8 (R = G = B for ``channels=1``), each as its own
    stream: block offsets, then the sub-pixels in wavefront order. Returns ``(streams, ideal_bits)``.
    ``reference``: the model's own ``exact_trunk_int``/``exact_head`` instead of ``fastnet`` (same bytes, slower)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    b, h, w, _ = levels.shape
    slope = model.config.wavefront_slope
    floor = model.config.min_log_scale
    canvas = Canvas(model, b, h, w, levels)
    nby, nbx = block_grid(h, w, block)
    if adapt:
        offs = choose_offsets(model, canvas, levels, block, channels)
    else:
        offs = np.full((b, nby, nbx, channels), adapt_mod.SCALE_OFFSET_ZERO, dtype=np.int64)
    deltas = adapt_mod.scale_offsets(offs)  # (b, nby, nbx, C)
    encs = [constriction.stream.queue.RangeEncoder() for _ in range(b)]
    ideal = np.full(b, offs[0].size * np.log2(adapt_mod.NUM_SCALE_OFFSETS))
    for j in range(b):
        encs[j].encode(offs[j].reshape(-1).astype(np.int32), _offset_model())
    fam = _family()
    net = exact_net(model, reference)
    for ys, xs, sizes in step_chunks(h, w, slope, max(1, ENCODE_CHUNK_PIXELS // b)):
        n = len(ys)
        a = canvas.exact_features(ys, xs)
        lv = levels[:, ys, xs, :]  # (b, n, 3) uint8
        prev = torch.from_numpy(lv.reshape(b * n, 3).astype(np.int64))
        if net is None:
            hid = model.exact_trunk_int(a)
            head = lambda c: model.exact_head(c, a, hid, prev)  # noqa: E731
        else:
            st = net.trunk(a.numpy())
            head = lambda c: net.head(st, c, prev.numpy())  # noqa: E731
        d_rows = deltas[:, ys // block, xs // block, :].reshape(b * n, channels)
        pos = _coding_positions(sizes, channels)
        # tables straight into coding order (per step: R of its pixels, then G, then B), float64 for constriction
        freqs = np.empty((b, channels * n, 256), dtype=np.float64)
        syms = np.empty((b, channels * n), dtype=np.int32)
        for c in range(channels):
            params = adapt_mod.apply_scale_offsets(head(c), d_rows[:, c], floor)
            freqs[:, pos[c]] = mixture_freqs(params).reshape(b, n, 256)
            syms[:, pos[c]] = lv[:, :, c]
        for j in range(b):
            encs[j].encode(syms[j], fam, freqs[j])
            ideal[j] -= (np.log2(freqs[j][np.arange(channels * n), syms[j]]) - FREQ_BITS).sum()
        if bar is not None:
            bar.update(b * n)
    streams = []
    for enc in encs:
        words = enc.get_compressed().astype("<u4").tobytes()
        # zero words decode as the implicit end of stream: the padding bounds the pixels per byte
        streams.append(words + bytes(max(0, min_stream_bytes(h, w, CODER_ID) - len(words))))
    return streams, [float(v) for v in ideal]


@torch.no_grad()
def decode_units(model, streams: list[bytes], h: int, w: int, block: int, channels: int = 3,
                 bar: tqdm | None = None, reference: bool = False) -> np.ndarray:
    """Inverse of :func:`encode_units` for ``b = len(streams)`` same-shape units -> ``(b, h, w, 3)`` uint8 (R = G = B
    for ``channels=1``). Invalid streams raise ``ValueError`` or constriction's ``AssertionError``. ``reference``:
    the model's own exact path, as in :func:`encode_units`."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    b = len(streams)
    decs = []
    for i, s in enumerate(streams):
        if len(s) % 4:
            raise ValueError(f"unit {i}: stream length {len(s)} is not a multiple of 4")
        decs.append(constriction.stream.queue.RangeDecoder(np.frombuffer(s, dtype="<u4").astype(np.uint32)))
    nby, nbx = block_grid(h, w, block)
    offs = np.stack([dec.decode(_offset_model(), nby * nbx * channels) for dec in decs]).astype(np.int64)
    deltas = adapt_mod.scale_offsets(offs.reshape(b, nby, nbx, channels))
    slope = model.config.wavefront_slope
    floor = model.config.min_log_scale
    canvas = Canvas(model, b, h, w)
    fam = _family()
    net = exact_net(model, reference)
    for t in range(step_range(h, w, slope)):
        ys, xs = step_pixels(t, h, w, slope)
        n = len(ys)
        if not n:  # units narrower than the slope have empty steps
            continue
        a = canvas.exact_features(ys, xs)
        hid = model.exact_trunk_int(a) if net is None else net.trunk(a.numpy())
        d_rows = deltas[:, ys // block, xs // block, :].reshape(b * n, channels)
        prev = decode_front(model, a, hid, d_rows, floor, decs, fam, channels, n, net=net)
        canvas.put(ys, xs, prev.numpy().reshape(b, n, 3))
        if bar is not None:
            bar.update(b * n)
    return canvas.levels()


def peak_bytes(h: int, w: int, channels: int = 3) -> int:
    """Upper estimate of the working memory of coding one ``h x w`` unit (beyond the input/output image): the int16
    canvas, the per-block offsets, and one encoder chunk (features, trunk state, params, tables, in coding order),
    which is larger than any decoder step or offset-choice pass."""
    canvas = 6 * (h + 8) * (w + 16)
    blocks = 8 * 2 * channels * -(-h // ADAPT_BLOCK) * -(-w // ADAPT_BLOCK)
    n = ENCODE_CHUNK_PIXELS + min(h, w)  # a chunk ends on a step boundary: at most one step (<= min(h, w)) over
    # features (184), trunk state + matmul result (2 x 384), head input/hidden (387 + 192), float64; the chunk's
    # tables in coding order (channels x 256 float64) + one channel's CDF and int64 tables (2 x 257 x 8)
    per_pixel = 8 * (184 + 2 * 384 + 387 + 192) + channels * 256 * 8 + 2 * 257 * 8
    return canvas + blocks + n * per_pixel + (64 << 20)  # + the network's weights and the interpreter's slack
