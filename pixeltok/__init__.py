"""pixeltok: images as text tokens and back, PixelBytes models, and learned lossless compression.

Importing the package registers its classes with transformers' Auto classes, so
``AutoTokenizer.from_pretrained``, ``AutoConfig`` and ``AutoModelForCausalLM`` resolve them without
``trust_remote_code``.
"""

__version__ = "0.1.0"

from .image_io import ImageInputError, to_rgba  # noqa: E402
from .tokenization.palettes import Palette, get_palette, list_palettes  # noqa: E402
from ._registry import register_all as _register_all  # noqa: E402

_register_all()

from .tokenization import PixelTokenizer, PixelTokenizerFast  # noqa: E402,F401

try:  # the model family and byte+pixel tokenizer (issue: PxBy)
    from .models.pxby import PxByConfig, PxByForCausalLM, PxByModel  # noqa: F401
    from .tokenization.pixelbytes import PixelBytesTokenizer  # noqa: F401
except ImportError:  # pragma: no cover - while the module is being written
    pass
