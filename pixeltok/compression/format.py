"""The ``.ptk`` container (version 4; versions 1 to 3 are still read). All integers little-endian.

====== ======================== ==================================================================
offset size                     field
====== ======================== ==================================================================
0      8                        magic ``b"\\x89PTK\\r\\n\\x1a\\n"``
8      1                        format version (4; 3, 2 and 1 = the previous layouts, below)
9      1                        mode of the original image: 1 = RGB, 2 = L
10     4                        width (u32, >= 1)
14     4                        height (u32, >= 1; ``width * height <= MAX_IMAGE_PIXELS``)
18     2                        tile size (u16, ``1 .. MAX_TILE_SIZE``; tiles are cut on a grid, edge tiles smaller:
                                ``cut_tiles(border="keep")``); 0 with layout "whole" (version 3)
20     1                        token order id (1 = wavefront, coded channels interleaved; see ``coder``; 2 = raster,
                                RGB interleaved: coder id 5)
21     1                        quantization procedure id (2 = integer tables, ``coder.mixture_freqs``; 1 = retired float64)
22     1                        FREQ_BITS (frequencies sum to ``2**FREQ_BITS``)
23     1                        PROB_BITS (sigmoid table resolution, values in units of ``2**-PROB_BITS``)
24     1                        numerics id (1 = exact integer network in float64, CPU; 2 = the integer context
                                mixing of ``adaptive``, no network)
25     1                        coder id (3 = one Uniform(32) scale offset per coded channel, then Categorical; L codes
                                one channel. 2 = the version-1 coder: 3 offsets, L coded as R=G=B; see ``coder``.
                                4 = ``adaptive``'s binary arithmetic coder: quant id 0, freq bits 0, prob bits 16.
                                5 = ``causal``: any causal model over sub-pixels, token order 2 (raster, RGB
                                interleaved), tiles only, L coded as R=G=B; quant id 3, numerics id 3)
26     32                       SHA-256 of the model weights (``model.weights_sha256``); coder id 4: of the adaptive
                                model's identity string (:data:`ADAPTIVE_SHA256`)
58     1 + n                    model name: u8 length n, then n bytes UTF-8
..     4                        image CRC32 (:func:`image_crc32`): over ``(mode u8, width u32, height u32)`` and then
                                the pixels in the image's own layout, ``(H, W)`` for L, ``(H, W, 3)`` for RGB, so a
                                changed mode or size cannot pass with the pixels of another image
..     1                        payload kind: 1 = coded, 2 = stored
..     1                        (version 3) layout: 1 = independent tiles (one unit per tile), 2 = whole image (one
                                unit: the causal context crosses the whole image; tile size field 0)
..     2                        (version 3) adaptation block size (u16): each unit's stream starts with one scale
                                offset per ``block x block`` block (raster order) and coded channel. ``16 .. 256``
                                (``1 .. 256`` but at least ``min(16, tile size)`` for tiles); versions 1-2: one per
                                tile, i.e. the tile size
..     1 + n                    (version 4) coder parameters: u8 length n (0 .. 64), then n bytes (coder id 4: the
                                encoder's per-image choice, ``adaptive.params_from_bytes``; coder id 5: the
                                determinism conditions, ``causal.conditions_from_bytes``; empty for the network)
coded: varint x n_tiles         per-tile stream lengths in bytes (LEB128), raster order: at least
                                :func:`min_stream_bytes` of the tile; coder ids 2-3: multiples of 4 (id 3 pads with
                                zero words); coder id 4: any length
       sum(lengths)             the tile streams, concatenated
stored: H * W * channels        the raw pixels, same layout as the CRC (what ``compress`` writes whenever the coded
                                payload would be larger: a ``.ptk`` file is never bigger than raw pixels + header)
end-4  4                        CRC32 of every byte before it
====== ======================== ==================================================================

Version 3 is version 4 without the coder parameters field. Version 2 is version 3 without the layout and block
fields (always tiles, one offset per tile and channel).
Version 1 differs from 2 in three places: no payload-kind byte (always coded), the CRC field covers only the
``(H, W, 3)`` pixels (L stored as R=G=B), and L images were coded as three channels (coder id 2).

:func:`parse` is strict: any inconsistency raises a :class:`PtkFormatError` subclass naming the field, and every
size is checked against the limits and the bytes present before anything is allocated for it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Sequence

MAGIC = b"\x89PTK\r\n\x1a\n"
VERSION = 4
READ_VERSIONS = (1, 2, 3, 4)
MAX_PARAMS_BYTES = 64
ADAPTIVE_CODER_ID = 4  # pixeltok.compression.adaptive: integer context mixing + binary arithmetic coding
ADAPTIVE_NUMERICS_ID = 2
ADAPTIVE_NAME = "adaptive-cm-1"
# what a coder-id-4 file names in place of model weights: the adaptive model's identity (a change to its arithmetic
# gets a new name, so an old file is refused with a version error instead of decoding to garbage)
ADAPTIVE_SHA256 = hashlib.sha256(b"pixeltok.compression.adaptive " + ADAPTIVE_NAME.encode()).hexdigest()
# coder id 4 spends at least -log2(65511/65536) = 5.5e-4 bits on every sub-pixel (its zero flag is always coded),
# so a legitimate stream has at least one byte per ~14,500 sub-pixels: requiring one per 32,768 pixels bounds the
# decoding a crafted file can ask for per byte without refusing any real file
ADAPTIVE_PIXELS_PER_BYTE = 32768
LAYOUTS = {"tiles": 1, "whole": 2}
LAYOUT_NAMES = {v: k for k, v in LAYOUTS.items()}
MIN_BLOCK = 16  # smallest adaptation block of a version-3 file (bounds the offsets decoded per byte)
MODES = {"RGB": 1, "L": 2}
MODE_NAMES = {v: k for k, v in MODES.items()}
CHANNELS = {"RGB": 3, "L": 1}
TOKEN_ORDERS = {"wavefront-rgb-interleaved": 1, "raster-rgb-interleaved": 2}
PAYLOADS = {"coded": 1, "stored": 2}
PAYLOAD_NAMES = {v: k for k, v in PAYLOADS.items()}
_FIXED = struct.Struct("<8sBBIIHBBBBBB32s")  # through the model SHA-256
_IMAGE_ID = struct.Struct("<BII")  # (mode, width, height): the header fields the image CRC covers

# Limits, checked by the encoder and by the parser before anything is allocated. A range coder has no useful lower
# bound on bytes per pixel (every bin has frequency >= 1 of 2**24, so a sub-pixel costs >= 2.2e-5 bits: one 4-byte
# word legitimately holds a flat 256 x 256 tile), so the sizes themselves are bounded, and coder id 3 makes a bound
# by padding: a tile stream has at least one 32-bit word per STREAM_PIXELS_PER_WORD pixels (trailing zero words
# decode the same: past its data, constriction's decoder reads zeros). A 32 x 32 tile needs one word, which every
# stream has anyway; only larger, near-flat tiles are padded. So a coder-id-3 file asks for at most ~205 pixels of
# decoding per byte (1024 pixels per 4-byte word + 1 length byte); version-1 files (coder id 2) only have the
# absolute limits (up to MAX_TILE_SIZE**2 pixels per 5 bytes).
MAX_TILE_SIZE = 256  # the encoder refuses larger tiles (32 is the default)
STREAM_PIXELS_PER_WORD = 1024
MAX_IMAGE_PIXELS = 89_478_485  # Pillow's default decompression-bomb limit (its Image.MAX_IMAGE_PIXELS)
MAX_FILE_BYTES = 4 * MAX_IMAGE_PIXELS  # above any file within the limits (stored: 3 bytes per pixel + header)


class PtkFormatError(ValueError):
    """A ``.ptk`` file that cannot be decoded (base class)."""


class PtkTruncatedError(PtkFormatError):
    """The file ends before the fields/payload it declares."""


class PtkChecksumError(PtkFormatError):
    """A CRC32 does not match or a field is impossible: the file (or the decoded pixels) are corrupted."""


class PtkVersionError(PtkFormatError):
    """Unknown format version or unsupported coding parameters."""


class PtkModelMismatchError(PtkFormatError):
    """The file was written with other model weights than the ones given to decode it."""


class PtkLimitError(PtkFormatError):
    """The file declares sizes beyond this implementation's limits (``MAX_TILE_SIZE``, ``MAX_IMAGE_PIXELS``)."""


@dataclass
class PtkHeader:
    width: int
    height: int
    mode: str
    tile_size: int
    token_order: str
    quant_id: int
    freq_bits: int
    prob_bits: int
    numerics_id: int
    coder_id: int
    model_sha256: str
    model_name: str
    pixels_crc32: int  # version 2: image_crc32; version 1: pixels_crc32 of the (H, W, 3) pixels
    tile_lengths: list[int] = field(default_factory=list)  # empty for a stored payload
    payload: str = "coded"  # "coded" (tile streams) or "stored" (raw pixels)
    version: int = VERSION
    layout: str = "tiles"  # "tiles" (tile_size units) or "whole" (one unit, tile_size 0); versions 1-2: tiles
    block_size: int = 0  # adaptation block; 0 = the tile size (versions 1-2)
    coder_params: bytes = b""  # version 4: the coder's per-image parameters (coder id 4)

    def units(self) -> list[tuple[int, int, int, int]]:
        """The coded units as ``(y, x, h, w)`` in stream order (raster order of tiles, or the whole image)."""
        return unit_rects(self.height, self.width, self.layout, self.tile_size)

    @property
    def block(self) -> int:
        """The adaptation block size in effect (versions 1-2: the tile size)."""
        return self.block_size or self.tile_size


def unit_rects(height: int, width: int, layout: str, tile_size: int) -> list[tuple[int, int, int, int]]:
    if layout == "whole":
        return [(0, 0, height, width)]
    rows, cols = -(-height // tile_size), -(-width // tile_size)
    return [(r * tile_size, c * tile_size, min(tile_size, height - r * tile_size), min(tile_size, width - c * tile_size))
            for r in range(rows) for c in range(cols)]


def check_block(layout: str, tile_size: int, block: int) -> str | None:
    """Why a version-3 (layout, tile size, block) is invalid, or None."""
    if layout == "whole":
        if tile_size != 0:
            return f"layout whole needs tile size 0, got {tile_size}"
        lo = MIN_BLOCK
    else:
        lo = min(MIN_BLOCK, tile_size)
    if not lo <= block <= MAX_TILE_SIZE:
        return f"adaptation block {block} outside [{lo}, {MAX_TILE_SIZE}]"
    return None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def min_stream_bytes(h: int, w: int, coder_id: int) -> int:
    """The shortest valid stream of an ``h x w`` tile: one word, and for coder id 3 one per 1024 pixels; coder id 4:
    4 bytes (its flush) and one per ``ADAPTIVE_PIXELS_PER_BYTE`` pixels."""
    if coder_id == ADAPTIVE_CODER_ID:
        return max(4, -(-h * w // ADAPTIVE_PIXELS_PER_BYTE))
    return 4 * max(1, -(-h * w // STREAM_PIXELS_PER_WORD)) if coder_id >= 3 else 4


def write(header: PtkHeader, streams: Sequence[bytes] = (), *, stored: bytes | None = None) -> bytes:
    """Serialise a version-3 file: the unit ``streams`` (coded payload), or with ``stored`` the raw pixels
    (``(H, W)`` / ``(H, W, 3)`` uint8 C-order bytes). ``header``'s ``tile_lengths``, ``payload`` and ``version``
    are ignored (they follow from the arguments)."""
    why = check_block(header.layout, header.tile_size, header.block)
    if why:
        raise ValueError(why)
    name = header.model_name.encode()[:255]
    body = bytearray(_FIXED.pack(
        MAGIC, VERSION, MODES[header.mode], header.width, header.height, header.tile_size,
        TOKEN_ORDERS[header.token_order], header.quant_id, header.freq_bits, header.prob_bits,
        header.numerics_id, header.coder_id, bytes.fromhex(header.model_sha256)))
    body += bytes([len(name)]) + name + struct.pack("<I", header.pixels_crc32)
    body.append(PAYLOADS["coded" if stored is None else "stored"])
    body += struct.pack("<BH", LAYOUTS[header.layout], header.block)
    if len(header.coder_params) > MAX_PARAMS_BYTES:
        raise ValueError(f"coder parameters of {len(header.coder_params)} bytes (at most {MAX_PARAMS_BYTES})")
    body += bytes([len(header.coder_params)]) + bytes(header.coder_params)
    if stored is None:
        for s in streams:
            body += _varint(len(s))
        for s in streams:
            body += s
    else:
        if len(stored) != header.width * header.height * CHANNELS[header.mode]:
            raise ValueError(f"stored payload of {len(stored)} bytes for a {header.width}x{header.height} "
                             f"{header.mode} image")
        body += stored
    body += struct.pack("<I", zlib.crc32(bytes(body)))
    return bytes(body)


def as_bytes(data, source: str = "data") -> bytes:
    """``bytes``/``bytearray``/``memoryview`` -> ``bytes``; anything else is a ``TypeError`` (``bytes(2**36)`` would
    allocate 64 GiB of zeros, ``bytes(None)`` says nothing useful)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{source}: a .ptk file must be given as bytes, bytearray, memoryview or a path (str or "
                    f"os.PathLike), got {type(data).__name__}")


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of a ``.ptk`` file, refusing files larger than any valid one before reading them whole."""
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise PtkLimitError(f"{path}: larger than {MAX_FILE_BYTES} bytes, more than any .ptk file within the limits")
    return data


def parse(data, source: str = "data") -> tuple[PtkHeader, list[bytes]]:
    """Strictly parse a ``.ptk`` file -> ``(header, payload)``: the tile streams for a coded payload, a one-element
    list holding the raw pixel bytes for a stored one."""
    from ..tiling import tile_grid

    data = as_bytes(data, source)
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC[:len(data)]:
        raise PtkFormatError(f"{source}: not a .ptk file (bad magic {data[:8]!r})")
    if len(data) < _FIXED.size + 1 + 4 + 4:
        raise PtkTruncatedError(f"{source}: truncated .ptk file ({len(data)} bytes, the fixed header alone is {_FIXED.size + 9})")
    (_, version, mode, width, height, tile, order, quant, fbits, pbits, numerics, coder, sha) = _FIXED.unpack_from(data)
    if version not in READ_VERSIONS:
        raise PtkVersionError(f"{source}: unknown .ptk format version {version} (this pixeltok reads versions "
                              f"{', '.join(map(str, READ_VERSIONS))})")
    pos = _FIXED.size
    nlen = data[pos]
    pos += 1
    if pos + nlen + 4 + (version >= 2) > len(data):
        raise PtkTruncatedError(f"{source}: truncated in the model name field")
    try:
        name = data[pos:pos + nlen].decode()
    except UnicodeDecodeError as e:
        raise PtkChecksumError(f"{source}: corrupted model name field ({e})") from None
    pos += nlen
    (pix_crc,) = struct.unpack_from("<I", data, pos)
    pos += 4
    kind = PAYLOADS["coded"]
    if version >= 2:
        kind = data[pos]
        pos += 1
    layout, block = LAYOUTS["tiles"], tile
    if version >= 3:
        if pos + 3 > len(data):
            raise PtkTruncatedError(f"{source}: truncated in the layout field")
        layout, block = struct.unpack_from("<BH", data, pos)
        pos += 3
        if layout not in LAYOUT_NAMES:
            raise PtkChecksumError(f"{source}: corrupted header: unknown layout id {layout}")
    coder_params = b""
    if version >= 4:
        if pos >= len(data) or pos + 1 + data[pos] > len(data):
            raise PtkTruncatedError(f"{source}: truncated in the coder parameters field")
        if data[pos] > MAX_PARAMS_BYTES:
            raise PtkChecksumError(f"{source}: corrupted header: coder parameters of {data[pos]} bytes "
                                   f"(at most {MAX_PARAMS_BYTES})")
        coder_params = bytes(data[pos + 1:pos + 1 + data[pos]])
        pos += 1 + data[pos]
    if width < 1 or height < 1 or (tile < 1 and not (version >= 3 and LAYOUT_NAMES[layout] == "whole")):
        raise PtkChecksumError(f"{source}: corrupted header: width={width} height={height} tile_size={tile}")
    if mode not in MODE_NAMES:
        raise PtkChecksumError(f"{source}: corrupted header: unknown mode id {mode}")
    if kind not in PAYLOAD_NAMES:
        raise PtkChecksumError(f"{source}: corrupted header: unknown payload kind {kind}")
    if order not in TOKEN_ORDERS.values():
        raise PtkVersionError(f"{source}: unsupported token order id {order}")
    # the limits come before anything sized by these fields is allocated or looped over
    if width * height > MAX_IMAGE_PIXELS:
        raise PtkLimitError(f"{source}: declares a {width}x{height} image ({width * height} pixels), more than the "
                            f"limit of {MAX_IMAGE_PIXELS} pixels (corrupted, or not written by pixeltok)")
    if tile > MAX_TILE_SIZE:
        raise PtkLimitError(f"{source}: declares tile size {tile}, above the limit of {MAX_TILE_SIZE} "
                            "(corrupted, or not written by pixeltok)")
    mode_name = MODE_NAMES[mode]
    layout_name = LAYOUT_NAMES[layout]
    if version >= 3:
        why = check_block(layout_name, tile, block)
        if why:
            raise PtkChecksumError(f"{source}: corrupted header: {why}")
    lengths: list[int] = []
    if PAYLOAD_NAMES[kind] == "stored":
        end = pos + width * height * CHANNELS[mode_name]
    else:
        rects = unit_rects(height, width, layout_name, tile) if layout_name == "whole" else None
        rows, cols = (1, 1) if rects else tile_grid(height, width, tile)
        n_tiles = rows * cols
        words = coder != ADAPTIVE_CODER_ID  # the range coder writes whole 32-bit words
        if n_tiles * 5 > len(data) - pos:  # every tile needs a length byte and at least one 4-byte word
            raise PtkTruncatedError(f"{source}: truncated or corrupted: {width}x{height} in tiles of {tile} needs "
                                    f"{n_tiles} tile streams, the file has {len(data) - pos} bytes left for them")
        for t in range(n_tiles):
            n, shift = 0, 0
            while True:
                if pos >= len(data):
                    raise PtkTruncatedError(f"{source}: truncated in the tile length table (tile {t} of {n_tiles})")
                b = data[pos]
                pos += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
                if shift > 35:
                    raise PtkChecksumError(f"{source}: corrupted tile length of tile {t}")
            r, c = divmod(t, cols)
            th, tw = (height, width) if rects else (min(tile, height - r * tile), min(tile, width - c * tile))
            if (words and n % 4) or n < min_stream_bytes(th, tw, coder):  # enough bytes for the tile's pixels
                raise PtkChecksumError(f"{source}: corrupted tile length of tile {t}: {n} bytes (a {th}x{tw} tile "
                                       f"stream is {'a multiple of 4 bytes, ' if words else ''}at least "
                                       f"{min_stream_bytes(th, tw, coder)})")
            lengths.append(n)
        end = pos + sum(lengths)
    if end + 4 > len(data):
        raise PtkTruncatedError(f"{source}: truncated .ptk file: header declares {end + 4} bytes, got {len(data)}")
    if end + 4 < len(data):
        raise PtkFormatError(f"{source}: {len(data) - end - 4} unexpected trailing bytes after the payload")
    (crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(memoryview(data)[:end]) != crc:
        raise PtkChecksumError(f"{source}: corrupted .ptk file: file CRC32 mismatch (a byte was changed)")
    if PAYLOAD_NAMES[kind] == "stored":
        streams = [data[pos:end]]
    else:
        streams, p = [], pos
        for n in lengths:
            streams.append(data[p:p + n])
            p += n
    inv_order = {v: k for k, v in TOKEN_ORDERS.items()}
    header = PtkHeader(width=width, height=height, mode=mode_name, tile_size=tile, token_order=inv_order[order],
                       quant_id=quant, freq_bits=fbits, prob_bits=pbits, numerics_id=numerics, coder_id=coder,
                       model_sha256=sha.hex(), model_name=name, pixels_crc32=pix_crc, tile_lengths=lengths,
                       payload=PAYLOAD_NAMES[kind], version=version, layout=layout_name,
                       block_size=block if version >= 3 else 0, coder_params=coder_params)
    return header, streams


def pixels_crc32(pixels) -> int:
    """Version 1's pixel CRC: CRC32 of ``(H, W, 3)`` uint8 pixels in C order (no header field covered)."""
    import numpy as np

    return zlib.crc32(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())


def image_crc32(mode: str, pixels) -> int:
    """Version 2's image CRC: CRC32 of ``(mode id u8, width u32, height u32)`` followed by the pixels, ``(H, W)``
    uint8 for L or ``(H, W, 3)`` for RGB, C order."""
    import numpy as np

    px = np.ascontiguousarray(pixels, dtype=np.uint8)
    if px.shape[2:] != ((3,) if mode == "RGB" else ()):
        raise ValueError(f"image_crc32: pixels of shape {px.shape} for mode {mode}")
    return zlib.crc32(px.tobytes(), zlib.crc32(_IMAGE_ID.pack(MODES[mode], px.shape[1], px.shape[0])))
