"""Learned lossless image compression: causal-neighbourhood pixel model + range coding -> ``.ptk`` files.

    >>> from pixeltok.compression import compress, decompress
    >>> data = compress("photo.png")            # bytes of a .ptk file (default shipped model)
    >>> img = decompress(data)                   # PIL.Image, bit-exact

By default the whole image is one coding unit: the model's causal window crosses the whole image and the decoder
runs one wavefront over it (``wavefront``). With ``tile_size=T`` the image is cut into independent ``T x T`` tiles
(edge tiles smaller) instead, each its own range-coder stream (random access, lock-step parallel decode). The
encoder sends one scale offset per 32 x 32 adaptation block and channel. Grayscale images code one channel. When the
coded payload would be larger than the raw pixels, the file stores them instead, so a ``.ptk`` file is never bigger
than raw pixels + header. See ``coder`` for the exact-arithmetic pipeline and ``format`` for the layout and limits.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from ..image_io import ImageInputError, open_image, to_rgb_exact
from tqdm.auto import tqdm

from ..tiling import join_tiles, tile_grid
from . import coder, format as ptk_format, wavefront
from .format import (
    MAX_IMAGE_PIXELS,
    MAX_TILE_SIZE,
    PtkChecksumError,
    PtkFormatError,
    PtkHeader,
    PtkLimitError,
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
    "PtkLimitError", "ImageInputError", "read_header", "DEFAULT_CHECKPOINT", "MAX_TILE_SIZE", "MAX_IMAGE_PIXELS",
]

_DEFAULT = None


def _check_model_arg(model) -> None:
    if model is not None and not isinstance(model, (str, os.PathLike, PixelContextCodecModel)):
        raise TypeError(f"model must be None, a path or a PixelContextCodecModel, got {type(model).__name__}")


def _resolve(model) -> PixelContextCodecModel:
    global _DEFAULT
    _check_model_arg(model)
    if model is None:
        if _DEFAULT is None:
            _DEFAULT = load_codec_model()
        return _DEFAULT
    if isinstance(model, (str, os.PathLike)):
        return load_codec_model(model)
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


def compress(image, model=None, *, tile_size: int | None = None, block_size: int = wavefront.ADAPT_BLOCK,
             batch_size: int = 64, progress: bool = False, return_stats: bool = False):
    """Losslessly compress an image to ``.ptk`` bytes.

    ``image``: path, PIL image (RGB/L/1), ``(H, W, 3)``/``(H, W)`` uint8 array or tensor; images with alpha,
    16-bit or float pixels, or more than ``MAX_IMAGE_PIXELS`` pixels are refused (``ImageInputError``). ``model``:
    ``None`` (shipped default), a checkpoint path, or a :class:`PixelContextCodecModel`. ``tile_size``: ``None``
    (default) codes the whole image as one unit (context across the whole image); an int in ``[1, MAX_TILE_SIZE]``
    codes independent tiles of that size. ``block_size`` (``16 .. 256``): the encoder sends one scale offset per
    block and channel (in tiles: ``min(block_size, tile_size)``). ``batch_size``: tiles coded in lock-step; the
    output does not depend on it. ``progress``: a bar in pixels/s on stderr. Grayscale images code one channel; if
    the coded payload would be larger than the raw pixels, they are stored. With ``return_stats`` returns ``(bytes,
    {"ideal_bits", "payload_bytes", "tiles", "layout", "payload", "sub_pixels"})``, ``tiles`` being the number of
    coded units (1 for the whole image), ``payload`` ``"coded"`` or ``"stored"``, ``sub_pixels`` the values coded
    (H x W x bands).
    """
    if tile_size is not None and (not isinstance(tile_size, (int, np.integer)) or isinstance(tile_size, bool)
                                  or not 1 <= tile_size <= MAX_TILE_SIZE):
        raise ValueError(f"tile_size must be None (whole image) or an int in [1, {MAX_TILE_SIZE}], got {tile_size!r}")
    if not isinstance(block_size, (int, np.integer)) or not ptk_format.MIN_BLOCK <= block_size <= MAX_TILE_SIZE:
        raise ValueError(f"block_size must be an int in [{ptk_format.MIN_BLOCK}, {MAX_TILE_SIZE}], got {block_size!r}")
    layout = "whole" if tile_size is None else "tiles"
    tile_size = 0 if tile_size is None else int(tile_size)
    block = int(block_size) if layout == "whole" else min(int(block_size), tile_size)
    _check_model_arg(model)
    source = None
    if isinstance(image, (str, os.PathLike)):  # decode the file once; errors still name it
        source, image = str(image), open_image(image)
    pixels = to_rgb_exact(image, source=source)
    if pixels.shape[0] * pixels.shape[1] > MAX_IMAGE_PIXELS:
        raise ImageInputError(f"{source or 'image'}: {pixels.shape[1]}x{pixels.shape[0]} has more than "
                              f"{MAX_IMAGE_PIXELS} pixels, the .ptk limit")
    mode = _mode_of(image)
    native = pixels[..., 0] if mode == "L" else pixels  # L arrives as R = G = B
    m = _resolve(model)
    header = PtkHeader(
        width=pixels.shape[1], height=pixels.shape[0], mode=mode, tile_size=tile_size,
        token_order=coder.TOKEN_ORDER, quant_id=coder.QUANT_ID, freq_bits=coder.FREQ_BITS, prob_bits=coder.PROB_BITS,
        numerics_id=coder.NUMERICS_ID, coder_id=coder.CODER_ID, model_sha256=_identity(m), model_name=model_name(m),
        pixels_crc32=ptk_format.image_crc32(mode, native), layout=layout, block_size=block)
    rects = header.units()
    streams, ideal = [None] * len(rects), [0.0] * len(rects)
    channels = coder.coded_channels(mode)
    bar = tqdm(total=pixels.shape[0] * pixels.shape[1], desc="compress", unit="px", unit_scale=True,
               disable=not progress)
    with torch.inference_mode():
        for (h, w), idx in _group_units(rects, batch_size).items():
            for chunk in idx:
                units = np.stack([pixels[y:y + uh, x:x + uw] for y, x, uh, uw in (rects[i] for i in chunk)])
                got, bits = wavefront.encode_units(m, units, block, channels=channels, bar=bar)
                for i, s, b in zip(chunk, got, bits):
                    streams[i], ideal[i] = s, b
    bar.close()
    raw = np.ascontiguousarray(native).tobytes()
    coded, stored = ptk_format.write(header, streams), ptk_format.write(header, stored=raw)
    data = coded if len(coded) <= len(stored) else stored  # never more than raw pixels + header
    if return_stats:
        kind = "coded" if data is coded else "stored"
        payload = int(sum(len(s) for s in streams)) if kind == "coded" else len(raw)
        return data, {"ideal_bits": float(sum(ideal)), "payload_bytes": payload, "tiles": len(rects),
                      "layout": layout, "payload": kind, "sub_pixels": int(native.size)}
    return data


def _group_units(rects, batch_size: int) -> dict[tuple[int, int], list[list[int]]]:
    """Units grouped by shape, each group cut into lock-step batches (at most ``batch_size`` units and
    ``wavefront.DECODE_BATCH_PIXELS`` pixels)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (_, _, h, w) in enumerate(rects):
        groups.setdefault((h, w), []).append(i)
    out = {}
    for (h, w), idx in groups.items():
        per = max(1, min(batch_size, wavefront.DECODE_BATCH_PIXELS // (h * w)))
        out[(h, w)] = [idx[s:s + per] for s in range(0, len(idx), per)]
    return out


def read_header(data) -> PtkHeader:
    """Parse and verify a ``.ptk`` file's structure and checksum (no decoding); ``data`` as for :func:`decompress`."""
    source = "data"
    if isinstance(data, (str, os.PathLike)):
        source, data = str(data), ptk_format.read_file(data)
    return ptk_format.parse(data, source)[0]


def _decoder_failure(e: BaseException) -> bool:
    """Errors of a corrupted tile stream: ours (ValueError), constriction's ("invalid compressed data" is an
    AssertionError) and a Rust panic in it (pyo3's PanicException derives from BaseException)."""
    return isinstance(e, (ValueError, RuntimeError, AssertionError, IndexError, OverflowError)) \
        or type(e).__name__ == "PanicException"


def decompress(data, model=None, *, batch_size: int = 64, progress: bool = False) -> Image.Image:
    """Decode ``.ptk`` data -- ``bytes``, ``bytearray``, ``memoryview`` or a path (``str``/``os.PathLike``) to a
    ``.ptk`` file -- back to the exact original ``PIL.Image``.

    Raises a :class:`PtkFormatError` subclass for a truncated/corrupted file, sizes beyond the limits
    (:class:`PtkLimitError`), an unknown version or coding parameters, or a model whose weights differ from the
    encoder's; ``TypeError`` for any other type of ``data``. Never returns a wrong image (the decoded pixels are
    checked against the stored CRC32). A stored payload needs no model.
    """
    source = "data"
    if isinstance(data, (str, os.PathLike)):
        source, data = str(data), ptk_format.read_file(data)
    _check_model_arg(model)
    header, streams = ptk_format.parse(data, source)
    if header.payload == "stored":
        shape = (header.height, header.width) + ((3,) if header.mode == "RGB" else ())
        pixels = np.frombuffer(streams[0], dtype=np.uint8).reshape(shape)
    else:
        pixels = _decode_coded(header, streams, model, source, batch_size, progress)
    bad_crc = PtkChecksumError(f"{source}: decoded pixels do not match the stored CRC32 (corrupted, or the model or "
                               "numerics differ from the encoder's); refusing to return a wrong image")
    if header.version < 2 and ptk_format.pixels_crc32(pixels) != header.pixels_crc32:  # (H, W, 3), mode not covered
        raise bad_crc
    if header.mode == "L" and pixels.ndim == 3:  # coded as R = G = B (coder id 2)
        if not ((pixels[..., 0] == pixels[..., 1]) & (pixels[..., 0] == pixels[..., 2])).all():
            raise PtkChecksumError(f"{source}: the header says L but the decoded pixels are not gray (R = G = B); "
                                   "the mode field is corrupted")
        pixels = np.ascontiguousarray(pixels[..., 0])
    if header.version >= 2 and ptk_format.image_crc32(header.mode, pixels) != header.pixels_crc32:
        raise bad_crc
    return Image.fromarray(pixels, header.mode)


def _decode_coded(header: PtkHeader, streams: list[bytes], model, source: str, batch_size: int,
                  progress: bool) -> np.ndarray:
    """Range-decode the tile streams -> ``(H, W, 3)`` pixels, or ``(H, W)`` for a one-channel L file."""
    expect = (coder.QUANT_ID, coder.FREQ_BITS, coder.PROB_BITS, coder.NUMERICS_ID)
    got = (header.quant_id, header.freq_bits, header.prob_bits, header.numerics_id)
    if got != expect or header.coder_id not in coder.DECODER_IDS:
        raise PtkVersionError(f"{source}: unsupported coding parameters (quant, freq_bits, prob_bits, numerics, coder) "
                              f"= {got + (header.coder_id,)}; this pixeltok implements {expect} with coder ids "
                              f"{coder.DECODER_IDS}")
    m = _resolve(model)
    sha = _identity(m)
    if sha != header.model_sha256:
        raise PtkModelMismatchError(
            f"{source}: written with model {header.model_name!r} (weights sha256 {header.model_sha256[:16]}...), "
            f"but the given model {model_name(m)!r} has sha256 {sha[:16]}...; pass the encoder's model")
    channels = coder.coded_channels(header.mode, header.coder_id)
    if header.version >= 3:
        return _decode_units(header, streams, m, source, batch_size, progress, channels)
    ts = header.tile_size
    rows, cols = tile_grid(header.height, header.width, ts)
    shapes = [(min(ts, header.height - r * ts), min(ts, header.width - c * ts))
              for r in range(rows) for c in range(cols)]
    try:
        with torch.inference_mode():
            tiles = coder.decode_tiles(m, streams, shapes, batch_size=batch_size, progress=progress, channels=channels)
    except BaseException as e:  # a corrupted stream that slipped past the file CRC (a crafted file)
        if not _decoder_failure(e):
            raise
        raise PtkChecksumError(f"{source}: tile streams could not be decoded ({type(e).__name__}: {e})") from e
    pixels = join_tiles(tiles, header.height, header.width, ts)
    return pixels[..., 0] if channels == 1 else pixels


def _decode_units(header: PtkHeader, streams: list[bytes], m, source: str, batch_size: int, progress: bool,
                  channels: int) -> np.ndarray:
    """Version 3: decode the units (whole image or tiles) along their wavefronts."""
    rects = header.units()
    pixels = np.empty((header.height, header.width, 3), dtype=np.uint8)
    bar = tqdm(total=header.height * header.width, desc="decompress", unit="px", unit_scale=True,
               disable=not progress)
    try:
        with torch.inference_mode():
            for (h, w), idx in _group_units(rects, batch_size).items():
                for chunk in idx:
                    out = wavefront.decode_units(m, [streams[i] for i in chunk], h, w, header.block,
                                                 channels=channels, bar=bar)
                    for j, i in enumerate(chunk):
                        y, x = rects[i][:2]
                        pixels[y:y + h, x:x + w] = out[j]
    except BaseException as e:  # a corrupted stream that slipped past the file CRC (a crafted file)
        if not _decoder_failure(e):
            raise
        raise PtkChecksumError(f"{source}: unit streams could not be decoded ({type(e).__name__}: {e})") from e
    finally:
        bar.close()
    return pixels[..., 0] if channels == 1 else pixels
