"""Small helpers shared by the dataset builders: errors, seeded splits, source fingerprints, running a builder, and
reading untrusted data safely (paths that must stay inside their folder, checked PNG and tar archives).

The builders themselves live one per module (``pokemon.py``, ``cifar_tiles.py``) because ``datasets`` names a
builder's cache folder after its module.
"""

from __future__ import annotations

import bz2
import collections
import gzip
import hashlib
import io
import logging
import lzma
import os
import re
import struct
import tarfile
import unicodedata
import zlib
from pathlib import Path, PureWindowsPath
from typing import Callable, Iterator, Sequence

import numpy as np

from ..image_io import composite_on  # noqa: F401  (the data builders' shared import point)

logger = logging.getLogger("pixeltok.data")

IMAGE_EXTENSIONS = (".png", ".gif", ".bmp", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm")
SPLIT_NAMES = ("train", "validation", "test")


class DataSourceError(ValueError):
    """A data source that cannot be turned into a dataset: the message names the file (and record/field) and why."""


def check_errors_mode(errors: str) -> str:
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
    return errors


def fail_or_skip(errors: str, message: str) -> None:
    """Raise :class:`DataSourceError` (``errors="raise"``) or log the skipped item (``errors="skip"``)."""
    if errors == "skip":
        logger.warning("skipped: %s", message)
        return
    raise DataSourceError(message)


def pixeltok_cache_dir() -> Path:
    """``$PIXELTOK_CACHE`` or ``$XDG_CACHE_HOME/pixeltok`` or ``~/.cache/pixeltok`` (for raw downloads)."""
    if os.environ.get("PIXELTOK_CACHE"):
        return Path(os.environ["PIXELTOK_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pixeltok"


def is_url(source: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", str(source)))


def is_hub_repo_id(source: str) -> bool:
    """``org/name`` that is not a local path (a Hub dataset repository id)."""
    s = str(source)
    return not os.path.exists(s) and bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s)) and not s.endswith((".parquet", ".tar.gz", ".bin"))


def list_image_files(folder: Path, check_links: bool = True) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by relative POSIX path so the order is platform independent.

    With ``check_links``, a file that resolves (through a symlink) outside ``folder`` raises :class:`DataSourceError`:
    building from a folder must never read, and later publish, a file from elsewhere on the machine.
    """
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    if check_links:
        for p in files:
            check_resolves_inside(folder, p)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


# -- paths read from data files -------------------------------------------------------------------------------------
def is_safe_relpath(name: str) -> bool:
    """Relative, no ``..`` component (``/`` or ``\\`` separated), no drive, no NUL: safe to join to a folder."""
    return (isinstance(name, str) and bool(name) and "\0" not in name and not name.startswith(("/", "\\"))
            and not PureWindowsPath(name).drive and ".." not in re.split(r"[\\/]", name))


def check_resolves_inside(folder: Path, path: Path, where: str | None = None) -> Path:
    """``path`` unchanged, or :class:`DataSourceError` when it resolves (symlinks followed) outside ``folder``."""
    root, real = Path(folder).resolve(), Path(path).resolve()
    if real != root and not real.is_relative_to(root):
        raise DataSourceError(f"{where or path}: resolves to {real}, outside the data folder {folder} (a symlink?); refused")
    return path


def join_inside(folder: Path, value, where: str, field: str = "file_name") -> Path:
    """``folder / value`` for a relative path read from a data file (a metadata ``file_name``, a path in a config).

    Refused with a :class:`DataSourceError` naming ``where``, ``field`` and the value when the value is not a
    non-empty string, is absolute, has a ``..`` component, or resolves through a symlink outside ``folder``.
    """
    if not isinstance(value, str) or not value:
        raise DataSourceError(f"{where}: {field} must be a non-empty relative path (a string), got {value!r:.80}")
    if not is_safe_relpath(value):
        raise DataSourceError(f"{where}: {field} {value!r:.200} is absolute or contains '..'; paths must stay inside {folder}")
    return check_resolves_inside(folder, Path(folder) / value, f"{where}: {field} {value!r}")


# -- integrity checks: formats whose checksums the usual readers skip ------------------------------------------------
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_PNG_CHUNK = 2 ** 31 - 1  # the PNG spec's limit on a chunk length and on width/height


def check_png(data: bytes, where: str) -> None:
    """Verify a whole PNG file's structure and checksums; :class:`DataSourceError` naming ``where`` and the chunk.

    Pillow skips the CRC-32 of IDAT chunks and stops inflating once it has every pixel row, before the zlib stream's
    Adler-32: a flipped byte in the pixel data would otherwise load as silently different pixels. Checks every chunk's
    length (before slicing) and CRC, that IHDR comes first with a sane size, that IEND is reached, and inflates the
    IDAT stream to its end (in bounded pieces: nothing the size of the image is allocated) so its Adler-32 is checked.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise DataSourceError(f"{where}: not a PNG file (bad signature)")
    pos, n, inflate, chunk_no = len(PNG_SIGNATURE), len(data), zlib.decompressobj(), 0
    while True:
        if pos + 12 > n:
            raise DataSourceError(f"{where}: truncated PNG ({n} bytes; chunk {chunk_no} header at byte {pos} is cut, no IEND)")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if length > _MAX_PNG_CHUNK or pos + 12 + length > n:
            raise DataSourceError(f"{where}: PNG chunk {chunk_no} ({ctype!r}) at byte {pos} has length {length}, past the "
                                  f"end of the {n}-byte file (truncated or corrupt)")
        body = data[pos + 8:pos + 8 + length]
        if zlib.crc32(body, zlib.crc32(ctype)) != struct.unpack_from(">I", data, pos + 8 + length)[0]:
            raise DataSourceError(f"{where}: PNG chunk {chunk_no} ({ctype!r}) at byte {pos}: CRC mismatch (corrupt file)")
        if chunk_no == 0:
            if ctype != b"IHDR" or length != 13:
                raise DataSourceError(f"{where}: PNG does not start with a 13-byte IHDR chunk (got {ctype!r}, {length} bytes)")
            w, h = struct.unpack_from(">II", body)
            from PIL import Image

            cap = Image.MAX_IMAGE_PIXELS or 2 ** 62  # the decompression-bomb limit that pixeltok.image_io applies too
            if not (0 < w <= _MAX_PNG_CHUNK and 0 < h <= _MAX_PNG_CHUNK) or w * h > cap:
                raise DataSourceError(f"{where}: PNG IHDR size {w}x{h} is empty or too large (limit {cap} pixels)")
        elif ctype == b"IDAT":
            try:
                while body:  # max_length: inflate in 1 MiB pieces, whatever the image size claims
                    out = inflate.decompress(body, 1 << 20)
                    body = inflate.unconsumed_tail
                    while len(out) == 1 << 20 and not body:
                        out = inflate.decompress(b"", 1 << 20)
            except zlib.error as e:
                raise DataSourceError(f"{where}: PNG chunk {chunk_no} (IDAT): corrupt image data ({e})") from None
        elif ctype == b"IEND":
            break
        pos += 12 + length
        chunk_no += 1
    if not inflate.eof:
        raise DataSourceError(f"{where}: PNG image data (IDAT) is missing or its zlib stream is incomplete")


def check_image_file(path: str | os.PathLike) -> None:
    """:func:`check_png` on ``path`` when it holds a PNG (other formats are left to the image reader)."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(PNG_SIGNATURE):
        check_png(data, str(path))


# -- tar archives ------------------------------------------------------------------------------------------------
_DECOMPRESSORS = ((b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")), (b"BZh", bz2.BZ2File),
                  (b"\xfd7zXZ\x00", lzma.LZMAFile))
# what reading a damaged archive raises below us (gzip.BadGzipFile is an OSError); all become DataSourceError
ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)
_TAIL = 1 << 16  # bytes kept by _CountingStream: more than tarfile reads ahead (one 10240-byte record)


class _CountingStream:
    """The decompressed tar stream as ``tarfile`` reads it: counts bytes, refuses more than ``limit`` (a
    decompression bomb) and keeps the last ones, so the bytes after the last member can be checked although
    ``tarfile`` has already buffered past them."""

    def __init__(self, f, limit: int, where: str):
        self.f, self.limit, self.where, self.pos = f, limit, where, 0
        self.tail: collections.deque[bytes] = collections.deque()
        self.kept = 0

    def read(self, size: int = -1) -> bytes:
        room = self.limit + 1 - self.pos  # one byte more than allowed, so an oversized stream is noticed
        data = self.f.read(room if size is None or size < 0 else min(size, room))
        self.pos += len(data)
        if self.pos > self.limit:
            raise DataSourceError(f"{self.where}: decompresses to more than {self.limit} bytes; refused (not the expected archive)")
        self.tail.append(data)
        self.kept += len(data)
        while self.kept - len(self.tail[0]) >= _TAIL:
            self.kept -= len(self.tail.popleft())
        return data

    def since(self, offset: int) -> bytes:
        start = self.pos - self.kept
        if offset < start:  # cannot happen with tarfile's read-ahead; refuse rather than skip the check
            raise DataSourceError(f"{self.where}: cannot check the end of the archive (internal: offset {offset} < {start})")
        return b"".join(self.tail)[offset - start:]


def _read_member(tf: tarfile.TarFile, m: tarfile.TarInfo, where: str) -> bytes:
    try:
        f = tf.extractfile(m)
        if f is None:
            raise DataSourceError(f"{where}: member {m.name!r} is not a regular file")
        return f.read()
    except ARCHIVE_ERRORS as e:
        raise DataSourceError(f"{where}: corrupt or truncated archive while reading member {m.name!r} ({e})") from None


def iter_tar(source: str | os.PathLike | bytes, where: str | None = None, *,
             limit: int = 1 << 30) -> Iterator[tuple[tarfile.TarInfo, Callable[[], bytes]]]:
    """Every member of a tar archive (plain, gzip, bzip2 or xz; a path or the bytes) in order, as ``(member, read)``.

    Sequential (``tarfile`` stream mode, no seeks). When the loop runs to the end it also checks what ``tarfile``
    does not: the decompressor's integrity check (gzip CRC-32 and length, bzip2 / xz checks), which only runs at the
    end of the compressed stream and ``tarfile`` stops reading before it; and that the end-of-archive marker follows
    the last member, since ``tarfile`` takes a corrupt or truncated header for the end of the archive and silently
    drops every member after it. Member names that are absolute or contain ``..`` are refused before anything is
    read. ``read()`` returns a regular member's bytes: check ``member.size`` (it is allocated) before calling it.
    Every failure is a :class:`DataSourceError` naming ``where`` (default: the path) and the member.
    """
    where = where or str(source)
    raw = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    dec = None
    try:
        head = raw.read(6)
        raw.seek(0)
        opener = next((op for magic, op in _DECOMPRESSORS if head.startswith(magic)), None)
        dec = raw if opener is None else opener(raw)
        stream = _CountingStream(dec, limit, where)
        try:
            tf = tarfile.open(fileobj=stream, mode="r|")
        except ARCHIVE_ERRORS as e:
            raise DataSourceError(f"{where}: not a readable tar archive ({e})") from None
        last = None
        with tf:
            while True:
                try:
                    m = tf.next()
                except ARCHIVE_ERRORS as e:
                    raise DataSourceError(f"{where}: corrupt or truncated archive after member {last!r} ({e})") from None
                if m is None:
                    break
                if not is_safe_relpath(m.name):
                    raise DataSourceError(f"{where}: member {m.name!r:.200} has an absolute path or a '..' component; "
                                          "refusing the archive")
                yield m, lambda m=m: _read_member(tf, m, where)
                last = m.name
            try:
                rest = stream.since(tf.offset)  # tf.offset: just after the last member's data
                zeros, ok = len(rest), not rest.strip(b"\0")
                while ok and (chunk := stream.read(1 << 20)):  # to the end: runs the decompressor's check
                    zeros, ok = zeros + len(chunk), not chunk.strip(b"\0")
            except ARCHIVE_ERRORS as e:
                raise DataSourceError(f"{where}: corrupt archive: {e} (checked at the end of the compressed stream; last "
                                      f"member {last!r})") from None
            if not ok or zeros < tarfile.BLOCKSIZE:
                raise DataSourceError(f"{where}: corrupt or truncated archive: after member {last!r} comes "
                                      + ("data that is not a valid member header" if not ok else "no end-of-archive marker")
                                      + " (the members after it would be silently lost)")
    finally:
        if dec is not None and dec is not raw:
            dec.close()
        raw.close()


def fingerprint_paths(paths: Sequence[str | os.PathLike]) -> str:
    """Short hash of the files' paths, sizes and modification times (so edited sources invalidate the cache).

    Non-existent entries (URLs, Hub ids) contribute their string only.
    """
    h = hashlib.sha1()
    for p in paths:
        h.update(str(p).encode())
        try:
            st = os.stat(p)
            h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:
            pass
        h.update(b"\0")
    return h.hexdigest()[:16]


def fingerprint_source(source) -> str:
    """Fingerprint of a file, a folder (all files under it) or a list of paths."""
    if isinstance(source, (list, tuple)):
        return fingerprint_paths([str(p) for p in source])
    p = Path(str(source))
    if p.is_dir():
        return fingerprint_paths([str(p)] + sorted(str(f) for f in p.rglob("*") if f.is_file()))
    return fingerprint_paths([str(source)])


def _count(size: float | int, n: int, name: str) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, float)) or size < 0:
        raise ValueError(f"{name} must be a fraction in [0, 1) or a non-negative count, got {size!r}")
    if isinstance(size, float) and size < 1:
        return int(round(size * n))
    if isinstance(size, float) and not size.is_integer():
        raise ValueError(f"{name} must be a fraction in [0, 1) or a whole count, got {size!r}")
    return int(size)


def split_assignment(n: int, val_size: float | int, test_size: float | int, seed: int) -> np.ndarray:
    """Seeded split of ``n`` items: ``(n,)`` int8 codes, 0 = train, 1 = validation, 2 = test.

    Sizes are fractions (``0.1``) or counts (``100``). The same ``(n, sizes, seed)`` always gives the same split,
    independent of platform, process count or ``datasets`` version (a numpy PCG64 permutation).
    """
    n_val, n_test = _count(val_size, n, "val_size"), _count(test_size, n, "test_size")
    if n and n_val + n_test >= n:
        raise ValueError(f"val_size={val_size!r} and test_size={test_size!r} leave no training items out of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    codes = np.zeros(n, dtype=np.int8)
    codes[perm[:n_val]] = 1
    codes[perm[n_val:n_val + n_test]] = 2
    return codes


def box_downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """``(H, W, C)`` uint8 -> ``(H // f, W // f, C)`` uint8 by averaging ``f x f`` boxes (round half up).

    The right/bottom remainder (``H % f`` rows, ``W % f`` columns) is dropped.
    """
    if factor == 1:
        return img
    h, w = img.shape[0] // factor, img.shape[1] // factor
    if h == 0 or w == 0:
        raise ValueError(f"image {img.shape[1]}x{img.shape[0]} is smaller than the downscale factor {factor}")
    boxes = img[:h * factor, :w * factor].reshape(h, factor, w, factor, -1).astype(np.uint32)
    s = boxes.sum(axis=(1, 3))
    return ((2 * s + factor * factor) // (2 * factor * factor)).astype(np.uint8)


_TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
                             "\u2013": "-", "\u2014": " - ", "\u2026": "...", "\u00a0": " ", "\u00ab": '"', "\u00bb": '"'})


def normalize_caption(text: str, lowercase: bool = True) -> str:
    """Caption -> printable ASCII on one line (the PixelBytes byte vocabulary; ``\\t``/``\\n`` are structural there).

    Typographic quotes/dashes become ASCII, accents are stripped (NFKD), other non-ASCII is dropped, every run of
    whitespace becomes one space; lower-cased when ``lowercase`` (as in the published Pokémon captions).
    """
    t = unicodedata.normalize("NFKD", str(text).translate(_TYPOGRAPHY))
    t = t.encode("ascii", "ignore").decode("ascii")
    t = "".join(ch for ch in t if ch.isprintable() or ch.isspace())
    t = re.sub(r"\s+", " ", t).strip()
    return t.lower() if lowercase else t


def unwrap_generation_error(e: BaseException) -> BaseException:
    """``datasets`` wraps errors raised while generating in ``DatasetGenerationError``: return the one that explains."""
    cur = e
    seen = set()
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, DataSourceError):
            return cur
        from ..image_io import ImageInputError

        if isinstance(cur, ImageInputError):
            return DataSourceError(str(cur))
        cur = cur.__cause__ or cur.__context__
    return e


def run_builder(builder_cls, config_name: str, *, cache_dir=None, num_proc: int | None = None, streaming: bool = False,
                download_mode=None, **config_kwargs):
    """Instantiate ``builder_cls`` (hash = ``pixeltok.__version__``), prepare it and return its ``DatasetDict``.

    ``streaming=True`` returns an ``IterableDatasetDict`` without writing Arrow files. Errors raised while generating
    come back unwrapped (the :class:`DataSourceError` naming the file), not as a generic ``DatasetGenerationError``.
    """
    import datasets

    import pixeltok

    builder = builder_cls(config_name=config_name, cache_dir=None if cache_dir is None else str(cache_dir),
                          hash=str(pixeltok.__version__), **config_kwargs)
    try:
        if streaming:
            return builder.as_streaming_dataset()
        builder.download_and_prepare(num_proc=num_proc, download_mode=download_mode)
    except datasets.exceptions.DatasetGenerationError as e:
        cause = unwrap_generation_error(e)
        if cause is e:
            raise
        raise cause from e
    return builder.as_dataset()


_NOT_OPTIONS = ("name", "version", "data_dir", "data_files", "description", "source_fingerprint")
_OPTIONS_TAG = "pixeltok-options: "


def describe_config(config) -> str:
    """``config.description`` plus one JSON line of every builder option (kept in ``Dataset.info.description`` so a
    built dataset says exactly how it was made; :func:`read_options` reads it back for the dataset card)."""
    import dataclasses
    import json

    opts = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in _NOT_OPTIONS}
    return f"{config.description or ''}\n{_OPTIONS_TAG}{json.dumps(opts, default=str, sort_keys=True)}"


def read_options(info) -> dict:
    """The builder options recorded by :func:`describe_config` in a ``DatasetInfo`` (``{}`` if absent)."""
    import json

    for line in (getattr(info, "description", None) or "").splitlines():
        if line.startswith(_OPTIONS_TAG):
            return json.loads(line[len(_OPTIONS_TAG):])
    return {}
