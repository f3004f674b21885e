"""Small helpers shared by the dataset builders: errors, seeded splits, source fingerprints, running a builder.

The builders themselves live one per module (``pokemon.py``, ``cifar_tiles.py``) because ``datasets`` names a
builder's cache folder after its module.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np

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


def list_image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by relative POSIX path so the order is platform independent."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


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


def composite_on(rgba: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA -> ``(H, W, 3)`` uint8, alpha-blended over a solid ``background`` (exact integers)."""
    a = rgba[..., 3:4].astype(np.uint32)
    if (a == 255).all():
        return np.ascontiguousarray(rgba[..., :3])
    bg = np.asarray(background, dtype=np.uint32)
    out = (rgba[..., :3].astype(np.uint32) * a + bg * (255 - a) + 127) // 255
    return out.astype(np.uint8)


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
