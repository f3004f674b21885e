"""Image input helpers (re-exported: the code lives beside the tokenizer so its remote-code copy is self-contained)."""

from .tokenization.image_io import (  # noqa: F401
    ImageInput,
    ImageInputError,
    array_to_rgba,
    composite_on,
    ink_box,
    open_image,
    pil_to_rgba,
    prepare_reader_image,
    tensor_to_rgba,
    to_rgb_exact,
    to_rgba,
)
