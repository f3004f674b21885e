"""The ``.ptk`` container (version 1). All integers little-endian.

====== ======================== ==================================================================
offset size                     field
====== ======================== ==================================================================
0      8                        magic ``b"\\x89PTK\\r\\n\\x1a\\n"``
8      1                        format version (1)
9      1                        mode of the original image: 1 = RGB, 2 = L (stored as R=G=B)
10     4                        width (u32, >= 1)
14     4                        height (u32, >= 1)
18     2                        tile size (u16; tiles are cut on a grid, edge tiles smaller: ``cut_tiles(border="keep")``)
20     1                        token order id (1 = wavefront, RGB interleaved; see ``coder``)
21     1                        quantization procedure id (2 = integer tables, ``coder.mixture_freqs``; 1 = retired float64)
22     1                        FREQ_BITS (frequencies sum to ``2**FREQ_BITS``)
23     1                        PROB_BITS (sigmoid table resolution, values in units of ``2**-PROB_BITS``)
24     1                        numerics id (1 = exact integer network in float64, CPU)
25     1                        coder id (2 = constriction RangeEncoder queue: 3 Uniform(32) scale offsets, then Categorical(perfect=False))
26     32                       SHA-256 of the model weights (``model.weights_sha256``)
58     1 + n                    model name: u8 length n, then n bytes UTF-8
..     4                        CRC32 of the original pixels (``(H, W, 3)`` uint8 C-order bytes)
..     varint x n_tiles         per-tile stream lengths in bytes (LEB128), tiles in raster order of the grid
..     sum(lengths)             payload: the tile streams, concatenated
end-4  4                        CRC32 of every byte before it
====== ======================== ==================================================================

:func:`parse` is strict: any inconsistency raises a :class:`PtkFormatError` subclass naming the field.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"\x89PTK\r\n\x1a\n"
VERSION = 1
MODES = {"RGB": 1, "L": 2}
MODE_NAMES = {v: k for k, v in MODES.items()}
TOKEN_ORDERS = {"wavefront-rgb-interleaved": 1}
_FIXED = struct.Struct("<8sBBIIHBBBBBB32s")  # through the model SHA-256


class PtkFormatError(ValueError):
    """A ``.ptk`` file that cannot be decoded (base class)."""


class PtkTruncatedError(PtkFormatError):
    """The file ends before the fields/payload it declares."""


class PtkChecksumError(PtkFormatError):
    """A CRC32 does not match: the file (or the decoded pixels) are corrupted."""


class PtkVersionError(PtkFormatError):
    """Unknown format version or unsupported coding parameters."""


class PtkModelMismatchError(PtkFormatError):
    """The file was written with other model weights than the ones given to decode it."""


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
    pixels_crc32: int
    tile_lengths: list[int] = field(default_factory=list)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def write(header: PtkHeader, streams: list[bytes]) -> bytes:
    """Serialise a header and the tile streams (``header.tile_lengths`` is filled from ``streams``)."""
    name = header.model_name.encode()[:255]
    body = bytearray(_FIXED.pack(
        MAGIC, VERSION, MODES[header.mode], header.width, header.height, header.tile_size,
        TOKEN_ORDERS[header.token_order], header.quant_id, header.freq_bits, header.prob_bits,
        header.numerics_id, header.coder_id, bytes.fromhex(header.model_sha256)))
    body += bytes([len(name)]) + name + struct.pack("<I", header.pixels_crc32)
    for s in streams:
        body += _varint(len(s))
    for s in streams:
        body += s
    body += struct.pack("<I", zlib.crc32(bytes(body)))
    return bytes(body)


def parse(data: bytes, source: str = "data") -> tuple[PtkHeader, list[bytes]]:
    """Strictly parse a ``.ptk`` file -> ``(header, tile streams)``."""
    from ..tiling import tile_grid

    data = bytes(data)
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC[:len(data)]:
        raise PtkFormatError(f"{source}: not a .ptk file (bad magic {data[:8]!r})")
    if len(data) < _FIXED.size + 1 + 4 + 4:
        raise PtkTruncatedError(f"{source}: truncated .ptk file ({len(data)} bytes, the fixed header alone is {_FIXED.size + 9})")
    (_, version, mode, width, height, tile, order, quant, fbits, pbits, numerics, coder, sha) = _FIXED.unpack_from(data)
    if version != VERSION:
        raise PtkVersionError(f"{source}: unknown .ptk format version {version} (this pixeltok reads version {VERSION})")
    pos = _FIXED.size
    nlen = data[pos]
    pos += 1
    if pos + nlen + 4 > len(data):
        raise PtkTruncatedError(f"{source}: truncated in the model name field")
    try:
        name = data[pos:pos + nlen].decode()
    except UnicodeDecodeError as e:
        raise PtkChecksumError(f"{source}: corrupted model name field ({e})") from None
    pos += nlen
    (pix_crc,) = struct.unpack_from("<I", data, pos)
    pos += 4
    if width < 1 or height < 1 or tile < 1:
        raise PtkChecksumError(f"{source}: corrupted header: width={width} height={height} tile_size={tile}")
    if mode not in MODE_NAMES:
        raise PtkChecksumError(f"{source}: corrupted header: unknown mode id {mode}")
    if order not in TOKEN_ORDERS.values():
        raise PtkVersionError(f"{source}: unsupported token order id {order}")
    rows, cols = tile_grid(height, width, tile)
    n_tiles = rows * cols
    if n_tiles > len(data):  # every tile needs at least one length byte
        raise PtkTruncatedError(f"{source}: truncated or corrupted: {width}x{height} needs {n_tiles} tiles, file has {len(data)} bytes")
    lengths = []
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
        lengths.append(n)
    end = pos + sum(lengths)
    if end + 4 > len(data):
        raise PtkTruncatedError(f"{source}: truncated .ptk file: header declares {end + 4} bytes, got {len(data)}")
    if end + 4 < len(data):
        raise PtkFormatError(f"{source}: {len(data) - end - 4} unexpected trailing bytes after the payload")
    (crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(data[:end]) != crc:
        raise PtkChecksumError(f"{source}: corrupted .ptk file: file CRC32 mismatch (a byte was changed)")
    streams, p = [], pos
    for n in lengths:
        streams.append(data[p:p + n])
        p += n
    inv_order = {v: k for k, v in TOKEN_ORDERS.items()}
    header = PtkHeader(width=width, height=height, mode=MODE_NAMES[mode], tile_size=tile, token_order=inv_order[order],
                       quant_id=quant, freq_bits=fbits, prob_bits=pbits, numerics_id=numerics, coder_id=coder,
                       model_sha256=sha.hex(), model_name=name, pixels_crc32=pix_crc, tile_lengths=lengths)
    return header, streams


def pixels_crc32(pixels) -> int:
    """CRC32 of ``(H, W, 3)`` uint8 pixels in C order."""
    import numpy as np

    return zlib.crc32(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
