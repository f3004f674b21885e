"""PixelTextProcessor: images as plain pixel tokens inside the vocabulary of ANY Hugging Face text tokenizer.

The processor adds the pixel vocabulary of one palette / layout / maximum side to a text tokenizer as ordinary added
tokens (``<px_c_red>``, ``<px_3_>``, ``<px_w16>``, ``<px_nl>``, ...; a prefix no text contains, so the tokenizer
never produces them from text) plus three named special tokens, ``<image>`` (the placeholder in prompts), ``<boi>``
and ``<eoi>`` (around every image). ``processor(text=..., images=...)`` tokenizes the text, then replaces each
``<image>`` id with ``<boi>`` + that image's pixel-token ids + ``<eoi>``: ids computed straight from the pixels with
numpy (quantize, then :class:`~pixeltok.tokenization.pixel_codec.PixelVocab`), no text round trip.

    >>> from transformers import ByT5Tokenizer
    >>> proc = PixelTextProcessor(ByT5Tokenizer(), palette="nes55", layout="runs", max_side=96)
    >>> batch = proc(text=["<image> reads:"], images=[img], return_tensors="pt", padding=True)
    >>> batch["input_ids"].shape, batch["image_mask"].shape        # (B, L), (B, L)
    >>> proc.decode(batch["input_ids"][0])                         # '<image> reads:</s>'
    >>> proc.decode_images(batch["input_ids"][0])[0]               # == PixelTokenizer(...).quantize(img)

The layout is the Emu3 / Chameleon pattern with exact, lossless pixel tokens: ``raster`` is one colour token per
pixel with a row-end token (like Emu3's ``height x (width + 1)``), ``grouped`` and ``runs`` are shorter.
``pack=k`` (raster only) writes ``k`` consecutive pixels of a scan line as ONE token, ``<px_s_0031>`` (one palette
digit per pixel): with a 4-grey palette, ``scan="columns"``, ``image_height=12`` and ``pack=6`` a column of a word
image is two tokens, about 6x fewer than one per pixel, still exact.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image
from transformers import AddedToken, BatchFeature, ProcessorMixin

from .image_io import ImageInput, composite_on, prepare_reader_image, to_rgba
from .palettes import Palette, rgb_to_lab
from .pixel_codec import LAYOUTS, TokenFormatError, as_id_array, pad_rows
from .tokenization_pixel import PixelTokenizer

# token groups of PixelVocab that each layout can emit (the others are never added)
_LAYOUT_GROUPS = {
    "raster": ("nl", "w", "h", "c"),
    "grouped": ("nl", "w", "h", "x", "yc", "y", "c"),
    "runs": ("nl", "w", "h", "x", "yc", "y", "pc", "p", "c"),
}
_GROUP_SIZES = ("nl", "w", "h", "x", "yc", "y", "pc", "p", "c")


def pixel_token_name(token: str) -> str:
    """The text-tokenizer surface form of one pixel token (``"c_red"`` -> ``"<px_c_red>"``, ``"\\n"`` -> ``"<px_nl>"``)."""
    return "<px_nl>" if token == "\n" else f"<px_{token}>"


class PixelTextProcessor(ProcessorMixin):
    r"""Text + image processor over any text tokenizer (slow or fast).

    Args:
        tokenizer: any ``PreTrainedTokenizer``/``PreTrainedTokenizerFast``; the pixel tokens and ``<image>``,
            ``<boi>``, ``<eoi>`` are added to it when missing (so ids are unchanged after a save/load).
        palette: ``"named128"``, ``"nes55"``, a :class:`Palette` or its dict form (learned palettes are saved in full).
        layout: ``"raster"`` | ``"grouped"`` | ``"runs"``.
        max_side: largest width/height an image may have (larger ones raise unless ``resize``).
        resize: ``None`` (refuse larger images) or ``"nearest"`` | ``"box"`` | ``"lanczos"``.
        scan: ``"rows"`` (the PixelTokenizer's order) or ``"columns"``: the image is written transposed, column by
            column from the left, so a sequence model meets a line of text in reading order, and with a fixed image
            height every pixel's left neighbour lies the same number of tokens back.
        image_height: when set, every image is first fitted to this height (aspect kept, at most ``max_side`` wide,
            :func:`~pixeltok.image_io.prepare_reader_image`), as a reader of one line of text wants.
        grayscale: quantize the luma instead of the colour (text read from coloured backgrounds: the contrast that
            matters survives a small palette of greys).
        normalize: stretch each image's luma so its background (the median) is white and its ink (the far tail, 2nd
            or 98th percentile, whichever lies farther from the median) black, whatever the colours and polarity were
            (implies ``grayscale``): a palette of 2-4 greys then means the same thing in every image.
        crop: with ``image_height``, trim each image to its ink's bounding box first
            (:func:`~pixeltok.image_io.ink_box`): the text fills the height whatever its margins and font size.
        pack: pixels per token along each scan line (``raster`` only, palettes of at most 16 colours, at most 65,536
            strip tokens). ``1`` is one colour token per pixel; with ``pack > 1`` transparency is composited over
            white and a scan line is ``ceil(length / pack)`` strip tokens with no line-end token (the header's size
            says where lines end).
    """

    tokenizer_class = "AutoTokenizer"
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, tokenizer=None, palette: str | dict | Palette = "named128", layout: str = "raster",
                 max_side: int = 96, resize: str | None = None, scan: str = "rows", image_height: int | None = None,
                 grayscale: bool = False, normalize: bool = False, pack: int = 1, crop: bool = False,
                 image_token: str = "<image>",
                 boi_token: str = "<boi>", eoi_token: str = "<eoi>", **kwargs):
        if tokenizer is None:
            raise ValueError("PixelTextProcessor needs a text tokenizer (e.g. transformers.ByT5Tokenizer())")
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
        if scan not in ("rows", "columns"):
            raise ValueError(f"unknown scan {scan!r}; choose 'rows' or 'columns'")
        if image_height is not None and not (isinstance(image_height, int) and 4 <= image_height <= min(128, max_side)):
            raise ValueError(f"image_height must be None or an int in 4..{min(128, max_side)}, got {image_height!r}")
        self.scan, self.image_height, self.normalize = scan, image_height, bool(normalize)
        if crop and image_height is None:
            raise ValueError("crop=True needs image_height (the crop is fitted to that height)")
        self.crop = bool(crop)
        self.grayscale = bool(grayscale) or self.normalize
        self._pixels = PixelTokenizer(palette=palette, layout=layout, max_side=max_side, resize=resize)
        n_colours = len(self._pixels.color_palette)
        if not (isinstance(pack, int) and not isinstance(pack, bool) and pack >= 1):
            raise ValueError(f"pack must be an int >= 1, got {pack!r}")
        if pack > 1 and (layout != "raster" or n_colours > 16 or n_colours ** pack > 65536):
            raise ValueError(f"pack={pack} needs layout='raster' and a palette of at most 16 colours with at most "
                             f"65,536 strips (colours ** pack); got layout={layout!r}, {n_colours} colours")
        self.pack = pack
        self.palette = self._pixels.palette  # a name, or a learned palette's dict (what processor_config.json keeps)
        self.layout, self.max_side, self.resize = layout, int(max_side), resize
        self.image_token, self.boi_token, self.eoi_token = image_token, boi_token, eoi_token
        _add_pixel_vocabulary(tokenizer, self._pixels, layout, {"image_token": image_token, "boi_token": boi_token,
                                                                "eoi_token": eoi_token}, pack)
        super().__init__(tokenizer, **kwargs)
        self._build_tables()

    def _build_tables(self) -> None:
        tok, vocab = self.tokenizer, self._pixels._pixel_vocab
        self.image_token_id = tok.convert_tokens_to_ids(self.image_token)
        self.boi_token_id = tok.convert_tokens_to_ids(self.boi_token)
        self.eoi_token_id = tok.convert_tokens_to_ids(self.eoi_token)
        pixel_ids = _pixel_vocab_ids(vocab, self.layout)
        text_ids = np.asarray(tok.convert_tokens_to_ids([pixel_token_name(vocab.tokens[i]) for i in pixel_ids]))
        if tok.unk_token_id is not None and (text_ids == tok.unk_token_id).any():
            raise ValueError("the tokenizer lost some pixel tokens (they map to its unknown token); "
                             "build the processor from the tokenizer it was saved with")
        self._to_text = np.full(len(vocab), -1, np.int64)  # pixel-vocab id -> text-tokenizer id
        self._to_text[pixel_ids] = text_ids
        # the layout a window-building model (PxBy) needs: colour ids in palette order, and the line-end token
        kinds = np.asarray([vocab.type_of[i] for i in pixel_ids])
        colours = pixel_ids[kinds == "C"]
        self.color_token_ids = self._to_text[colours[np.argsort([vocab.value_of[i] for i in colours])]]
        ends = self._to_text[pixel_ids[kinds == "N"]]
        self.row_token_id = int(ends[0]) if len(ends) and self.pack == 1 else None
        self._to_pixel = np.full(max(len(tok), int(text_ids.max()) + 1), -1, np.int64)  # and back
        self._to_pixel[text_ids] = pixel_ids
        self._strip_text = self._to_code = None
        if self.pack > 1:  # strip code -> text id, and back
            self._strip_text = np.asarray(tok.convert_tokens_to_ids(strip_token_names(self._n_colours, self.pack)))
            self._to_code = np.full(max(len(self._to_pixel), int(self._strip_text.max()) + 1), -1, np.int64)
            self._to_code[self._strip_text] = np.arange(len(self._strip_text))
            self._to_pixel = np.pad(self._to_pixel, (0, len(self._to_code) - len(self._to_pixel)), constant_values=-1)
            text_ids = np.concatenate([text_ids, self._strip_text])
        self.pixel_token_ids = np.sort(text_ids)

    @property
    def _n_colours(self) -> int:
        return len(self._pixels.color_palette)

    # -- images -> ids -----------------------------------------------------------------------------------------------
    @property
    def pixel_tokenizer(self) -> PixelTokenizer:
        """The :class:`PixelTokenizer` with this processor's palette, layout and size rules."""
        return self._pixels

    def image_ids(self, image: ImageInput) -> np.ndarray:
        """One image -> its pixel-token ids in the text tokenizer's vocabulary (without ``<boi>``/``<eoi>``)."""
        idx = self._pixels.quantize_indices(self.prepare(image))
        if self.scan == "columns":
            idx = np.ascontiguousarray(idx.T)
        if self.pack == 1:
            return self._to_text[self._pixels._pixel_vocab.encode(idx, self.layout)]
        rows, length = idx.shape
        if max(rows, length) > self.max_side:
            raise ValueError(f"image {idx.shape[1]}x{idx.shape[0]} exceeds max_side={self.max_side}")
        P, k = self._n_colours, self.pack
        n = -(-length // k)
        padded = np.zeros((rows, n * k), np.int64)
        padded[:, :length] = idx  # opaque (prepare composites over white): every index < P
        codes = padded.reshape(rows, n, k) @ (P ** np.arange(k - 1, -1, -1, dtype=np.int64))
        return np.concatenate([self.strip_header_ids(length, rows), self._strip_text[codes.reshape(-1)]])

    def strip_header_ids(self, length: int, rows: int) -> np.ndarray:
        """The ``<px_w{length}> <px_h{rows}> <px_nl>`` ids that open a strip image of ``rows`` scan lines of ``length``
        pixels (``pack > 1``: a scan line is a column with ``scan="columns"``, a row otherwise)."""
        o = self._pixels._pixel_vocab.offset
        return self._to_text[[o["w"] + length - 1, o["h"] + rows - 1, o["nl"]]]

    def prepare(self, image: ImageInput) -> ImageInput:
        """The image as the processor tokenizes it (before quantization): :func:`prepare_image` with this
        processor's ``image_height``, ``max_side``, ``grayscale``, ``normalize`` and ``crop`` (opaque when
        ``pack > 1``)."""
        return prepare_image(image, self.image_height, self.max_side, self.grayscale, self.normalize,
                             opaque=self.pack > 1, crop=self.crop)

    def quantize(self, image: ImageInput):
        """What :meth:`decode_images` gives back for ``image``: prepared, then quantized to the palette."""
        return self._pixels.quantize(self.prepare(image))

    def num_image_tokens(self, image: ImageInput) -> int:
        """Tokens one image takes in a sequence, ``<boi>`` and ``<eoi>`` included."""
        return len(self.image_ids(image)) + 2

    def __call__(self, images: ImageInput | Sequence[ImageInput] | None = None, text: str | Sequence[str] | None = None,
                 *, return_tensors: str | None = None, padding: bool | str = False, add_special_tokens: bool = True,
                 return_image_mask: bool = True, **kwargs) -> BatchFeature:
        """Tokenize ``text`` and expand every ``<image>`` into the next image's ``<boi>`` + pixel ids + ``<eoi>``.

        ``images``: one image or a flat list, consumed in placeholder order (a list per sample is also accepted).
        ``text``: one string or a list; ``None`` means one ``<image>`` per image. Returns a ``BatchFeature`` with
        ``input_ids`` and ``attention_mask`` (``(B, L)`` with ``padding`` and ``return_tensors="pt"|"np"``) and,
        unless ``return_image_mask=False``, ``image_mask``: 1 on every position of an image span (``<boi>`` through
        ``<eoi>``). Truncation is refused: a cut image is not decodable.
        """
        if kwargs.get("truncation"):
            raise ValueError("PixelTextProcessor does not truncate: a cut image cannot be decoded")
        kwargs.pop("truncation", None)
        images = _flat_images(images)
        if text is None:
            if not images:
                raise ValueError("pass text=..., images=... or both")
            text = [self.image_token] * len(images)
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a list of strings")
        n_slots = sum(t.count(self.image_token) for t in texts)
        if n_slots != len(images):
            raise ValueError(f"{n_slots} {self.image_token} placeholder(s) in the text but {len(images)} image(s)")
        enc = self.tokenizer(texts, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]
        spans = iter([self.image_ids(im) for im in images])
        rows, masks = [], []
        for ids in enc:
            ids = np.asarray(ids, np.int64)
            slots = np.flatnonzero(ids == self.image_token_id)
            parts, mparts, start = [], [], 0
            for s in slots:
                img = next(spans)
                parts += [ids[start:s], [self.boi_token_id], img, [self.eoi_token_id]]
                mparts += [np.zeros(s - start, np.int64), np.ones(len(img) + 2, np.int64)]
                start = s + 1
            parts.append(ids[start:])
            mparts.append(np.zeros(len(ids) - start, np.int64))
            rows.append(np.concatenate(parts).astype(np.int64))
            masks.append(np.concatenate(mparts))
        data = self._pad(rows, masks, padding, return_image_mask)
        if return_tensors is None and not padding:
            data = {k: [r.tolist() for r in v] for k, v in data.items()}
        return BatchFeature(data, tensor_type=return_tensors)

    def _pad(self, rows, masks, padding, return_image_mask) -> dict:
        attn = [np.ones(len(r), np.int64) for r in rows]
        if padding and padding != "do_not_pad":
            pad_id = self.tokenizer.pad_token_id
            if pad_id is None:
                raise ValueError("padding needs a pad token: set tokenizer.pad_token (e.g. = tokenizer.eos_token)")
            L = max(len(r) for r in rows)
            left = self.tokenizer.padding_side == "left"
            rows, attn, masks = pad_rows(rows, pad_id, L, left), pad_rows(attn, 0, L, left), pad_rows(masks, 0, L, left)
        out = {"input_ids": rows, "attention_mask": attn}
        if return_image_mask:
            out["image_mask"] = masks
        return out

    # -- ids -> text and images --------------------------------------------------------------------------------------
    def _spans(self, ids) -> tuple[np.ndarray, list[tuple[int, int]]]:
        a = as_id_array(ids)
        boi, eoi = np.flatnonzero(a == self.boi_token_id), np.flatnonzero(a == self.eoi_token_id)
        spans = []
        for b in boi:
            e = eoi[eoi > b]
            if not len(e):
                raise TokenFormatError(f"image starting at position {b} has no {self.eoi_token} (cut off?)")
            if spans and b < spans[-1][1]:
                raise TokenFormatError(f"{self.boi_token} at position {b} inside another image")
            spans.append((int(b), int(e[0])))
        if len(eoi) != len(spans):
            raise TokenFormatError(f"{len(eoi)} {self.eoi_token} but {len(spans)} {self.boi_token} tokens")
        return a, spans

    def decode(self, ids, skip_special_tokens: bool = False, **kwargs) -> str:
        """Ids -> text, each image span (``<boi>`` ... ``<eoi>``) written as one ``<image>``."""
        a, spans = self._spans(ids)
        pieces, start = [], 0
        for b, e in spans:
            pieces.append(self.tokenizer.decode(a[start:b].tolist(), skip_special_tokens=skip_special_tokens, **kwargs))
            start = e + 1
        pieces.append(self.tokenizer.decode(a[start:].tolist(), skip_special_tokens=skip_special_tokens, **kwargs))
        return self.image_token.join(pieces)

    def batch_decode(self, sequences, **kwargs) -> list[str]:
        return [self.decode(s, **kwargs) for s in sequences]

    def decode_images(self, ids, canonical: bool = False) -> list:
        """Ids -> the images of every span, exactly ``PixelTokenizer.quantize`` of the inputs (PIL, RGB or RGBA).

        Any pixel order that covers each pixel once is accepted (a model's output need not list colours in palette
        order); ``canonical=True`` also requires exactly the processor's own encoding."""
        a, spans = self._spans(ids)
        images = []
        for b, e in spans:
            body = a[b + 1:e]
            if self.pack > 1:
                idx = self._decode_strips(body, b)
                images.append(self._pixels.indices_to_image(idx))
                continue
            bad = (body < 0) | (body >= len(self._to_pixel))
            px = np.where(bad, -1, self._to_pixel[np.clip(body, 0, len(self._to_pixel) - 1)])
            if (px < 0).any():
                k = int(np.flatnonzero(px < 0)[0])
                raise TokenFormatError(f"image at position {b}: id {int(body[k])} at position {b + 1 + k} is not a "
                                       f"{self.layout} pixel token")
            idx = self._pixels._pixel_vocab.decode(px, self.layout, canonical=canonical)
            if self.scan == "columns":
                idx = np.ascontiguousarray(idx.T)
            images.append(self._pixels.indices_to_image(idx))
        return images

    def _decode_strips(self, body: np.ndarray, b: int) -> np.ndarray:
        """``<w> <h> <nl>`` + strip ids -> ``(H, W)`` palette indices (in the image's orientation)."""
        vocab, P, k = self._pixels._pixel_vocab, self._n_colours, self.pack

        def lookup(table, ids):
            ok = (ids >= 0) & (ids < len(table))
            return np.where(ok, table[np.clip(ids, 0, len(table) - 1)], -1)

        head = lookup(self._to_pixel, body[:3])
        kinds = "".join(vocab.type_of[h] if h >= 0 else "?" for h in head.tolist())
        if kinds != "WHN":
            raise TokenFormatError(f"image at position {b}: expected a width, a height and <px_nl> after "
                                   f"{self.boi_token}, got {kinds!r}")
        length, rows = int(vocab.value_of[head[0]]), int(vocab.value_of[head[1]])
        n = -(-length // k)
        codes = lookup(self._to_code, body[3:])
        if len(codes) != rows * n or (codes < 0).any():
            why = (f"id {int(body[3 + np.flatnonzero(codes < 0)[0]])} is not a strip token" if (codes < 0).any()
                   else f"{len(codes)} strip tokens where its {length}x{rows} header needs {rows * n}")
            raise TokenFormatError(f"image at position {b}: {why}")
        idx = strip_digits(codes, P, k).reshape(rows, n * k)[:, :length].astype(np.int16)
        return np.ascontiguousarray(idx.T) if self.scan == "columns" else idx

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens: bool = True, **kwargs):
        """Generated ids -> the text after the prompt (HF pipeline hook)."""
        return self.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)


def prepare_image(image: ImageInput, image_height: int | None = None, max_side: int = 96, grayscale: bool = False,
                  normalize: bool = False, opaque: bool = False, crop: bool = False):
    """Fit ``image`` to ``image_height`` (aspect kept, at most ``max_side`` wide) when given; composite it over white
    when ``opaque``; make it grey (luma, alpha kept) when ``grayscale``; with ``normalize`` stretch the luma to
    black ink on a white background (:func:`normalize_luma`, implies ``grayscale``); with ``crop`` (and
    ``image_height``) trim it to its ink first. Otherwise return it unchanged."""
    if image_height is not None:
        image = prepare_reader_image(image, image_height, max_width=max_side, crop=crop)
    if opaque or normalize:
        rgb = composite_on(to_rgba(image))
        image = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    if grayscale or normalize:
        rgba = to_rgba(image)
        grey = np.asarray(Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB").convert("L"))
        if normalize:
            grey = normalize_luma(grey)
        image = np.dstack([grey, grey, grey, rgba[..., 3]])
    return image


def normalize_luma(grey: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 luma -> uint8 with the background (median) at 255 and the ink at 0.

    The ink level is the 2nd or the 98th percentile, whichever lies farther from the median (dark text on light, or
    light on dark); values beyond it clip. An image with no contrast (ink within 1 level of the median) is all white.
    """
    g = grey.astype(np.float32)
    bg = float(np.median(g))
    lo, hi = np.percentile(g, [2, 98])
    ink = lo if bg - lo >= hi - bg else hi
    if abs(bg - ink) < 1:
        return np.full(grey.shape, 255, np.uint8)
    return np.rint(np.clip((g - ink) / (bg - ink), 0, 1) * 255).astype(np.uint8)


# -- vocabulary ------------------------------------------------------------------------------------------------------
def _pixel_vocab_ids(vocab, layout: str) -> np.ndarray:
    starts = [vocab.offset[g] for g in _GROUP_SIZES] + [len(vocab)]
    bounds = {g: (starts[i], starts[i + 1]) for i, g in enumerate(_GROUP_SIZES)}
    return np.concatenate([np.arange(*bounds[g]) for g in _LAYOUT_GROUPS[layout]])


def strip_digits(codes: np.ndarray, n_colours: int, pack: int) -> np.ndarray:
    """``(N,)`` strip codes -> ``(N, pack)`` palette indices, first pixel of the strip first (base ``n_colours``)."""
    return np.asarray(codes, np.int64)[:, None] // (n_colours ** np.arange(pack - 1, -1, -1, dtype=np.int64)) % n_colours


def strip_token_names(n_colours: int, pack: int) -> list[str]:
    """The ``n_colours ** pack`` strip tokens, in code order: ``<px_s_`` + one hex palette digit per pixel + ``>``."""
    digits = strip_digits(np.arange(n_colours ** pack), n_colours, pack)
    hexd = np.array(list("0123456789abcdef"))[digits]
    return ["<px_s_" + "".join(r) + ">" for r in hexd.tolist()]


def _add_pixel_vocabulary(tokenizer, pixels: PixelTokenizer, layout: str, named: dict[str, str],
                          pack: int = 1) -> None:
    """Add the named special tokens and the layout's pixel tokens to ``tokenizer`` where missing (idempotent)."""
    missing = {k: v for k, v in named.items() if getattr(tokenizer, k, None) != v}
    if missing:
        # named special tokens survive save/load in tokenizer_config.json (transformers 5's extra_special_tokens)
        tokenizer._set_model_specific_special_tokens(special_tokens=missing)
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=True) for t in named.values()], special_tokens=True)
    vocab = pixels._pixel_vocab
    names = [pixel_token_name(vocab.tokens[i]) for i in _pixel_vocab_ids(vocab, layout)]
    if pack > 1:
        names += strip_token_names(len(pixels.color_palette), pack)
    have = tokenizer.get_vocab()
    new = [AddedToken(t, normalized=False, special=False, lstrip=False, rstrip=False) for t in names if t not in have]
    if new:
        tokenizer.add_tokens(new)


def pixel_embedding_init(processor: PixelTextProcessor, dim: int) -> dict[int, np.ndarray]:
    """Structured start vectors (unit RMS) for the pixel tokens: each colour from its CIELAB coordinates, each
    coordinate / size / run-length token from sinusoids of its value (as transformer positions), ``<px_nl>`` zero."""
    vocab = processor.pixel_tokenizer._pixel_vocab
    out: dict[int, np.ndarray] = {}

    def sinusoid(value: np.ndarray, d: int, scale: float) -> np.ndarray:  # (N,) -> (N, d)
        freqs = np.exp(-math.log(scale) * np.arange(d // 2) / max(d // 2, 1))
        ang = value[:, None] * freqs[None, :]
        enc = np.concatenate([np.sin(ang), np.cos(ang)], 1)
        return np.pad(enc, ((0, 0), (0, d - enc.shape[1])))

    pal = processor.pixel_tokenizer.color_palette
    lab = np.concatenate([rgb_to_lab(pal.colors), [[100.0, 0.0, 0.0]]])  # transparent last: placed as white
    d3 = [dim // 3, dim // 3, dim - 2 * (dim // 3)]
    colour = np.concatenate([sinusoid(lab[:, k] / (100.0 if k == 0 else 128.0) * math.pi, d3[k], 16.0)
                             for k in range(3)], 1)
    for i in _pixel_vocab_ids(vocab, processor.layout):
        tid = int(processor._to_text[i])
        t = vocab.type_of[i]
        if t == "C":
            v = colour[int(vocab.value_of[i])]
        elif t == "N":
            v = np.zeros(dim)
        else:
            v = sinusoid(np.array([float(vocab.value_of[i])]), dim, 10000.0)[0]
        rms = float(np.sqrt((v ** 2).mean())) or 1.0
        out[tid] = v / rms
    if processor.pack > 1:  # a strip = sum over its pixels of a fixed random rotation (one per place) of the colour
        P, k = processor._n_colours, processor.pack
        rots = np.linalg.qr(np.random.default_rng(0).standard_normal((k, dim, dim)))[0]  # (k, dim, dim) orthogonal
        digits = strip_digits(np.arange(P ** k), P, k)  # (P**k, k)
        vecs = sum(colour[digits[:, j]] @ rots[j].T for j in range(k))  # (P**k, dim)
        vecs /= np.sqrt((vecs ** 2).mean(1, keepdims=True)) + 1e-12
        out.update(zip(processor._strip_text.tolist(), vecs))
    return out


def init_pixel_embeddings(model, processor: PixelTextProcessor, from_row: int = 0) -> int:
    """Overwrite the input-embedding rows of the pixel tokens (those at index >= ``from_row``) with
    :func:`pixel_embedding_init`, scaled to the RMS of the other rows and centred on their mean, so neighbouring
    colours and coordinates start out close. Returns the number of rows written."""
    import torch

    emb = model.get_input_embeddings().weight
    vecs = {tid: v for tid, v in pixel_embedding_init(processor, emb.shape[1]).items() if tid >= from_row}
    others = torch.ones(emb.shape[0], dtype=torch.bool)
    others[list(vecs)] = False
    with torch.no_grad():
        base = emb[others].float()
        mean, rms = base.mean(0), float(base.std())
        for tid, v in vecs.items():
            emb[tid] = (mean + rms * torch.as_tensor(v, dtype=torch.float32)).to(emb.dtype)
    return len(vecs)


def resize_embeddings_for_pixels(model, processor: PixelTextProcessor, init: str = "mean") -> int:
    """Resize ``model``'s token embeddings to the processor's tokenizer; returns the new vocabulary size.

    ``init="mean"``: new rows start at the mean embedding (transformers' ``mean_resizing``). ``init="structured"``:
    new pixel-token rows start from :func:`pixel_embedding_init` (:func:`init_pixel_embeddings`).
    """
    if init not in ("mean", "structured"):
        raise ValueError(f"init must be 'mean' or 'structured', got {init!r}")
    n = len(processor.tokenizer)
    old = model.get_input_embeddings().weight.shape[0]
    if n != old:
        model.resize_token_embeddings(n, mean_resizing=old > 1)
    if init == "structured":
        init_pixel_embeddings(model, processor, from_row=old)
    return n


def _flat_images(images) -> list:
    if images is None:
        return []
    if isinstance(images, (list, tuple)):
        flat = []
        for im in images:
            flat.extend(im if isinstance(im, (list, tuple)) else [im])
        return flat
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    return [images]


__all__ = ["PixelTextProcessor", "prepare_image", "pixel_token_name", "pixel_embedding_init", "init_pixel_embeddings",
           "resize_embeddings_for_pixels"]

# a saved processor folder carries this file and its relative imports (auto_map), for trust_remote_code=True
PixelTextProcessor.register_for_auto_class("AutoProcessor")
