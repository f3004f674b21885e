"""The image <-> pixel-token logic of the pixel tokenizers, without transformers (numpy and Pillow only).

:class:`PixelImageMixin` is what ``PixelTokenizer`` / ``PixelTokenizerFast`` add to their HF base classes;
:class:`PixelImageCodec` is the same methods on their own, for callers that need no tokenizer (the command line:
importing transformers costs most of a second).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image

from .image_io import ImageInput, ImageInputError, to_rgba
from .palettes import BUILTIN_PALETTES, Palette, get_palette, train_palette
from .pixel_codec import (BOS, EOS, LAYOUTS, PAD, PixelVocab, TokenFormatError, as_id_array, format_hint, pad_rows,
                          tokens_to_text)

RESIZE_POLICIES = (None, "nearest", "box", "lanczos")
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}


def _resolve_palette(palette: str | dict | Palette, vocab: dict[str, int] | None = None) -> Palette:
    if isinstance(palette, Palette):
        return palette
    if isinstance(palette, dict):
        pal = Palette.from_dict(palette)
        return _legacy_order(pal, vocab) if isinstance(palette.get("colors"), dict) else pal
    if isinstance(palette, str):
        return get_palette(palette)
    raise TypeError(f"palette must be a name, a Palette or its dict form, got {type(palette).__name__}")


def _legacy_order(pal: Palette, vocab: dict[str, int] | None) -> Palette:
    """Folders saved before palettes were written as lists hold the names as a JSON object, which transformers sorted
    as strings (``k0, k1, k10, k2...``). Restore the id order from the saved vocabulary when there is one, else
    numerically for ``train_palette``'s ``k<i>`` names (their original order)."""
    if vocab and all(f"c_{n}" in vocab for n in pal.names):
        return pal.reordered(sorted(pal.names, key=lambda n: vocab[f"c_{n}"]))
    if set(pal.names) == {f"k{i}" for i in range(len(pal))}:
        return pal.reordered([f"k{i}" for i in range(len(pal))])
    return pal


class PixelImageMixin:
    """Image <-> token methods shared by the slow and fast pixel tokenizers.

    Expects ``self._pixel_vocab`` (:class:`PixelVocab`), ``self.layout``, ``self.resize`` and the HF tokenizer API.
    """

    _pixel_vocab: PixelVocab
    layout: str
    resize: str | None

    def _init_pixel_state(self, palette, layout, max_side, resize, vocab: dict[str, int] | None = None) -> dict:
        pal = _resolve_palette(palette, vocab)
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"unknown resize policy {resize!r}; choose one of {RESIZE_POLICIES}")
        self._pixel_vocab = PixelVocab(pal, max_side)
        self.layout, self.resize = layout, resize
        # what save_pretrained writes to tokenizer_config.json (built-in palettes by name, learned ones in full)
        return {"palette": palette if isinstance(palette, str) else pal.to_dict(), "layout": layout,
                "max_side": int(max_side), "resize": resize}

    @property
    def palette(self) -> str | dict:
        """The palette setting as saved in ``tokenizer_config.json``: a built-in name or a learned palette's dict."""
        pal = self._pixel_vocab.palette
        return pal.name if pal.name in BUILTIN_PALETTES and _resolve_palette(pal.name) is pal else pal.to_dict()

    @property
    def color_palette(self) -> Palette:
        """The :class:`Palette` object (colours, names, quantization)."""
        return self._pixel_vocab.palette

    @property
    def max_side(self) -> int:
        return self._pixel_vocab.max_side

    # -- pixels --------------------------------------------------------------------------------
    def _rgba(self, image: ImageInput, resize: str | None | bool = False) -> np.ndarray:
        rgba = to_rgba(image)
        policy = self.resize if resize is False else resize
        h, w = rgba.shape[:2]
        if max(h, w) > self.max_side:
            if policy is None:
                src = f"{image}: " if isinstance(image, (str, os.PathLike)) else ""
                raise ImageInputError(
                    f"{src}image is {w}x{h}, larger than max_side={self.max_side}; pass resize='nearest'|'box'|'lanczos' "
                    "(command line: --resize nearest) or use a tokenizer with a larger max_side (--max-side)")
            if policy not in _RESAMPLE:
                raise ValueError(f"unknown resize policy {policy!r}; choose one of {RESIZE_POLICIES}")
            s = self.max_side / max(h, w)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            rgba = np.asarray(Image.fromarray(rgba, "RGBA").resize(size, _RESAMPLE[policy]))
        return rgba

    def quantize_indices(self, image: ImageInput, resize: str | None | bool = False) -> np.ndarray:
        """Image -> ``(H, W)`` int16 palette indices (``len(palette)`` marks transparent pixels)."""
        return self.color_palette.quantize_indices(self._rgba(image, resize))

    def indices_to_image(self, idx: np.ndarray) -> Image.Image:
        """``(H, W)`` palette indices -> PIL image: RGBA when any pixel is transparent, else RGB."""
        rgba = self.color_palette.indices_to_rgba(idx)
        if (np.asarray(idx) == self.color_palette.transparent_index).any():
            return Image.fromarray(rgba, "RGBA")
        return Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB")

    def quantize(self, image: ImageInput, resize: str | None | bool = False) -> Image.Image:
        """The image exactly as decoding its tokens will return it (palette colours, transparency, size)."""
        return self.indices_to_image(self.quantize_indices(image, resize))

    # -- ids -----------------------------------------------------------------------------------
    def encode_image(self, image: ImageInput, add_special_tokens: bool = True, resize: str | None | bool = False,
                     layout: str | None = None) -> list[int]:
        """Image -> token ids (``<bos>`` ... ``<eos>`` when ``add_special_tokens``); numpy all the way."""
        ids = self._pixel_vocab.encode(self.quantize_indices(image, resize), layout or self.layout)
        if add_special_tokens:
            ids = np.concatenate([[self.bos_token_id], ids, [self.eos_token_id]])
        return ids.tolist()

    def _strip_special(self, ids) -> np.ndarray:
        a = as_id_array(ids)
        pad, bos, eos = self.pad_token_id, self.bos_token_id, self.eos_token_id
        keep = np.flatnonzero(a != pad)
        a = a[keep[0]:keep[-1] + 1] if len(keep) else a[:0]  # left or right padding
        if len(a) and a[0] == bos:
            a = a[1:]
        if len(a) and a[-1] == eos:
            a = a[:-1]
        return a

    def decode_image(self, ids, layout: str | None = None, canonical: bool = True) -> Image.Image:
        """Token ids (with or without ``<bos>``/``<eos>``/padding) -> the quantized image; strict.

        ``canonical=False`` also accepts pixels and colour lines in any order (e.g. generated sequences); by default
        only the exact ids :meth:`encode_image` writes are accepted, so nothing is silently reordered.
        """
        return self.indices_to_image(self.decode_indices(ids, layout, canonical))

    def decode_indices(self, ids, layout: str | None = None, canonical: bool = True) -> np.ndarray:
        a = self._strip_special(ids)
        if len(a) == 0:
            raise TokenFormatError("no image tokens to decode (empty sequence)")
        return self._pixel_vocab.decode(a, layout or self.layout, canonical)

    # -- text ----------------------------------------------------------------------------------
    def image_to_text(self, image: ImageInput, resize: str | None | bool = False, layout: str | None = None) -> str:
        """Image -> the plain-text token form (no special tokens)."""
        ids = self._pixel_vocab.encode(self.quantize_indices(image, resize), layout or self.layout)
        return self._pixel_vocab.ids_to_text(ids)

    def text_to_image(self, text: str, layout: str | None = None, canonical: bool = True) -> Image.Image:
        """Plain-text token form -> image; raises TokenFormatError on any malformed or unknown token (and, unless
        ``canonical=False``, on a text that is not exactly what :meth:`image_to_text` writes for its image)."""
        if not isinstance(text, str):
            raise TypeError(f"text_to_image expects a str, got {type(text).__name__}")
        try:
            return self.decode_image(self._pixel_vocab.text_to_ids(text, strict=True), layout, canonical)
        except TokenFormatError as e:  # a text made with other settings: say which ones it seems to use
            hint = format_hint(text, self.color_palette.name, layout or self.layout)
            if not hint:
                raise
            raise TokenFormatError(f"{e}; {hint}") from None

    # -- batches -------------------------------------------------------------------------------
    def encode_images(self, images: Sequence[ImageInput], return_tensors: str | None = None,
                      padding: bool | str = True, max_length: int | None = None, add_special_tokens: bool = True,
                      pad_to_multiple_of: int | None = None, resize: str | None | bool = False):
        """Images -> ``BatchEncoding`` with ``input_ids`` and ``attention_mask`` (padded with ``<pad>``).

        Never truncates: a truncated image is not decodable, so ``max_length`` shorter than an image raises.
        """
        from transformers import BatchEncoding

        special = [[self.bos_token_id], [self.eos_token_id]] if add_special_tokens else [[], []]
        rows = [np.concatenate([special[0], self._pixel_vocab.encode(self.quantize_indices(im, resize), self.layout),
                                special[1]]).astype(np.int64) for im in images]
        longest = max((len(r) for r in rows), default=0)
        if max_length is not None and longest > max_length:
            raise ValueError(f"an image needs {longest} tokens, more than max_length={max_length}; truncation would make it undecodable")
        if padding in (False, "do_not_pad") or not rows:
            data = {"input_ids": [r.tolist() for r in rows], "attention_mask": [[1] * len(r) for r in rows]}
            return BatchEncoding(data, tensor_type=return_tensors)
        length = max_length if padding == "max_length" and max_length is not None else longest
        if pad_to_multiple_of:
            length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
        left = self.padding_side == "left"
        data = {"input_ids": pad_rows(rows, self.pad_token_id, length, left),
                "attention_mask": pad_rows([np.ones(len(r), np.int64) for r in rows], 0, length, left)}
        if return_tensors is None:
            data = {k: v.tolist() for k, v in data.items()}
        return BatchEncoding(data, tensor_type=return_tensors)

    def decode_images(self, batch_ids, layout: str | None = None, canonical: bool = True) -> list[Image.Image]:
        """Batch of ids (list of lists, array or tensor; padding anywhere at either end) -> images."""
        if hasattr(batch_ids, "detach"):
            batch_ids = batch_ids.detach().cpu().numpy()
        return [self.decode_image(row, layout, canonical) for row in batch_ids]

    # -- text decoding that round-trips exactly --------------------------------------------------
    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return tokens_to_text([str(t) for t in tokens])

    @classmethod
    def train_palette(cls, images: Sequence[ImageInput], n_colors: int, method: str = "kmeans", seed: int = 0,
                      name: str = "learned", **tokenizer_kwargs):
        """Fit a palette of ``n_colors`` to the opaque pixels of ``images`` (k-means in CIELAB or median cut) and
        return a tokenizer using it; the palette is saved with the tokenizer by ``save_pretrained``."""
        pixels = []
        for im in images:
            rgba = to_rgba(im).reshape(-1, 4)
            pixels.append(rgba[rgba[:, 3] >= 128, :3])
        if not pixels:
            raise ValueError("train_palette: no images given")
        pal = train_palette(np.concatenate(pixels), n_colors, method=method, seed=seed, name=name)
        return cls(palette=pal, **tokenizer_kwargs)


class PixelImageCodec(PixelImageMixin):
    """Image <-> pixel-token text and ids for one palette, layout and size rule, exactly as :class:`PixelTokenizer`
    does them, with no tokenizer around it (imports neither transformers nor torch)."""

    def __init__(self, palette: str | dict | Palette = "named128", layout: str = "grouped", max_side: int = 128,
                 resize: str | None = None):
        self._init_pixel_state(palette, layout, max_side, resize)
        ids = self._pixel_vocab.token_to_id
        self.pad_token_id, self.bos_token_id, self.eos_token_id = ids[PAD], ids[BOS], ids[EOS]
        self.padding_side = "right"
