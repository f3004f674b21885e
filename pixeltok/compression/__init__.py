"""Lossless image compression -> ``.ptk`` files, at three efforts (like JPEG-XL's):

    >>> from pixeltok.compression import compress, decompress
    >>> data = compress("photo.png")                  # effort "fast": adaptive context mixing
    >>> data = compress("photo.png", effort="max")    # the same model, its parameters chosen for this image
    >>> data = compress("photo.png", effort="network")  # the shipped pretrained pixel-context network
    >>> img = decompress(data)                         # PIL.Image, bit-exact, whichever coded it

``fast`` / ``max`` (:mod:`~pixeltok.compression.adaptive`): integer-only context mixing that learns on the image
while it codes it, identically in the decoder (a dozen predictors blended by their recent errors, context-mixed
binary decisions, an lpaq-style arithmetic coder); about 1 MP/s each way on one core, below JPEG-XL e9's size.
``network``: a causal-neighbourhood network trained on photos, range-coded; the whole image is one coding unit
whose causal window crosses the whole image, the decoder runs one wavefront over it (``wavefront``), and the
encoder sends one scale offset per 32 x 32 adaptation block and channel. With ``tile_size=T`` the image is cut into
independent ``T x T`` tiles (edge tiles smaller), each its own stream (random access). Grayscale images code one
channel. When the coded payload would be larger than the raw pixels, the file stores them instead, so a ``.ptk``
file is never bigger than raw pixels + header. See ``coder`` for the network's exact-arithmetic pipeline and
``format`` for the layout and limits.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch
from PIL import Image

from ..image_io import ImageInputError, open_image, to_rgb_exact
from tqdm.auto import tqdm

from ..tiling import join_tiles, tile_grid
from . import causal, coder, format as ptk_format, wavefront
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
    "EFFORTS", "DEFAULT_EFFORT",
]

_DEFAULT = None


def _check_model_arg(model) -> None:
    from transformers import PreTrainedModel

    if model is not None and not isinstance(model, (str, os.PathLike, PreTrainedModel)):
        raise TypeError(f"model must be None, a path, a PixelContextCodecModel or a causal transformers model over "
                        f"sub-pixels (e.g. ImageGPTForCausalImageModeling), got {type(model).__name__}")


def _resolve(model):
    """The model to code with: the shipped network (``None``), a loaded model, or a checkpoint folder / Hub id:
    a ``pixeltok_context_codec`` network, else a causal model for the generic path (:mod:`causal`)."""
    global _DEFAULT
    _check_model_arg(model)
    if model is None:
        if _DEFAULT is None:
            _DEFAULT = load_codec_model()
        return _DEFAULT
    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoConfig

        from .model import PixelContextCodecConfig as _Cfg

        if AutoConfig.from_pretrained(model).model_type == _Cfg.model_type:
            return load_codec_model(model)
        return causal.load_causal_model(model)
    if causal.is_causal_model(model):
        causal.check_model(model)
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


def compress(image, model=None, *, effort: str | None = None, tile_size: int | None = None,
             block_size: int = wavefront.ADAPT_BLOCK, batch_size: int = 64, progress: bool = False,
             return_stats: bool = False):
    """Losslessly compress an image to ``.ptk`` bytes.

    ``image``: path, PIL image (RGB/L/1), ``(H, W, 3)``/``(H, W)`` uint8 array or tensor; images with alpha,
    16-bit or float pixels, or more than ``MAX_IMAGE_PIXELS`` pixels are refused (``ImageInputError``). ``effort``
    (like JPEG-XL's): ``"fast"`` (the default) codes with :mod:`~pixeltok.compression.adaptive`, integer context
    mixing that learns on the image while coding (no network, ~0.7 MP/s); ``"max"`` also lets the encoder pick that
    model's parameters for this image from a few candidates (sent in the header; ~0.3% smaller, encoding 3-8x
    slower, decoding as fast); ``"network"`` codes with the pretrained
    pixel-context network (``model``: ``None`` for the shipped one, a checkpoint path or a
    :class:`PixelContextCodecModel`; giving a model implies ``"network"``). ``model`` may also be any causal
    transformers model over sub-pixels (``ImageGPTForCausalImageModeling`` with 257 tokens, or a causal LM whose
    tokens 0..255 are the levels and whose ``bos_token_id`` starts a tile; or its folder): the generic path of
    :mod:`~pixeltok.compression.causal`, tiles only (at most the model's context; default 32), the determinism
    conditions in the header. ``tile_size``: ``None``
    (default) codes the whole image as one unit (context across the whole image); an int in ``[1, MAX_TILE_SIZE]``
    codes independent tiles of that size. ``block_size`` (``16 .. 256``): the encoder sends one scale offset per
    block and channel (in tiles: ``min(block_size, tile_size)``). ``batch_size``: tiles coded in lock-step; the
    output does not depend on it. ``progress``: a bar in pixels/s on stderr. Grayscale images code one channel; if
    the coded payload would be larger than the raw pixels, they are stored. With ``return_stats`` returns ``(bytes,
    {"ideal_bits", "payload_bytes", "tiles", "layout", "payload", "sub_pixels", "effort"})``, ``tiles`` being the
    number of coded units (1 for the whole image), ``payload`` ``"coded"`` or ``"stored"``, ``sub_pixels`` the values
    coded (H x W x bands); with effort fast / max ``ideal_bits`` are the payload's real bits.
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
    effort = _check_effort(effort, model)
    source = None
    if isinstance(image, (str, os.PathLike)):  # decode the file once; errors still name it
        source, image = str(image), open_image(image)
    pixels = to_rgb_exact(image, source=source)
    if pixels.shape[0] * pixels.shape[1] > MAX_IMAGE_PIXELS:
        raise ImageInputError(f"{source or 'image'}: {pixels.shape[1]}x{pixels.shape[0]} has more than "
                              f"{MAX_IMAGE_PIXELS} pixels, the .ptk limit")
    mode = _mode_of(image)
    native = pixels[..., 0] if mode == "L" else pixels  # L arrives as R = G = B
    if effort != "network":
        return _compress_adaptive(native, mode, layout, tile_size, block, effort, progress, return_stats)
    m = _resolve(model)
    if causal.is_causal_model(m):
        return _compress_causal(m, pixels, native, mode, tile_size, batch_size, progress, return_stats)
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
    data, kind, payload = _write_file(header, streams, native)
    if return_stats:
        return data, {"ideal_bits": float(sum(ideal)), "payload_bytes": payload, "tiles": len(rects),
                      "layout": layout, "payload": kind, "sub_pixels": int(native.size), "effort": "network"}
    return data


def _write_file(header: PtkHeader, streams: list[bytes], native: np.ndarray) -> tuple[bytes, str, int]:
    """The ``.ptk`` bytes -> ``(data, "coded" | "stored", payload bytes)``: the coded streams, or the raw pixels when
    those are smaller (a file is never more than raw pixels + header). Both files share the header, so the coded
    one is chosen when its length table + streams are no longer than the pixels, and only one file is built (a
    12-MP photo would otherwise hold two more 36 MB copies)."""
    coded = sum(len(s) for s in streams)
    if coded + sum(len(ptk_format._varint(len(s))) for s in streams) <= native.nbytes:
        return ptk_format.write(header, streams), "coded", int(coded)
    return ptk_format.write(header, stored=np.ascontiguousarray(native).tobytes()), "stored", int(native.nbytes)


EFFORTS = ("fast", "max", "network")
DEFAULT_EFFORT = "fast"


def _check_effort(effort, model) -> str:
    if effort is None:
        return "network" if model is not None else DEFAULT_EFFORT
    if effort not in EFFORTS:
        raise ValueError(f"effort must be one of {EFFORTS} (or None), got {effort!r}")
    if model is not None and effort != "network":
        raise ValueError(f"a model is only used with effort='network' (effort={effort!r} needs none)")
    return effort


def _adaptive_header(native: np.ndarray, mode: str, layout: str, tile_size: int, block: int,
                     params: bytes) -> PtkHeader:
    return PtkHeader(
        width=native.shape[1], height=native.shape[0], mode=mode, tile_size=tile_size, token_order=coder.TOKEN_ORDER,
        quant_id=0, freq_bits=0, prob_bits=16, numerics_id=ptk_format.ADAPTIVE_NUMERICS_ID,
        coder_id=ptk_format.ADAPTIVE_CODER_ID, model_sha256=ptk_format.ADAPTIVE_SHA256,
        model_name=ptk_format.ADAPTIVE_NAME, pixels_crc32=ptk_format.image_crc32(mode, native), layout=layout,
        block_size=block, coder_params=params)


def _compress_causal(m, pixels: np.ndarray, native: np.ndarray, mode: str, tile_size: int, batch_size: int,
                     progress: bool, return_stats: bool):
    """The generic path (:mod:`causal`): tiles of at most the model's context, coded one sub-pixel per step."""
    limit = causal.max_tile(m)
    if limit < 1:
        raise ValueError(f"model {model_name(m)!r} has too few positions for even a 1x1 tile (3 sub-pixels + start)")
    if tile_size > limit:
        raise ValueError(f"tile_size {tile_size} needs {3 * tile_size ** 2 + 1} positions; model {model_name(m)!r} "
                         f"has room for tiles up to {limit}")
    tile = tile_size or min(limit, 32)
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or not 1 <= batch_size <= 65535:
        raise ValueError(f"batch_size must be an int in [1, 65535], got {batch_size!r}")
    params = causal.conditions_to_bytes(causal.conditions(m, int(batch_size)))
    header = PtkHeader(
        width=pixels.shape[1], height=pixels.shape[0], mode=mode, tile_size=tile, token_order=causal.TOKEN_ORDER,
        quant_id=causal.CAUSAL_QUANT_ID, freq_bits=causal.FREQ_BITS, prob_bits=0, numerics_id=causal.CAUSAL_NUMERICS_ID,
        coder_id=causal.CAUSAL_CODER_ID, model_sha256=_identity(m), model_name=model_name(m),
        pixels_crc32=ptk_format.image_crc32(mode, native), layout="tiles", block_size=tile, coder_params=params)
    bar = tqdm(total=pixels.shape[0] * pixels.shape[1], desc="compress", unit="px", unit_scale=True,
               disable=not progress)
    try:
        streams, ideal = causal.encode_image(m, pixels, header.units(), int(batch_size), bar)
    finally:
        bar.close()
    data, kind, payload = _write_file(header, streams, native)
    if return_stats:
        return data, {"ideal_bits": float(ideal), "payload_bytes": payload, "tiles": len(streams), "layout": "tiles",
                      "payload": kind, "sub_pixels": int(native.size), "effort": "network"}
    return data


def _decode_causal_file(header: PtkHeader, streams: list[bytes], model, source: str, progress: bool) -> np.ndarray:
    """Coder id 5: the causal model named in the header, under the conditions it records."""
    expect = (causal.CAUSAL_QUANT_ID, causal.FREQ_BITS, causal.CAUSAL_NUMERICS_ID, causal.TOKEN_ORDER)
    got = (header.quant_id, header.freq_bits, header.numerics_id, header.token_order)
    if got != expect:
        raise PtkVersionError(f"{source}: unsupported causal-coder parameters (quant, freq_bits, numerics, token "
                              f"order) = {got}; this pixeltok implements {expect}")
    if model is None:
        raise PtkModelMismatchError(f"{source}: coded by the causal model {header.model_name!r}; pass it as model= "
                                    "(--model PATH on the command line)")
    m = _resolve(model)
    if not causal.is_causal_model(m):
        raise PtkModelMismatchError(f"{source}: coded by the causal model {header.model_name!r}, not by a "
                                    f"pixel-context network; pass the encoder's model")
    _check_weights(m, header, source)
    try:
        recorded = causal.conditions_from_bytes(header.coder_params)
    except ValueError as e:
        raise PtkChecksumError(f"{source}: corrupted coder parameters ({e})") from None
    causal.check_conditions(recorded, m, source)
    if header.tile_size > causal.max_tile(m):
        raise PtkChecksumError(f"{source}: tile size {header.tile_size} does not fit model {header.model_name!r}")
    bar = tqdm(total=header.height * header.width, desc="decompress", unit="px", unit_scale=True,
               disable=not progress)
    with _decoding_units(source, bar):
        return causal.decode_image(m, streams, header.units(), header.height, header.width, recorded, bar)


def _check_weights(m, header: PtkHeader, source: str) -> None:
    """Refuse a model whose weights are not the encoder's (the header's SHA-256)."""
    sha = _identity(m)
    if sha != header.model_sha256:
        raise PtkModelMismatchError(
            f"{source}: written with model {header.model_name!r} (weights sha256 {header.model_sha256[:16]}...), "
            f"but the given model {model_name(m)!r} has sha256 {sha[:16]}...; pass the encoder's model")


def _rows_to_bar(bar, start: int, width: int):
    """An ``on_rows`` callback moving ``bar`` to ``start + rows * width`` pixels."""
    return lambda rows: bar.update(start + rows * width - bar.n)


def _compress_adaptive(native: np.ndarray, mode: str, layout: str, tile_size: int, block: int, effort: str,
                       progress: bool, return_stats: bool):
    """Effort fast / max: each unit (the whole image, or each tile) one :func:`adaptive.encode_adaptive` stream."""
    from . import adaptive

    # fast: the default parameters, which an empty header field stands for; max: the encoder's choice, sent
    params = adaptive.choose_params(native) if effort == "max" else adaptive.DEFAULT_PARAMS
    pbytes = adaptive.params_to_bytes(params) if effort == "max" else b""
    header = _adaptive_header(native, mode, layout, tile_size, block, pbytes)
    bar = tqdm(total=native.shape[0] * native.shape[1], desc="compress", unit="px", unit_scale=True,
               disable=not progress)
    streams = []
    for y, x, h, w in header.units():
        start = bar.n
        streams.append(adaptive.encode_adaptive(np.ascontiguousarray(native[y:y + h, x:x + w]),
                                                params, on_rows=_rows_to_bar(bar, start, w) if progress else None))
        bar.update(start + h * w - bar.n)
    bar.close()
    data, kind, payload = _write_file(header, streams, native)
    if return_stats:
        return data, {"ideal_bits": 8.0 * payload, "payload_bytes": payload, "tiles": len(streams),
                      "layout": layout, "payload": kind, "sub_pixels": int(native.size), "effort": effort}
    return data


def _decode_adaptive_file(header: PtkHeader, streams: list[bytes], source: str, progress: bool) -> np.ndarray:
    """Coder id 4: every unit decoded by :func:`adaptive.decode_adaptive` with the header's parameters."""
    from . import adaptive

    if header.model_sha256 != ptk_format.ADAPTIVE_SHA256 or header.model_name != ptk_format.ADAPTIVE_NAME:
        raise PtkVersionError(f"{source}: written by adaptive model {header.model_name!r}; this pixeltok decodes "
                              f"{ptk_format.ADAPTIVE_NAME!r}")
    params = adaptive.DEFAULT_PARAMS
    if header.coder_params:
        try:
            params = adaptive.params_from_bytes(header.coder_params)
        except ValueError as e:
            raise PtkChecksumError(f"{source}: corrupted coder parameters ({e})") from None
    channels = 1 if header.mode == "L" else 3
    pixels = np.empty((header.height, header.width, channels), np.uint8)
    bar = tqdm(total=header.height * header.width, desc="decompress", unit="px", unit_scale=True,
               disable=not progress)
    try:
        for (y, x, h, w), s in zip(header.units(), streams):
            start = bar.n
            try:
                unit = adaptive.decode_adaptive(s, h, w, channels, params,
                                                on_rows=_rows_to_bar(bar, start, w) if progress else None)
            except ValueError as e:
                raise PtkChecksumError(f"{source}: unit stream could not be decoded ({e})") from None
            pixels[y:y + h, x:x + w] = unit.reshape(h, w, channels)
            bar.update(start + h * w - bar.n)
    finally:
        bar.close()
    return pixels[..., 0] if channels == 1 else pixels


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
    elif header.coder_id == ptk_format.ADAPTIVE_CODER_ID:  # no network: a given model is not needed
        pixels = _decode_adaptive_file(header, streams, source, progress)
    elif header.coder_id == causal.CAUSAL_CODER_ID:
        pixels = _decode_causal_file(header, streams, model, source, progress)
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
    _check_weights(m, header, source)
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
    with _decoding_units(source, bar), torch.inference_mode():
        for (h, w), idx in _group_units(rects, batch_size).items():
            for chunk in idx:
                out = wavefront.decode_units(m, [streams[i] for i in chunk], h, w, header.block,
                                             channels=channels, bar=bar)
                for j, i in enumerate(chunk):
                    y, x = rects[i][:2]
                    pixels[y:y + h, x:x + w] = out[j]
    return pixels[..., 0] if channels == 1 else pixels


@contextlib.contextmanager
def _decoding_units(source: str, bar):
    """Close ``bar`` at the end, and turn the errors of a corrupted stream that slipped past the file CRC (a
    crafted file) into a :class:`PtkChecksumError`."""
    try:
        yield
    except BaseException as e:
        if not _decoder_failure(e):
            raise
        raise PtkChecksumError(f"{source}: unit streams could not be decoded ({type(e).__name__}: {e})") from e
    finally:
        bar.close()
