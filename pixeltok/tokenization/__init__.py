"""Image <-> token conversion: palettes, the pixel-token vocabulary and the Hugging Face tokenizer classes.

The tokenizer classes load on first use, so the numpy-only parts (palettes, :func:`sniff_text_format`, the codec
of ids) import without transformers or torch.
"""

import importlib

from .palettes import Palette, get_palette, list_palettes, train_palette  # noqa: F401
from .pixel_codec import LAYOUTS, TokenFormatError, sniff_text_format  # noqa: F401

_LAZY = {"PixelTokenizer": "tokenization_pixel", "PixelTokenizerFast": "tokenization_pixel_fast"}
__all__ = ["LAYOUTS", "Palette", "PixelTokenizer", "PixelTokenizerFast", "TokenFormatError", "get_palette",
           "list_palettes", "sniff_text_format", "train_palette"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
