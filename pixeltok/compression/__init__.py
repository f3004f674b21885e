"""Learned lossless image compression: causal-neighbourhood pixel model + range coding -> ``.ptk`` files.

    >>> from pixeltok.compression import compress, decompress
    >>> data = compress("photo.png")            # bytes of a .ptk file (default shipped model)
    >>> img = decompress(data)                   # PIL.Image, bit-exact

Images are cut into ``tile_size`` tiles on a grid (edge tiles smaller, coded at their own size); each tile is an
independent range-coder stream. See ``coder`` for the exact-arithmetic pipeline and ``format`` for the layout.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from ..image_io import ImageInputError, open_image, to_rgb_exact
from ..tiling import cut_tiles, join_tiles, tile_grid
from . import coder, format as ptk_format
from .format import (
    PtkChecksumError,
    PtkFormatError,
    PtkHeader,
    PtkModelMismatchError,
    PtkTruncatedError,
    PtkVersionError,
)
from .model import (
    DEFAULT_CHECKPOINT,
    PixelContextCodecConfig,
    PixelContextCodecModel,
    load_codec_model,
    model_name,
    weights_sha256,
)

__all__ = [
    "compress", "decompress", "load_codec_model", "PixelContextCodecConfig", "PixelContextCodecModel",
    "PtkFormatError", "PtkTruncatedError", "PtkChecksumError", "PtkVersionError", "PtkModelMismatchError",
    "ImageInputError", "read_header", "DEFAULT_CHECKPOINT",
]

_DEFAULT = None


def _resolve(model) -> PixelContextCodecModel:
    global _DEFAULT
    if model is None:
        if _DEFAULT is None:
            _DEFAULT = load_codec_model()
        return _DEFAULT
    if isinstance(model, (str, os.PathLike)):
        return load_codec_model(model)
    if not isinstance(model, PixelContextCodecModel):
        raise TypeError(f"model must be None, a path or a PixelContextCodecModel, got {type(model).__name__}")
    return model


def _identity(model: PixelContextCodecModel) -> str:
    sha = getattr(model, "_ptk_sha256", None)
    if sha is None:  # cached: the weights of a codec model are not meant to change after loading
        sha = model._ptk_sha256 = weights_sha256(model)
    return sha


def _mode_of(image) -> str:
    if isinstance(image, Image.Image):
        return "L" if image.mode in ("L", "1") else "RGB"
    if isinstance(image, np.ndarray) and image.ndim == 2:
        return "L"
    return "RGB"


def compress(image, model=None, *, tile_size: int = 32, batch_size: int = 16, progress: bool = False,
             return_stats: bool = False):
    """Losslessly compress an image to ``.ptk`` bytes.

    ``image``: path, PIL image (RGB/L/1), ``(H, W, 3)``/``(H, W)`` uint8 array or tensor; images with alpha,
    16-bit or float pixels are refused (``ImageInputError``). ``model``: ``None`` (shipped default), a checkpoint
    path, or a :class:`PixelContextCodecModel`. ``batch_size`` tiles go through one exact forward pass; the output
    does not depend on it. With ``return_stats`` returns ``(bytes, {"ideal_bits": ..., "payload_bytes": ...})``.
    """
    source = None
    if isinstance(image, (str, os.PathLike)):  # decode the file once; errors still name it
        source, image = str(image), open_image(image)
    pixels = to_rgb_exact(image, source=source)
    mode = _mode_of(image)
    m = _resolve(model)
    if not 1 <= tile_size <= 65535:
        raise ValueError(f"tile_size must be in [1, 65535], got {tile_size}")
    tiles, _ = cut_tiles(pixels, size=tile_size, border="keep")
    with torch.inference_mode():
        streams, ideal = coder.encode_tiles(m, [np.ascontiguousarray(t) for t in tiles], batch_size=batch_size,
                                            progress=progress)
    header = PtkHeader(
        width=pixels.shape[1], height=pixels.shape[0], mode=mode, tile_size=tile_size,
        token_order=coder.TOKEN_ORDER, quant_id=coder.QUANT_ID, freq_bits=coder.FREQ_BITS, prob_bits=coder.PROB_BITS,
        numerics_id=coder.NUMERICS_ID, coder_id=coder.CODER_ID, model_sha256=_identity(m), model_name=model_name(m),
        pixels_crc32=ptk_format.pixels_crc32(pixels))
    data = ptk_format.write(header, streams)
    if return_stats:
        return data, {"ideal_bits": float(sum(ideal)), "payload_bytes": int(sum(len(s) for s in streams)),
                      "tiles": len(tiles)}
    return data


def read_header(data: bytes) -> PtkHeader:
    """Parse and verify a ``.ptk`` file's structure and checksum (no decoding)."""
    return ptk_format.parse(data)[0]


def decompress(data, model=None, *, batch_size: int = 64, progress: bool = False) -> Image.Image:
    """Decode ``.ptk`` bytes (or a path to a ``.ptk`` file) back to the exact original ``PIL.Image``.

    Raises a :class:`PtkFormatError` subclass for a truncated/corrupted file, an unknown version or coding
    parameters, or a model whose weights differ from the encoder's; never returns a wrong image (the decoded
    pixels are checked against the stored CRC32).
    """
    source = "data"
    if isinstance(data, (str, os.PathLike)):
        source = str(data)
        with open(data, "rb") as f:
            data = f.read()
    header, streams = ptk_format.parse(data, source)
    expect = (coder.QUANT_ID, coder.FREQ_BITS, coder.PROB_BITS, coder.NUMERICS_ID, coder.CODER_ID)
    got = (header.quant_id, header.freq_bits, header.prob_bits, header.numerics_id, header.coder_id)
    if got != expect:
        raise PtkVersionError(f"{source}: unsupported coding parameters (quant, freq_bits, prob_bits, numerics, coder) "
                              f"= {got}; this pixeltok implements {expect}")
    m = _resolve(model)
    sha = _identity(m)
    if sha != header.model_sha256:
        raise PtkModelMismatchError(
            f"{source}: written with model {header.model_name!r} (weights sha256 {header.model_sha256[:16]}...), "
            f"but the given model {model_name(m)!r} has sha256 {sha[:16]}...; pass the encoder's model")
    rows, cols = tile_grid(header.height, header.width, header.tile_size)
    shapes = [(min(header.tile_size, header.height - r * header.tile_size),
               min(header.tile_size, header.width - c * header.tile_size)) for r in range(rows) for c in range(cols)]
    try:
        with torch.inference_mode():
            tiles = coder.decode_tiles(m, streams, shapes, batch_size=batch_size, progress=progress)
    except (ValueError, RuntimeError) as e:  # a corrupted stream that slipped past the CRC
        raise PtkChecksumError(f"{source}: tile streams could not be decoded ({e})") from e
    pixels = join_tiles(tiles, header.height, header.width, header.tile_size)
    if ptk_format.pixels_crc32(pixels) != header.pixels_crc32:
        raise PtkChecksumError(f"{source}: decoded pixels do not match the stored CRC32 (model or numerics differ "
                               "from the encoder's); refusing to return a wrong image")
    img = Image.fromarray(pixels, "RGB")
    return img.convert("L") if header.mode == "L" else img
