"""pixeltok: images as text tokens and back, PixelBytes models, and learned lossless compression.

Importing the package registers its classes with transformers' Auto classes, so
``AutoTokenizer.from_pretrained``, ``AutoConfig`` and ``AutoModelForCausalLM`` resolve them without
``trust_remote_code``. Public names load on first use, so the sub-packages (``pixeltok.data``,
``pixeltok.compression``, ``pixeltok.evaluation``) cost nothing until asked for.

The ``pixeltok`` command (and ``python -m pixeltok``) skips the registration at import: registering means importing
transformers, which imports torch (~3 s, ~390 MB), and ``pixeltok --help`` or ``pixeltok encode`` need neither; the
commands that load a model or a saved tokenizer register first.
"""

from __future__ import annotations

import importlib
import os
import sys

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY_ATTRS = {
    "ImageInputError": "image_io", "to_rgba": "image_io",
    "Palette": "tokenization", "PixelTokenizer": "tokenization", "PixelTokenizerFast": "tokenization",
    "TokenFormatError": "tokenization", "get_palette": "tokenization", "list_palettes": "tokenization",
    "PixelTextProcessor": "tokenization.processing_pixel_text",
    "resize_embeddings_for_pixels": "tokenization.processing_pixel_text",
    "PixelBytesTokenizer": "tokenization.pixelbytes", "build_windows": "tokenization.pixelbytes",
    "pixelize": "tokenization.pixelbytes",
    "PxByConfig": "models.pxby", "PxByForCausalLM": "models.pxby", "PxByModel": "models.pxby",
    "DeDiffusionConfig": "models.dediffusion", "DeDiffusionEncoder": "models.dediffusion",
    "compress": "compression", "decompress": "compression", "load_codec_model": "compression",
    "load_pokemon": "data", "load_cifar_tiles": "data", "load_metric": "evaluation",
}
_LAZY_SUBMODULES = ("data", "compression", "evaluation", "hub_cards", "tiling", "cli", "tokenization", "models",
                    "reader", "drawing", "scripts")


def _register_all() -> None:
    """Register every pixeltok class with transformers' Auto classes (idempotent)."""
    from ._registry import register_all

    register_all()


def _started_as_command() -> bool:
    argv = getattr(sys, "orig_argv", None) or sys.argv
    if os.path.basename(sys.argv[0] if sys.argv else "") in ("pixeltok", "pixeltok.exe"):
        return True
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "pixeltok"


def __getattr__(name: str):
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(f".{_LAZY_ATTRS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pixeltok' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_ATTRS) | set(_LAZY_SUBMODULES))


if not _started_as_command():
    _register_all()
