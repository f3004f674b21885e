"""pixeltok: images as text tokens and back, PixelBytes models, and learned lossless compression.

Importing the package registers its classes with transformers' Auto classes, so
``AutoTokenizer.from_pretrained``, ``AutoConfig`` and ``AutoModelForCausalLM`` resolve them without
``trust_remote_code``. The heavier sub-packages (``pixeltok.data``, ``pixeltok.compression``,
``pixeltok.evaluation``) load on first use.
"""

import importlib

__version__ = "0.1.0"

from .image_io import ImageInputError, to_rgba  # noqa: E402,F401
from .tokenization import Palette, PixelTokenizer, PixelTokenizerFast, TokenFormatError, get_palette, list_palettes  # noqa: E402,F401
from .tokenization.pixelbytes import PixelBytesTokenizer, build_windows, pixelize  # noqa: E402,F401
from .models.pxby import PxByConfig, PxByForCausalLM, PxByModel  # noqa: E402,F401
from ._registry import register_all as _register_all  # noqa: E402

_register_all()

_LAZY_SUBMODULES = ("data", "compression", "evaluation", "hub_cards", "tiling", "cli")


_LAZY_ATTRS = {"compress": "compression", "decompress": "compression", "load_codec_model": "compression",
               "load_pokemon": "data", "load_cifar_tiles": "data", "load_metric": "evaluation"}


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(f".{_LAZY_ATTRS[name]}", __name__), name)
    raise AttributeError(f"module 'pixeltok' has no attribute {name!r}")
