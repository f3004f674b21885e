"""The pixel-token vocabulary and the vectorized image <-> token-id conversions behind PixelTokenizer.

Text form (one token per whitespace-free unit; ``\\n`` is itself a token):

    w17 h31                      size header: width and height tokens, then a newline
    c_red 0_1, 0_14, 12_1        grouped: a colour, then its pixels ``x_y`` in raster order
    c_navy 3_4
    ...

Coordinates are split into an ``{x}_`` token and a ``{y},`` token (``{y}`` without the comma ends a line), as in
the reference scheme. ``runs`` is ``grouped`` where a horizontal run of one colour is written as its start pixel
plus ``+{n}`` more pixels (``0_1+4, 7_2``). ``raster`` writes one colour token per pixel, each row ended by ``\\n``.

Every conversion is numpy over whole images: no per-pixel Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .palettes import BUILTIN_PALETTES, TRANSPARENT, Palette

LAYOUTS = ("grouped", "raster", "runs")
PAD, UNK, BOS, EOS, NEWLINE = "<pad>", "<unk>", "<bos>", "<eos>", "\n"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)

# Longest-match token pattern used by the slow tokenizer, the fast tokenizer's pre-tokenizer and the text parser.
TOKEN_PATTERN = r"<[a-z]+>|\n|c_[a-z0-9]+|[wh][0-9]+|[0-9]+[_,]?|\+[0-9]+,?|[^\s]+"
TOKEN_RE = re.compile(TOKEN_PATTERN)

# One character per token type; grammars below are regular expressions over these characters.
_T_SPECIAL, _T_NL, _T_W, _T_H, _T_X, _T_YC, _T_Y, _T_PC, _T_P, _T_C = "SNWHXyYpPC"
_LINE_RE = {
    "grouped": re.compile(r"C(?:Xy)*XY"),
    "runs": re.compile(r"C(?:X(?:y|Yp))*X(?:Y|YP)"),
    "raster": re.compile(r"C+"),
}
_BODY_RE = {k: re.compile(r"WHN(?:" + v.pattern + r"N)*") for k, v in _LINE_RE.items()}
_LINE_HELP = {
    "grouped": "a colour token then comma-separated x_y coordinates, e.g. 'c_red 0_1, 5_2'",
    "runs": "a colour token then comma-separated x_y or x_y+n runs, e.g. 'c_red 0_1+4, 5_2'",
    "raster": "one colour token per pixel",
}


class TokenFormatError(ValueError):
    """Malformed pixel-token text or ids: the message names the line, token and problem."""


def as_id_array(ids, what: str = "ids") -> np.ndarray:
    """One id sequence (list of ints, numpy or torch integer array) -> 1-D int64, refusing what ``np.asarray(...,
    int64)`` would truncate (floats, bools), choke on (strings, ragged lists) or overflow on (ints beyond 64 bits).

    A ``(1, L)`` batch of one (``return_tensors="pt"``) is accepted; raises :class:`TokenFormatError` otherwise.
    """
    if hasattr(ids, "detach"):  # torch, without importing it
        if ids.is_floating_point() or ids.is_complex() or str(ids.dtype) == "torch.bool":
            raise TokenFormatError(f"{what} must be integers, got a {ids.dtype} tensor")
        ids = ids.detach().cpu().numpy()
    elif isinstance(ids, (list, tuple)) and not {bool, np.bool_}.isdisjoint(map(type, ids)):  # C-level type scan
        raise TokenFormatError(f"{what} must be integers, got a bool among them")  # numpy would read True as 1
    try:
        a = np.asarray(ids)
    except (ValueError, TypeError, OverflowError) as e:  # ragged or nested lists
        raise TokenFormatError(f"{what} must be one flat sequence of integers ({e})") from None
    if a.size == 0:
        return np.zeros(0, np.int64)  # np.asarray([]) is float64
    if a.dtype.kind == "O":  # Python ints beyond 64 bits, None, mixtures: name the first offending element
        bad = [x for x in a.reshape(-1) if not isinstance(x, (int, np.integer)) or not -2**63 <= x < 2**63][:1]
        if bad:
            bad = bad[0]
            why = "is too large for a token id" if isinstance(bad, (int, np.integer)) else f"is a {type(bad).__name__}"
            raise TokenFormatError(f"{what} must be integers: {bad!r} {why}")
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise TokenFormatError(f"{what} must be integers, got dtype {a.dtype} (e.g. {a.reshape(-1)[0].item()!r})")
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1:
        raise TokenFormatError(f"{what} must be one flat sequence, got shape {a.shape}")
    if a.dtype == np.uint64 and a.max() > np.iinfo(np.int64).max:
        raise TokenFormatError(f"{what}: {int(a.max())} is too large for a token id")
    return a.astype(np.int64, copy=False)


# -- telling a text's palette and layout from the text itself (regexes only: no tokenizer, no per-pixel Python) --------
_COLOUR_NAME_RE = re.compile(r"(?<!\S)c_([a-z0-9]+)(?!\S)")
_COORD_RE = re.compile(r"(?<!\S)[0-9]+_[0-9]+")
_RUN_RE = re.compile(r"(?<!\S)[0-9]+_[0-9]+\+[0-9]+")
_BUILTIN_NAMES = {k: frozenset(n for n, _ in v) for k, v in BUILTIN_PALETTES.items()}


def sniff_text_format(text: str) -> dict:
    """Infer ``{"palette": <built-in palette name or None>, "layout": "grouped"|"raster"|"runs"}`` from pixel text.

    The colour names identify the built-in palette (``None`` when every pixel is ``c_transparent``: any palette
    decodes that text to the same image); ``x_y+n`` run tokens mean ``runs``, coordinates without runs ``grouped``
    (a runs text with no run of two or more pixels *is* a grouped text), colour tokens without coordinates
    ``raster``. Raises :class:`TokenFormatError` when it cannot tell (no colour tokens, or colours of no built-in
    palette, e.g. a learned one: decode with that tokenizer).
    """
    if not isinstance(text, str):
        raise TypeError(f"sniff_text_format expects a str, got {type(text).__name__}")
    names = set(_COLOUR_NAME_RE.findall(text))
    if not names:
        raise TokenFormatError("cannot tell the palette or layout: the text has no colour tokens (c_<name>); "
                               "is it pixel-token text?")
    opaque = names - {TRANSPARENT}
    palette = None
    if opaque:
        fits = [k for k, v in _BUILTIN_NAMES.items() if opaque <= v]
        if len(fits) != 1:
            some = ", ".join(f"c_{n}" for n in sorted(opaque)[:3])
            why = (f"colours such as {some} are not all in one built-in palette ({', '.join(_BUILTIN_NAMES)})"
                   if not fits else f"its colours fit several built-in palettes ({', '.join(fits)})")
            raise TokenFormatError(f"cannot tell the palette: {why}; it was probably made with a learned palette: "
                                   "decode it with that tokenizer (command line: --tokenizer <folder>) or name the "
                                   "palette (--palette)")
        palette = fits[0]
    layout = "runs" if _RUN_RE.search(text) else "grouped" if _COORD_RE.search(text) else "raster"
    return {"palette": palette, "layout": layout}


def format_hint(text: str, palette: str, layout: str) -> str:
    """For error messages: what the text seems to use when that differs from the decoder's settings, else ``""``."""
    try:
        fmt = sniff_text_format(text)
    except TokenFormatError:
        return ""
    seen_palette = fmt["palette"] or palette
    seen_layout = layout if (fmt["layout"], layout) == ("grouped", "runs") else fmt["layout"]  # runs reads grouped
    if (seen_palette, seen_layout) == (palette, layout):
        return ""
    return (f"the text seems to use palette={seen_palette!r}, layout={seen_layout!r} but this tokenizer has "
            f"palette={palette!r}, layout={layout!r} (command line: --palette {seen_palette} --layout {seen_layout})")


@dataclass
class PixelVocab:
    """Token <-> id tables for one palette and maximum side, laid out so ids can be computed arithmetically."""

    palette: Palette
    max_side: int = 128
    tokens: list[str] = field(init=False)

    def __post_init__(self):
        m = int(self.max_side)
        if not 1 <= m <= 4096:
            raise ValueError(f"max_side must be in 1..4096, got {self.max_side}")
        self.max_side = m
        groups = [
            ("special", list(SPECIAL_TOKENS)),
            ("nl", [NEWLINE]),
            ("w", [f"w{n}" for n in range(1, m + 1)]),
            ("h", [f"h{n}" for n in range(1, m + 1)]),
            ("x", [f"{i}_" for i in range(m)]),
            ("yc", [f"{i}," for i in range(m)]),
            ("y", [f"{i}" for i in range(m)]),
            ("pc", [f"+{n}," for n in range(1, m)]),
            ("p", [f"+{n}" for n in range(1, m)]),
            ("c", [f"c_{n}" for n in self.palette.all_names]),
        ]
        self.tokens, self.offset = [], {}
        for name, toks in groups:
            self.offset[name] = len(self.tokens)
            self.tokens.extend(toks)
        self.token_to_id = {t: i for i, t in enumerate(self.tokens)}
        self.token_array = np.array(self.tokens, dtype=object)
        # per-id type character and numeric value, for vectorized parsing
        n = len(self.tokens)
        self.type_of = np.full(n, _T_SPECIAL, dtype="<U1")
        self.value_of = np.zeros(n, dtype=np.int64)
        spans = {"nl": (_T_NL, 0), "w": (_T_W, 1), "h": (_T_H, 1), "x": (_T_X, 0), "yc": (_T_YC, 0),
                 "y": (_T_Y, 0), "pc": (_T_PC, 1), "p": (_T_P, 1), "c": (_T_C, 0)}
        sizes = {"nl": 1, "w": m, "h": m, "x": m, "yc": m, "y": m, "pc": m - 1, "p": m - 1, "c": len(self.palette) + 1}
        for name, (ch, start) in spans.items():
            o = self.offset[name]
            self.type_of[o:o + sizes[name]] = ch
            self.value_of[o:o + sizes[name]] = np.arange(sizes[name]) + start

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return self.token_to_id[PAD]

    # -- image indices -> ids ---------------------------------------------------------------------
    def encode(self, idx: np.ndarray, layout: str) -> np.ndarray:
        """``(H, W)`` palette indices -> 1-D int64 ids (header, then the layout's lines)."""
        h, w = idx.shape
        if h > self.max_side or w > self.max_side:
            raise ValueError(f"image {w}x{h} exceeds max_side={self.max_side}")
        o = self.offset
        header = np.array([o["w"] + w - 1, o["h"] + h - 1, o["nl"]], dtype=np.int64)
        flat = idx.reshape(-1).astype(np.int64)
        if layout == "raster":
            body = np.concatenate([flat.reshape(h, w) + o["c"], np.full((h, 1), o["nl"])], axis=1).reshape(-1)
            return np.concatenate([header, body])
        if layout not in ("grouped", "runs"):
            raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
        order = np.argsort(flat, kind="stable")  # pixels grouped by colour, raster order inside a colour
        col = flat[order]
        y, x = order // w, order % w
        new_colour = np.r_[True, col[1:] != col[:-1]]
        if layout == "grouped":
            item_start = np.ones(len(order), dtype=bool)
        else:  # a run continues while colour and row match and x advances by one
            item_start = new_colour | np.r_[True, (y[1:] != y[:-1]) | (x[1:] != x[:-1] + 1)]
        starts = np.flatnonzero(item_start)
        lengths = np.diff(np.r_[starts, len(order)])
        item_col = col[starts]
        line_start = np.r_[True, item_col[1:] != item_col[:-1]]
        line_end = np.r_[line_start[1:], True]
        # each item is 3 slots: x_, y[,], +n[,] (-1 = unused); comma goes on the item's last token unless line_end
        sy, sx = y[starts], x[starts]
        has_run = lengths > 1
        slots = np.full((len(starts), 3), -1, dtype=np.int64)
        slots[:, 0] = o["x"] + sx
        slots[:, 1] = np.where(has_run | line_end, o["y"], o["yc"]) + sy
        slots[:, 2] = np.where(has_run, np.where(line_end, o["p"], o["pc"]) + lengths - 2, -1)
        # lines: colour token before each line's first item, newline after its last
        rows = np.full((len(starts) + 2 * line_start.sum(), 3), -1, dtype=np.int64)
        line_no = np.cumsum(line_start) - 1
        item_row = np.arange(len(starts)) + 2 * line_no + 1
        rows[item_row] = slots
        rows[item_row[line_start] - 1, 0] = o["c"] + item_col[line_start]
        rows[item_row[line_end] + 1, 0] = o["nl"]
        body = rows.reshape(-1)
        return np.concatenate([header, body[body >= 0]])

    # -- ids -> image indices ---------------------------------------------------------------------
    def decode(self, ids: np.ndarray, layout: str, canonical: bool = True) -> np.ndarray:
        """1-D ids (no special tokens) -> ``(H, W)`` int16 palette indices; strict, raises TokenFormatError.

        With ``canonical`` (the default) the ids must also be exactly what :meth:`encode` writes for that image
        (colours in palette order, one line each, pixels in raster order, runs merged), so text and images are in
        one-to-one correspondence and a successful decode re-encodes to the same ids. ``canonical=False`` accepts
        any order that still covers every pixel once (e.g. a model's output).
        """
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
        ids = as_id_array(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            bad = ids[(ids < 0) | (ids >= len(self))][0]
            raise TokenFormatError(f"token id {bad} is outside the vocabulary (size {len(self)})")
        types = "".join(self.type_of[ids].tolist())
        if not _BODY_RE[layout].fullmatch(types):
            self._explain(ids, types, layout)
        vals = self.value_of[ids]
        w, h = int(vals[0]), int(vals[1])
        if layout == "raster":
            nl = np.flatnonzero(ids == self.offset["nl"])[1:]  # after the header's newline
            row_len = np.diff(np.r_[2, nl]) - 1
            if len(nl) != h or (row_len != w).any():
                bad = int(np.flatnonzero(row_len != w)[0]) if (row_len != w).any() else len(nl)
                raise TokenFormatError(
                    f"raster layout: header says {w}x{h} but got {len(nl)} rows"
                    + (f"; row {bad} has {row_len[bad]} pixels" if bad < len(row_len) else ""))
            cols = vals[(np.frombuffer(types.encode(), dtype=np.uint8) == ord(_T_C))]
            return cols.reshape(h, w).astype(np.int16)
        t = np.frombuffer(types.encode(), dtype=np.uint8)
        cpos = np.flatnonzero(t == ord(_T_C))
        xpos = np.flatnonzero(t == ord(_T_X))
        xs, ys = vals[xpos], vals[xpos + 1]
        colour = vals[cpos][np.searchsorted(cpos, xpos) - 1]
        run = np.ones(len(xpos), dtype=np.int64)
        if layout == "runs":
            nxt = np.minimum(xpos + 2, len(t) - 1)
            is_run = (t[nxt] == ord(_T_P)) | (t[nxt] == ord(_T_PC))
            run = np.where(is_run, vals[nxt] + 1, 1)
        bad = (xs + run > w) | (ys >= h)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            line = int(np.searchsorted(np.flatnonzero(t == ord(_T_NL)), xpos[k]))
            raise TokenFormatError(
                f"line {line + 1}: pixel {xs[k]}_{ys[k]}" + (f"+{run[k] - 1}" if run[k] > 1 else "")
                + f" is outside the {w}x{h} image")
        # expand runs to pixels
        pix_item = np.repeat(np.arange(len(xpos)), run)
        within = np.arange(len(pix_item)) - np.repeat(np.cumsum(run) - run, run)
        flat_pos = ys[pix_item] * w + xs[pix_item] + within
        counts = np.bincount(flat_pos, minlength=w * h)
        if (counts > 1).any():
            p = int(np.flatnonzero(counts > 1)[0])
            raise TokenFormatError(f"duplicate pixel {p % w}_{p // w}: listed {counts[p]} times")
        if (counts == 0).any():
            missing = np.flatnonzero(counts == 0)
            p = int(missing[0])
            raise TokenFormatError(f"{len(missing)} pixel(s) not covered by any colour, first {p % w}_{p // w}")
        out = np.empty(w * h, dtype=np.int16)
        out[flat_pos] = colour[pix_item]
        out = out.reshape(h, w)
        if canonical:
            self._check_canonical(ids, out, layout)
        return out

    def _check_canonical(self, ids: np.ndarray, idx: np.ndarray, layout: str) -> None:
        """Refuse a valid but non-canonical description of ``idx``, naming the first token that differs."""
        canon = self.encode(idx, layout)
        if len(canon) == len(ids) and np.array_equal(canon, ids):
            return
        n = min(len(canon), len(ids))
        k = int(np.flatnonzero(canon[:n] != ids[:n])[0]) if (canon[:n] != ids[:n]).any() else n
        line = int((ids[:k] == self.offset["nl"]).sum()) + 1
        got = repr(self.tokens[ids[k]]) if k < len(ids) else "the end of the text"
        want = repr(self.tokens[canon[k]]) if k < len(canon) else "the end of the text"
        rule = {"grouped": "", "runs": ", runs of one colour merged as x_y+n"}[layout]
        raise TokenFormatError(
            f"line {line}: not the canonical {layout} text of this image: got {got} where it has {want} (one line per "
            f"colour in palette order, pixels in raster order{rule}); pass canonical=False to accept any order")

    def _explain(self, ids: np.ndarray, types: str, layout: str) -> None:
        """Error path only: find the first bad line and say what is wrong with it."""
        if len(ids) < 3 or types[:3] != "WHN":
            got = " ".join(repr(t) for t in self.token_array[ids[:3]])
            raise TokenFormatError(f"missing size header: expected 'w<width> h<height>' and a newline first, got {got}")
        lines = types[3:].split(_T_NL)
        pos = 3
        for k, line in enumerate(lines):
            toks = tokens_to_text(self.token_array[ids[pos:pos + len(line)]].tolist())
            if k == len(lines) - 1:
                if line:
                    raise TokenFormatError(f"line {k + 2}: not ended by a newline: {toks!r}")
                break
            if not _LINE_RE[layout].fullmatch(line):
                bad = next((i for i, ch in enumerate(line) if ch in (_T_SPECIAL, _T_W, _T_H)), None)
                if bad is not None:
                    tok = self.token_array[ids[pos + bad]]
                    what = "unknown token" if tok == UNK else "unexpected token"
                    raise TokenFormatError(f"line {k + 2}: {what} {tok!r} in {toks!r}")
                raise TokenFormatError(f"line {k + 2}: malformed {layout} line {toks!r}; expected {_LINE_HELP[layout]}")
            pos += len(line) + 1
        raise TokenFormatError("malformed token sequence")  # pragma: no cover - grammar and line checks agree

    # -- text <-> ids -----------------------------------------------------------------------------
    def text_to_ids(self, text: str, strict: bool = True) -> np.ndarray:
        toks = TOKEN_RE.findall(text)
        get = self.token_to_id.get
        ids = [get(t, -1) for t in toks]
        if strict and -1 in ids:
            m = list(TOKEN_RE.finditer(text))[ids.index(-1)]
            line, tok = text.count("\n", 0, m.start()) + 1, m.group()
            if tok.startswith("c_"):
                raise TokenFormatError(f"line {line}: unknown colour {tok!r} for palette {self.palette.name!r}")
            if re.fullmatch(r"[wh]?[0-9]+[_,]?|\+[0-9]+,?", tok):
                raise TokenFormatError(f"line {line}: value in {tok!r} is out of range for max_side={self.max_side}")
            raise TokenFormatError(f"line {line}: unrecognised token {tok!r}")
        unk = self.token_to_id[UNK]
        return np.array([unk if i < 0 else i for i in ids], dtype=np.int64)

    def ids_to_text(self, ids) -> str:
        return tokens_to_text(self.token_array[np.asarray(ids, dtype=np.int64)].tolist())


def pad_rows(rows: list[np.ndarray], value: int, length: int, left: bool = False) -> np.ndarray:
    """Variable-length 1-D int rows -> one ``(len(rows), length)`` int64 array, padded with ``value`` on one side
    (numpy; transformers' ``pad`` walks Python lists and is slower than encoding the images)."""
    out = np.full((len(rows), length), value, np.int64)
    for i, r in enumerate(rows):
        out[i, slice(length - len(r), length) if left else slice(0, len(r))] = r
    return out


def tokens_to_text(tokens: list[str]) -> str:
    """Join tokens: no space after ``x_`` or before ``+n``/newline, none at a line start, else one space."""
    out = []
    prev = NEWLINE
    for t in tokens:
        if not (prev == NEWLINE or t == NEWLINE or prev.endswith("_") or t.startswith("+")):
            out.append(" ")
        out.append(t)
        prev = t
    return "".join(out)
