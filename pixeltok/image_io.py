"""Image input helpers (re-exported: the code lives beside the tokenizer so its remote-code copy is self-contained)."""

from .tokenization.image_io import (  # noqa: F401
    ImageInput,
    ImageInputError,
    array_to_rgba,
    open_image,
    pil_to_rgba,
    tensor_to_rgba,
    to_rgb_exact,
    to_rgba,
)
