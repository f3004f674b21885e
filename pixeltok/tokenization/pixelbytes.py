"""PixelBytes' unified text + pixel vocabulary (Furfaro 2024), its 3x3 context windows, and sprite pre-processing.

One id space holds text bytes and palette colours, so a caption and a pixel-art image form a single sequence::

    id    token
    0     <pad>        padding (also the "nothing here" value inside windows)
    1     <bos>
    2     <eos>
    3     <unk>        a caption character outside the byte set
    4     "\\t"         end of a pixel row (also ends the size header)
    5     "\\n"         end of a segment (image or caption)
    6-100 " " .. "~"   printable ASCII, in code-point order (id = 6 + ord(c) - 32)
    101-  <nes00> ..   the 55 NES colours in palette order, then <transparent> (palette index + 101)

A sample is ``<bos>`` + image part + caption part + ``<eos>`` (or caption first)::

    image part   = b"{W}x{H}" "\\t"  row_0 "\\t" row_1 "\\t" ... row_{H-1} "\\t"  "\\n"    (row = W colour ids)
    caption part = caption bytes "\\n"

Windows (:func:`build_windows`): every position ``i`` gets a 3x3 grid of ids that only holds tokens at
positions ``<= i`` (right and below are always 0 = ``<pad>``, so nothing leaks from the future)::

    [[above-left, above, above-right],
     [left,       self,  0          ],
     [0,          0,     0          ]]

* A pixel (colour id) at column ``c`` of a pixel row: ``left`` is the pixel at ``c - 1`` of the same row (0 for the
  first pixel of a row); the top row holds columns ``c - 1, c, c + 1`` of the row above, when the previous pixel row
  is separated from this one by exactly one ``\\t`` (0 where that row is shorter, so rows of unequal length work;
  0 for the first row of an image).
* Any other token (text byte, ``\\t``, ``\\n``, special): ``left`` = the previous token (0 at position 0), ``self``.
"""

from __future__ import annotations

import json
import os
import unicodedata

import numpy as np
from PIL import Image

from transformers import AutoTokenizer, PreTrainedTokenizer

from pixeltok.image_io import ImageInputError, to_rgba
from pixeltok.tokenization.palettes import ALPHA_THRESHOLD, get_palette
from pixeltok.tokenization.pixel_codec import as_id_array

__all__ = ["PixelBytesTokenizer", "pixelize", "build_windows", "SPECIAL_TOKENS", "BYTE_CHARS"]

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
# \t ends a pixel row, \n ends a segment; then printable ASCII in code-point order.
BYTE_CHARS = ("\t", "\n") + tuple(chr(c) for c in range(32, 127))
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
ROW_ID = len(SPECIAL_TOKENS) + BYTE_CHARS.index("\t")  # 4
SEGMENT_ID = len(SPECIAL_TOKENS) + BYTE_CHARS.index("\n")  # 5
FIRST_COLOR_ID = len(SPECIAL_TOKENS) + len(BYTE_CHARS)  # 101
_WS = {ord(c): " " for c in "\t\n\r\x0b\x0c"}


# --------------------------------------------------------------------------------------------------------------------
# Pre-processing
# --------------------------------------------------------------------------------------------------------------------
def pixelize(image, long_side: int = 25, transparency: str = "white", crop: bool = True, palette: str = "nes55") -> np.ndarray:
    """The reference sprite pre-processing: any image -> ``(H, W)`` int16 palette indices, long side <= ``long_side``.

    Steps: crop to the bounding box of opaque pixels (alpha >= 128) when ``crop``; composite alpha on white
    (``transparency="white"``) or keep pixels with alpha < 128 as the palette's transparent index
    (``transparency="token"``, index ``len(palette)`` = 55 for NES-55); nearest-neighbour downscale so the long side
    is ``long_side`` (never upscaled); nearest palette colour in CIELAB. Vectorized (no per-pixel Python).
    """
    if transparency not in ("white", "token"):
        raise ValueError(f"pixelize: transparency must be 'white' or 'token', got {transparency!r}")
    if not isinstance(long_side, (int, np.integer)) or long_side < 1:
        raise ValueError(f"pixelize: long_side must be a positive int, got {long_side!r}")
    rgba = to_rgba(image)
    if crop:
        opaque = rgba[..., 3] >= ALPHA_THRESHOLD
        if not opaque.any():
            raise ImageInputError(f"pixelize: image of size {rgba.shape[1]}x{rgba.shape[0]} is fully transparent; nothing to crop to")
        rows, cols = np.flatnonzero(opaque.any(1)), np.flatnonzero(opaque.any(0))
        rgba = rgba[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = rgba.shape[:2]
    if max(h, w) > long_side:
        scale = long_side / max(h, w)
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        # nearest neighbour: sample the centre of each destination cell
        ys = np.minimum(((np.arange(nh) + 0.5) * h / nh).astype(np.int64), h - 1)
        xs = np.minimum(((np.arange(nw) + 0.5) * w / nw).astype(np.int64), w - 1)
        rgba = rgba[ys[:, None], xs[None, :]]
    if transparency == "white":
        a = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = np.rint(rgba[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a)).astype(np.uint8)
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    return get_palette(palette).quantize_indices(np.ascontiguousarray(rgba))


# --------------------------------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------------------------------
def _windows_1d(ids: np.ndarray, first_color_id: int, num_colors: int, row_id: int) -> np.ndarray:
    L = len(ids)
    out = np.zeros((L, 3, 3), dtype=ids.dtype)
    if L == 0:
        return out
    out[:, 1, 1] = ids
    out[1:, 1, 0] = ids[:-1]  # left = previous token (overwritten below for pixels)
    is_pix = (ids >= first_color_id) & (ids < first_color_id + num_colors)
    if not is_pix.any():
        return out
    prev_pix = np.concatenate([[False], is_pix[:-1]])
    starts = np.flatnonzero(is_pix & ~prev_pix)  # (R,) first position of each pixel run (= pixel row)
    run_of = np.cumsum(is_pix & ~prev_pix) - 1  # run index of every position (valid at pixels)
    ends = np.flatnonzero(is_pix & ~np.concatenate([is_pix[1:], [False]])) + 1  # exclusive ends
    lens = ends - starts
    pos = np.flatnonzero(is_pix)
    k = run_of[pos]
    col = pos - starts[k]
    # left: previous pixel of the same row, nothing for the first pixel of a row
    out[pos, 1, 0] = np.where(col > 0, ids[pos - 1], 0)
    # the row above is the previous run when exactly one row separator lies between them
    has_above = np.zeros(len(starts), dtype=bool)
    if len(starts) > 1:
        gap_ok = (starts[1:] == ends[:-1] + 1) & (ids[np.minimum(ends[:-1], L - 1)] == row_id)
        has_above[1:] = gap_ok
    above_len = np.where(has_above[k], lens[np.maximum(k - 1, 0)], 0)
    above_start = starts[np.maximum(k - 1, 0)]
    for j, dc in enumerate((-1, 0, 1)):
        c = col + dc
        ok = (c >= 0) & (c < above_len)
        out[pos, 0, j] = np.where(ok, ids[np.clip(above_start + c, 0, L - 1)], 0)
    return out


def build_windows(ids, first_color_id: int = FIRST_COLOR_ID, num_colors: int = 56, row_id: int = ROW_ID) -> np.ndarray:
    """3x3 causal windows of an id sequence (see the module docstring for the exact layout).

    Args:
        ids: ``(L,)`` or ``(B, L)`` ints (list, numpy or torch).
        first_color_id, num_colors: the colour id range ``[first_color_id, first_color_id + num_colors)``.
        row_id: id of the row separator ``\\t``.
    Returns:
        ``(L, 3, 3)`` or ``(B, L, 3, 3)`` int64 array; batch rows are independent.
    """
    if type(ids).__module__.startswith("torch"):
        ids = ids.detach().cpu().numpy()
    a = np.asarray(ids)
    if a.dtype == object or not (a.size == 0 or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"build_windows: ids must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.ndim == 1:
        return _windows_1d(a, first_color_id, num_colors, row_id)
    if a.ndim == 2:
        return np.stack([_windows_1d(r, first_color_id, num_colors, row_id) for r in a]) if len(a) else np.zeros((0, a.shape[1], 3, 3), np.int64)
    raise ValueError(f"build_windows: ids must be (L,) or (B, L), got shape {a.shape}")


# --------------------------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------------------------
class PixelBytesTokenizer(PreTrainedTokenizer):
    """Byte + palette tokenizer of PixelBytes: text characters and pixel colours share one vocabulary.

    ``tokenizer(text)`` / ``decode`` work on text (colour tokens print as ``<nes0f>``); images go through
    :meth:`encode_sample` / :meth:`decode_sample`, windows through :meth:`build_windows`.

    Args:
        palette: built-in palette name (``"nes55"``: 55 colours + transparent).
        long_side, transparency, crop: defaults of :func:`pixelize` used when :meth:`encode_sample` gets an image.
    """

    vocab_files_names = {"vocab_file": "vocab.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str | None = None, palette: str = "nes55", long_side: int = 25,
                 transparency: str = "white", crop: bool = True, pad_token="<pad>", bos_token="<bos>",
                 eos_token="<eos>", unk_token="<unk>", **kwargs):
        self.palette = palette
        self.color_palette = get_palette(palette)
        self.long_side, self.transparency, self.crop = int(long_side), transparency, bool(crop)
        colours = tuple(f"<{n}>" for n in self.color_palette.all_names)
        tokens = SPECIAL_TOKENS + BYTE_CHARS + colours
        self.encoder = {t: i for i, t in enumerate(tokens)}  # the vocabulary must exist before super().__init__
        self.decoder = dict(enumerate(tokens))
        if vocab_file is not None:  # a saved vocabulary must be the one this palette defines
            with open(vocab_file, encoding="utf-8") as f:
                saved = json.load(f)
            if saved != self.encoder:
                raise ValueError(f"{vocab_file}: vocabulary does not match the PixelBytes layout for palette {palette!r}")
        self.first_color_id = FIRST_COLOR_ID
        self.num_colors = len(colours)
        self.row_token_id, self.segment_token_id = ROW_ID, SEGMENT_ID
        # byte -> id lookup table (256 entries; non-vocabulary bytes -> <unk>)
        self._byte_lut = np.full(256, UNK_ID, dtype=np.int64)
        for i, c in enumerate(BYTE_CHARS):
            self._byte_lut[ord(c)] = len(SPECIAL_TOKENS) + i
        kwargs.setdefault("special_tokens_pattern", "bos_eos")
        super().__init__(pad_token=pad_token, bos_token=bos_token, eos_token=eos_token, unk_token=unk_token,
                         palette=palette, long_side=long_side, transparency=transparency, crop=crop, **kwargs)

    # -- vocabulary ----------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.encoder)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        out, i = [], 0
        while i < len(text):  # colour tokens written as "<name>" come back as one token (decode -> encode round trip)
            if text[i] == "<":
                j = text.find(">", i)
                if j > 0 and text[i:j + 1] in self.encoder:
                    out.append(text[i:j + 1])
                    i = j + 1
                    continue
            out.append(text[i])
            i += 1
        return out

    def _convert_token_to_id(self, token: str) -> int:
        return self.encoder.get(token, UNK_ID)

    def _convert_id_to_token(self, index: int) -> str:
        return self.decoder.get(int(index), "<unk>")

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        if not os.path.isdir(save_directory):
            raise ValueError(f"save_vocabulary: {save_directory} is not a directory")
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "vocab.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.encoder, f, ensure_ascii=False, indent=0)
        return (path,)

    # -- ids ------------------------------------------------------------------------------------------------------
    def is_color_id(self, ids) -> np.ndarray:
        a = np.asarray(ids)
        return (a >= self.first_color_id) & (a < self.first_color_id + self.num_colors)

    def caption_ids(self, caption: str) -> np.ndarray:
        """Caption -> byte ids (``(N,)`` int64). Accents are folded to ASCII (NFKD), whitespace control characters
        become spaces (``\\t``/``\\n`` are structural), anything else outside printable ASCII becomes ``<unk>``."""
        if not isinstance(caption, str):
            raise TypeError(f"caption must be a str, got {type(caption).__name__}")
        text = unicodedata.normalize("NFKD", caption).translate(_WS)
        text = "".join(c for c in text if not unicodedata.combining(c))
        # encode the rest; characters outside ASCII become one <unk> each
        codes = np.fromiter((ord(c) if ord(c) < 128 else 0 for c in text), dtype=np.int64, count=len(text))
        return self._byte_lut[codes]

    def image_ids(self, image_or_indices) -> np.ndarray:
        """Image (PIL/array/tensor/path, pixelized with this tokenizer's settings) or ``(H, W)`` integer palette indices
        (any integer dtype except uint8, which is read as a grey image) -> header + rows ids, ``(N,)`` int64."""
        idx = self._as_indices(image_or_indices)
        h, w = idx.shape
        header = self._byte_lut[np.frombuffer(f"{w}x{h}".encode("ascii"), dtype=np.uint8)]
        grid = np.concatenate([idx.astype(np.int64) + self.first_color_id, np.full((h, 1), ROW_ID, np.int64)], 1)
        return np.concatenate([header, [ROW_ID], grid.reshape(-1), [SEGMENT_ID]])

    def _as_indices(self, x) -> np.ndarray:
        if type(x).__module__.startswith("torch") and x.ndim == 2 and not x.is_floating_point() and str(x.dtype) != "torch.uint8":
            x = x.detach().cpu().numpy()
        if isinstance(x, np.ndarray) and x.ndim == 2 and np.issubdtype(x.dtype, np.integer) and x.dtype != np.uint8:
            if x.size == 0:
                raise ValueError(f"palette indices: empty array of shape {x.shape}")
            if x.min() < 0 or x.max() >= self.num_colors:
                raise ValueError(f"palette indices out of range [0, {self.num_colors - 1}] (min {x.min()}, max {x.max()})")
            return x
        return pixelize(x, long_side=self.long_side, transparency=self.transparency, crop=self.crop, palette=self.palette)

    def encode_sample(self, image_or_indices, caption: str, order: str = "image_first", add_special_tokens: bool = True) -> list[int]:
        """One training sample: ``[<bos>] image part, caption part [<eos>]`` (or caption first), as a list of ids."""
        if order not in ("image_first", "caption_first"):
            raise ValueError(f"order must be 'image_first' or 'caption_first', got {order!r}")
        img = self.image_ids(image_or_indices)
        cap = np.concatenate([self.caption_ids(caption), [SEGMENT_ID]])
        parts = [img, cap] if order == "image_first" else [cap, img]
        if add_special_tokens:
            parts = [[BOS_ID]] + parts + [[EOS_ID]]
        return np.concatenate(parts).astype(np.int64).tolist()

    def build_windows(self, ids) -> np.ndarray:
        """``(L,)`` or ``(B, L)`` ids -> ``(L, 3, 3)`` / ``(B, L, 3, 3)`` causal windows (module-level :func:`build_windows`)."""
        return build_windows(ids, self.first_color_id, self.num_colors, ROW_ID)

    def decode_sample(self, ids, strict: bool = False) -> tuple[str, Image.Image | None]:
        """A (generated) id sequence -> ``(caption, RGBA PIL image or None)``.

        Reading stops at the first ``<eos>``; ``<pad>``/``<bos>`` are dropped. Segments end at ``\\n``; the first
        segment holding colour ids is the image, the text segments joined by ``\\n`` are the caption (an unterminated
        last segment still counts). In the image segment, text before the first ``\\t`` is the ``WxH`` header, rows are
        the ``\\t``-separated runs of colour ids; rows shorter than the widest are padded with transparent pixels.
        With ``strict=True`` any deviation (missing/mismatched header, unequal rows, text bytes inside rows) raises
        ``ValueError`` instead of being repaired.
        """
        a = as_id_array(ids, "decode_sample: ids")  # refuses floats, strings, ragged lists, > 64-bit ints
        if (a < 0).any() or (a >= self.vocab_size).any():
            raise ValueError(f"decode_sample: ids outside [0, {self.vocab_size}) : {a[(a < 0) | (a >= self.vocab_size)][:5].tolist()}")
        eos = np.flatnonzero(a == EOS_ID)
        if len(eos):
            a = a[:eos[0]]
        a = a[(a != PAD_ID) & (a != BOS_ID)]
        cuts = np.flatnonzero(a == SEGMENT_ID)
        segments = [s for s in np.split(a, cuts + 1)]
        segments = [s[:-1] if len(s) and s[-1] == SEGMENT_ID else s for s in segments]
        image, texts = None, []
        for seg in segments:
            if image is None and self.is_color_id(seg).any():
                image = self._decode_image_segment(seg, strict)
            elif len(seg) and not self.is_color_id(seg).any():
                texts.append(self._ids_to_text(seg))
            elif strict and len(seg):
                raise ValueError("decode_sample(strict): more than one image segment")
        return "\n".join(texts), image

    def _ids_to_text(self, seg: np.ndarray) -> str:
        return "".join(self.decoder[int(i)] if i >= len(SPECIAL_TOKENS) else ("\ufffd" if i == UNK_ID else "") for i in seg)

    def _decode_image_segment(self, seg: np.ndarray, strict: bool) -> Image.Image:
        tabs = np.flatnonzero(seg == ROW_ID)
        pieces = np.split(seg, tabs)
        pieces = [p[1:] if len(p) and p[0] == ROW_ID else p for p in pieces]
        header_w = header_h = None
        if pieces and len(pieces[0]) and not self.is_color_id(pieces[0]).any():
            txt = self._ids_to_text(pieces[0])
            pieces = pieces[1:]
            try:
                header_w, header_h = (int(v) for v in txt.split("x"))
            except ValueError:
                if strict:
                    raise ValueError(f"decode_sample(strict): malformed size header {txt!r} (expected 'WxH')") from None
        elif strict:
            raise ValueError("decode_sample(strict): image segment without a 'WxH' header")
        rows = []
        for p in pieces:
            col = self.is_color_id(p)
            if strict and not col.all() and len(p):
                raise ValueError(f"decode_sample(strict): non-colour ids inside a pixel row: {p[~col][:5].tolist()}")
            if col.any():
                rows.append(p[col] - self.first_color_id)
        if not rows:
            raise ValueError("decode_sample: image segment has no pixel rows")
        width = max(len(r) for r in rows)
        if strict and (len({len(r) for r in rows}) != 1 or (header_w, header_h) != (width, len(rows))):
            raise ValueError(f"decode_sample(strict): rows {[len(r) for r in rows]} do not match header {header_w}x{header_h}")
        grid = np.full((len(rows), width), self.color_palette.transparent_index, dtype=np.int64)
        lens = np.array([len(r) for r in rows])
        grid[np.arange(width)[None, :] < lens[:, None]] = np.concatenate(rows)
        return Image.fromarray(self.color_palette.indices_to_rgba(grid), mode="RGBA")


# -- registration (idempotent: importing twice, or next to another module that registered, is harmless) -------------
def _register() -> None:
    try:
        from pixeltok.models.pxby.configuration_pxby import PxByConfig
    except ImportError:  # the model package is optional for the tokenizer
        return
    AutoTokenizer.register(PxByConfig, slow_tokenizer_class=PixelBytesTokenizer, exist_ok=True)


PixelBytesTokenizer.register_for_auto_class("AutoTokenizer")
if __name__ != "__main__" and not __name__.startswith("transformers_modules"):
    _register()
