"""Image <-> token conversion: palettes, the pixel-token vocabulary and the Hugging Face tokenizer classes."""

from .palettes import Palette, get_palette, list_palettes, train_palette  # noqa: F401
from .pixel_codec import LAYOUTS, TokenFormatError  # noqa: F401
from .tokenization_pixel import PixelTokenizer  # noqa: F401
from .tokenization_pixel_fast import PixelTokenizerFast  # noqa: F401
