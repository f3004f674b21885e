"""Single words rendered with real fonts into small images: the reading task of "images as text for any LM".

A plain causal LM gets a small image as pixel tokens and must write the word it shows. The images are where pixel
tokens are short (11-20 px tall, at most 96 px wide, fonts of 7-15 px) and where OCR engines start to fail.

:func:`load_text_images` returns a ``DatasetDict`` (``IterableDatasetDict`` with ``streaming=True``) built by the
:class:`TextImages` builder; :func:`prepare_reader_image` brings any other image to the task's format.

Rendering (every parameter is recorded in the row)
-------------------------------------------------
- Text: a word, a number or a user string drawn for the row; words are lower case, ``Title`` or ``UPPER``.
- Font: one of the split's fonts at ``font_size`` px (FreeType em size; Pillow ``ImageFont.truetype`` with the
  basic layout engine, so the output does not depend on whether libraqm is installed).
- Size: ``height`` 11-20 px (drawn per row, at least the ink height), ``width`` = ink width + 1-4 px padding on each
  side (at most ``max_width=96``), or a fixed ``width``. A word wider than ``max_width - 2`` (or taller than the
  image) at the drawn size is drawn 1 px smaller, down to the tier's smallest size; if it still does not fit, it is
  skipped and another word is drawn (all from the row's own random stream: deterministic).
- Colours: ``fg`` and ``bg`` uniform RGB with a Rec. 601 luma difference
  ``|0.299 dR + 0.587 dG + 0.114 dB| >= 40`` (``luma_diff``, exact to 1/1000).
- Position: the ink box's top-left corner at ``(offset_x, offset_y)``, jittered inside the image.
- Degradation: Gaussian blur of radius ``blur`` (0, or 0.3-0.7 px, half of the rows) then Gaussian noise of
  ``noise_sigma`` grey levels per channel, rounded and clipped to 0..255.

Tiers
-----
- ``clean``: font 11-15 px, luma difference >= 80, noise sigma <= 4.
- ``hard``: at least one of font 7-10 px (``small_font``), luma difference in [40, 80) (``low_contrast``), sigma in
  [6, 12] (``noise``) -- each non-empty combination equally likely, listed in ``hard_factors`` -- and everything
  else as in ``clean``.
``tier="mixed"`` (default) draws the tier per row (``hard_fraction`` of the rows are hard), so every split holds both
and an evaluation reports both.

Splits
------
Fonts are split first: a seeded ``test_fonts`` share (by font, or by family with ``font_split="family"``) is
rendered only in ``test``; ``train`` and ``validation`` share the other fonts. Words are split by their lower-case
form (``Paris`` and ``paris`` are the same word): ``val_words`` and ``test_words`` shares of the pool appear only in
``validation`` / ``test``; numbers (0-99999) are split the same way. So test rows are unseen fonts *and* unseen
words, and validation rows are unseen words in the training fonts.

Row ``i`` of a split is rendered from ``numpy.random.default_rng([seed, split_code, i])`` alone: rows are
identical whether built to Arrow, streamed, sharded across ranks or built with ``num_proc``.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import keyword
import os
import re
import shutil
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import datasets
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..image_io import ImageInputError, prepare_reader_image  # noqa: F401  (prepare_reader_image: re-exported)
from ._common import DataSourceError, logger, pixeltok_cache_dir, run_builder, split_assignment
from .wesnoth import extract_deb

__all__ = ["load_text_images", "prepare_reader_image", "render_text_image", "sample_row", "make_pools", "TextImages",
           "TextImagesConfig", "matplotlib_fonts", "debian_fonts", "resolve_fonts", "check_font", "font_name",
           "font_family", "wamerican_words", "pydoc_words", "resolve_words", "render_text_images_card",
           "fetch_debian_package", "luma", "ImageInputError", "DataSourceError", "CLEAN", "HARD", "MAX_WIDTH",
           "HEIGHT_RANGE", "FONT_SIZE_RANGE"]

# -- the task's ranges -------------------------------------------------------------------------------------------
MAX_WIDTH = 96
HEIGHT_RANGE = (11, 20)
FONT_SIZE_RANGE = (7, 15)
CLEAN = {"font_size": (11, 15), "luma_diff": (80, 256), "noise_sigma": (0.0, 4.0)}  # luma_diff: [lo, hi)
HARD = {"small_font": (7, 10), "low_contrast": (40, 80), "noise": (6.0, 12.0)}
HARD_FACTORS = ("small_font", "low_contrast", "noise")
BLUR_PROBABILITY, BLUR_RANGE = 0.5, (0.3, 0.7)
PAD_RANGE = (1, 4)  # horizontal padding each side with a variable width
NUMBER_RANGE = 100_000  # numbers 0..99999
TIERS = ("clean", "hard", "mixed")
SPLITS = ("train", "validation", "test")
RANDOM_CHARS = string.ascii_letters + string.digits
_RANDOM_CHAR_ARRAY = np.array(list(RANDOM_CHARS))

DEBIAN_FONT_PACKAGES = ("fonts-dejavu-core", "fonts-liberation", "fonts-freefont-ttf")
WORDS_PACKAGE = "wamerican"
WORDS_FILE = "usr/share/dict/american-english"  # /usr/share/dict/words is a symlink to it (not a regular file)

# matplotlib's bundled fonts that are not text faces (symbols, math, glyph-less display subsets, fallback boxes)
_NOT_TEXT_FONTS = re.compile(r"^(cmex10|cmsy10|cmmi10|STIXNonUni.*|STIXSiz.*|LastResort.*|.*Display)\.ttf$", re.I)
_WORD_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9'.-]*$")


# -- Debian packages (apt-get download + pure-Python extraction, cached) -----------------------------------------
def fetch_debian_package(package: str, prefixes: tuple[str, ...], download_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding the files of Debian package ``package`` under ``prefixes`` (``usr/share/fonts/`` ...).

    ``apt-get download`` fetches the ``.deb`` into ``<download_dir or pixeltok cache>/debian/<package>/`` (a
    ``.deb`` already there is used as is, so a folder prepared by hand works offline); it is extracted without dpkg
    (:func:`pixeltok.data.wesnoth.extract_deb`) and the extraction is reused on later calls. Any failure is a
    :class:`DataSourceError` saying what to do.
    """
    from filelock import FileLock  # a datasets dependency

    base = Path(download_dir) if download_dir is not None else pixeltok_cache_dir()
    cache = base / "debian" / package
    extracted = cache / "extracted"
    if (extracted / ".complete").is_file():
        return extracted
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / ".lock")):  # ranks of one job fetching at once: one downloads, the others wait
        return _fetch_locked(package, prefixes, cache, extracted)


def _fetch_locked(package: str, prefixes: tuple[str, ...], cache: Path, extracted: Path) -> Path:
    if (extracted / ".complete").is_file():
        return extracted
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        if shutil.which("apt-get") is None:
            raise DataSourceError(f"cannot fetch the Debian package {package}: apt-get not found. Download "
                                  f"{package}_*.deb by hand into {cache}, or use the offline defaults "
                                  "(fonts='matplotlib', words='pydoc' or words=[...])")
        logger.info("downloading %s with apt-get into %s", package, cache)
        try:
            r = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataSourceError(f"apt-get download {package} failed ({e}); put {package}_*.deb into {cache} by hand, or "
                                  "use the offline defaults (fonts='matplotlib', words='pydoc' or words=[...])") from None
        debs = sorted(cache.glob(f"{package}_*.deb"))
        if r.returncode != 0 or not debs:
            hint = " (run `apt-get update` first?)" if "Unable to locate" in r.stderr or "no installation candidate" in r.stderr else ""
            raise DataSourceError(f"apt-get download {package} failed (exit {r.returncode}){hint}: {r.stderr.strip()[-400:]}; "
                                  f"put {package}_*.deb into {cache} by hand, or use the offline defaults "
                                  "(fonts='matplotlib', words='pydoc' or words=[...])")
    if extracted.exists():
        shutil.rmtree(extracted)  # an interrupted extraction
    n = extract_deb(debs[-1], extracted, prefixes=tuple(prefixes) + (f"usr/share/doc/{package}/copyright",))
    if n == 0:
        raise DataSourceError(f"{debs[-1]}: holds no file under {', '.join(prefixes)}")
    (extracted / ".complete").write_text(debs[-1].name)
    logger.info("extracted %d files from %s", n, debs[-1].name)
    return extracted


def _package_version(extracted: Path) -> str:
    marker = extracted / ".complete"
    return marker.read_text().strip() if marker.is_file() else str(extracted)


# -- fonts ----------------------------------------------------------------------------------------------------------
_FONTS: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}
_CHECKED: dict[tuple[str, int, int], str | None] = {}


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """The loaded font for ``(path, size)``, cached: loading a TTF costs far more than drawing a word with it."""
    key = (path, size)
    f = _FONTS.get(key)
    if f is None:
        f = _FONTS[key] = ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)
    return f


def font_name(path: str | os.PathLike) -> str:
    """``"<family> <style>"`` from the font's name table (``"DejaVu Sans Bold"``, ``"cmr10 Regular"``)."""
    family, style = _font(str(path), 24).getname()
    return f"{family} {style}".strip()


def font_family(path: str | os.PathLike) -> str:
    return _font(str(path), 24).getname()[0]


_XHEIGHT, _ASCENDERS, _DESCENDERS, _CAPS = "acemnorsuvwxz", "bdhkl", "gpqy", "ABCDEFGHIKLMNOPRSTUVWXYZ"


def check_font(path: str | os.PathLike) -> str | None:
    """``None`` when ``path`` is a text font that renders ASCII letters and digits properly, else why not.

    Checks: Pillow loads it; every letter and digit has a non-empty glyph and all 62 glyphs differ (no fallback box);
    and the letters have the shape of Latin text -- the x-height letters (``acemnorsuvwxz``) share one height and
    sit on the baseline, ascenders (``bdhkl``) rise above them, descenders (``gpqy``) go below it, capitals share one
    height, above the x-height. Symbol and math fonts that map ASCII codes to other shapes (cmsy10, cmex10, dingbats)
    fail the shape test; glyph-less subsets fail the first. At least 90% of these per-letter checks must hold.
    """
    p = str(path)
    try:
        st = os.stat(p)
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    key = (p, st.st_size, st.st_mtime_ns)
    if key in _CHECKED:
        return _CHECKED[key]
    _CHECKED[key] = reason = _check_font(p)
    return reason


def _check_font(p: str) -> str | None:
    size = 48
    try:
        f = _font(p, size)
    except (OSError, ValueError) as e:
        return f"Pillow cannot load it as a TrueType/OpenType font ({e})"
    chars = string.ascii_letters + string.digits
    masks = set()
    for c in chars:
        m = f.getmask(c)
        w, h = m.size
        data = bytes(m) if w * h else b""
        if not w or not h or not any(data):
            return f"no glyph for {c!r} (not a Latin text font)"
        masks.add((w, h, data))
    if len(masks) < len(chars):
        return f"only {len(masks)} distinct glyphs for the {len(chars)} ASCII letters and digits (fallback boxes?)"
    bb = {c: f.getbbox(c, anchor="ls") for c in _XHEIGHT + _ASCENDERS + _DESCENDERS + _CAPS}  # y < 0: above baseline
    xh = float(np.median([-bb[c][1] for c in _XHEIGHT]))
    ch = float(np.median([-bb[c][1] for c in _CAPS]))
    if not (0.3 * size < xh < 0.85 * ch and ch > 0.45 * size):
        return f"letter shapes are not Latin text (x-height {xh:.0f} px, cap height {ch:.0f} px at {size} px)"
    tol = 0.06 * size
    ok = [abs(-bb[c][1] - xh) <= 1.5 * tol and abs(bb[c][3]) <= tol for c in _XHEIGHT]
    ok += [abs(-bb[c][1] - ch) <= 1.5 * tol and abs(bb[c][3]) <= tol for c in _CAPS]
    ok += [-bb[c][1] > xh + 0.15 * size and abs(bb[c][3]) <= tol for c in _ASCENDERS]
    ok += [bb[c][3] > 0.1 * size and abs(-bb[c][1] - xh) <= 1.5 * tol for c in _DESCENDERS]
    if np.mean(ok) < 0.9:
        return f"letter shapes are not Latin text (only {np.mean(ok):.0%} of the x-height/cap/ascender/descender checks hold)"
    return None


def _matplotlib_font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def matplotlib_fonts() -> list[Path]:
    """matplotlib's bundled text fonts (always installed: matplotlib is a pixeltok dependency), sorted by file name.

    DejaVu Sans / Sans Mono / Serif with their bold and oblique/italic variants, STIXGeneral (regular, bold, italic,
    bold italic) and Computer Modern cmr10, cmb10, cmti10, cmss10, cmtt10. Left out by name: the math/symbol faces
    (cmex10, cmsy10, cmmi10, STIXNonUni*, STIXSiz*), the glyph-less ``*Display`` subsets and LastResort; every kept
    font also passes :func:`check_font`.
    """
    folder = _matplotlib_font_dir()
    out = []
    for p in sorted(folder.glob("*.ttf")):
        if _NOT_TEXT_FONTS.match(p.name):
            continue
        reason = check_font(p)
        if reason:
            logger.warning("matplotlib font %s left out: %s", p.name, reason)
            continue
        out.append(p)
    if len(out) < 2:
        raise DataSourceError(f"{folder}: fewer than 2 usable text fonts found in matplotlib's data folder")
    return out


def debian_fonts(download_dir: str | os.PathLike | None = None,
                 packages: Sequence[str] = DEBIAN_FONT_PACKAGES) -> list[Path]:
    """The TTFs of Debian's ``fonts-dejavu-core``, ``fonts-liberation`` and ``fonts-freefont-ttf``, fetched with
    ``apt-get download`` (cached; see :func:`fetch_debian_package`). :class:`DataSourceError` if a fetch fails."""
    out = []
    for pkg in packages:
        root = fetch_debian_package(pkg, ("usr/share/fonts/",), download_dir)
        files = sorted(p for p in (root / "usr/share/fonts").rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
        if not files:
            raise DataSourceError(f"Debian package {pkg} ({_package_version(root)}) holds no .ttf/.otf font")
        for p in files:
            reason = check_font(p)
            if reason:
                logger.warning("font %s (%s) left out: %s", p.name, pkg, reason)
            else:
                out.append(p)
    return out


def resolve_fonts(fonts="matplotlib", download_dir=None) -> list[tuple[str, str]]:
    """``[(font name, path)]``, sorted by name and unique by name, for a ``fonts=`` argument.

    ``"matplotlib"`` (:func:`matplotlib_fonts`), ``"debian"`` (:func:`debian_fonts`), ``"all"`` (both; a font in
    both -- DejaVu -- is kept once, matplotlib's copy), or a list of font file paths (each must pass
    :func:`check_font`: a :class:`DataSourceError` names the file and why not).
    """
    if isinstance(fonts, (str, os.PathLike)) and str(fonts) in ("matplotlib", "debian", "all"):
        paths = []
        if str(fonts) in ("matplotlib", "all"):
            paths += matplotlib_fonts()
        if str(fonts) in ("debian", "all"):
            paths += debian_fonts(download_dir)
    elif isinstance(fonts, (list, tuple)) and fonts:
        paths = []
        for p in fonts:
            if not isinstance(p, (str, os.PathLike)):
                raise ValueError(f"fonts: expected font file paths, got {type(p).__name__} {p!r:.80}")
            if not os.path.isfile(p):
                raise DataSourceError(f"{p}: no such font file")
            reason = check_font(p)
            if reason:
                raise DataSourceError(f"{p}: not usable for the reading task: {reason}")
            paths.append(Path(p))
    else:
        raise ValueError(f"fonts must be 'matplotlib', 'debian', 'all' or a non-empty list of font file paths, got {fonts!r:.120}")
    seen: dict[str, str] = {}
    for p in paths:
        name = font_name(p)
        if name in seen:
            if os.path.realpath(seen[name]) != os.path.realpath(p):
                logger.info("font %r at %s is also at %s: kept once", name, p, seen[name])
            continue
        seen[name] = str(p)
    return sorted(seen.items())


# -- words ----------------------------------------------------------------------------------------------------------
def wamerican_words(download_dir: str | os.PathLike | None = None) -> list[str]:
    """Debian's ``wamerican`` list (``/usr/share/dict/words``, SCOWL size 50), fetched with ``apt-get download``.

    Kept: ASCII, purely alphabetic entries (drops possessives ``'s`` and anything with punctuation), lower-cased and
    unique, in sorted order (~74k words). :class:`DataSourceError` when the package cannot be fetched.
    """
    root = fetch_debian_package(WORDS_PACKAGE, (WORDS_FILE,), download_dir)
    text = (root / WORDS_FILE).read_text(encoding="utf-8", errors="replace")
    return _clean_words(text.split("\n"))


def _clean_words(lines) -> list[str]:
    return sorted({w.strip().lower() for w in lines if w.strip().isascii() and w.strip().isalpha()})


def pydoc_words(min_count: int = 5) -> list[str]:
    """An offline word list from a real English text inside every Python install: the language reference and
    library topics of ``pydoc_data.topics`` (the text ``help()`` shows).

    Lower-case alphabetic tokens of 3-14 letters in running prose (not before ``(``, ``=``, ``_``, ``.``-joined or
    quoted), seen at least ``min_count`` times, minus Python keywords and builtin names: about a thousand words,
    mostly English with some programming jargon (``iterator``, ``namespace``). For demos and offline tests; the
    default list is ``wamerican``.
    """
    import builtins

    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))
    toks = []
    for tok in text.split():
        if tok[0] in "`'\"_":  # quoted or marked-up names are code, not prose
            continue
        tok = tok.lstrip("(").rstrip(",;:!?)")
        if tok.endswith(".") and tok.count(".") == 1:
            tok = tok[:-1]
        if re.fullmatch(r"[a-z]{3,14}", tok):
            toks.append(tok)
    counts = collections.Counter(toks)
    stop = set(keyword.kwlist) | set(keyword.softkwlist) | {n.lower() for n in dir(builtins)}
    return sorted(w for w, n in counts.items() if n >= min_count and w not in stop)


def resolve_words(words="wamerican", download_dir=None) -> tuple[list[str], str]:
    """``(word pool, description)`` for a ``words=`` argument: ``"wamerican"`` (default, fetched), ``"pydoc"``
    (offline, :func:`pydoc_words`), a path to a text file (one word per line, used as given) or a list of strings.

    A given list/file is used as written (case kept; duplicates by lower-case form dropped, first one kept). Each
    entry must be one word of ASCII letters and digits, with ``'``, ``.`` or ``-`` inside: a :class:`ValueError`
    names the first entry that is not.
    """
    if isinstance(words, str) and words == "wamerican":
        root = fetch_debian_package(WORDS_PACKAGE, (WORDS_FILE,), download_dir)
        return wamerican_words(download_dir), f"Debian {_package_version(root)} ({WORDS_FILE}; alphabetic ASCII, lower-cased)"
    if isinstance(words, str) and words == "pydoc":
        import sys

        return pydoc_words(), f"pydoc_data.topics of Python {sys.version.split()[0]}"
    if isinstance(words, (str, os.PathLike)):
        p = Path(words)
        if not p.is_file():
            raise ValueError(f"words must be 'wamerican', 'pydoc', a word-list file or a list of strings; {str(words)!r:.120} "
                             "is none of these (no such file)")
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8", errors="strict").splitlines() if ln.strip()]
        return _check_word_list(lines, str(p)), f"word list file {p.name}"
    if isinstance(words, (list, tuple)):
        return _check_word_list(list(words), "words"), f"a list of {len(words)} words given by the user"
    raise ValueError(f"words must be 'wamerican', 'pydoc', a word-list file or a list of strings, got {type(words).__name__}")


def _check_word_list(items: list, where: str) -> list[str]:
    out, seen = [], set()
    for i, w in enumerate(items):
        if not isinstance(w, str):
            raise ValueError(f"{where}[{i}]: expected a string, got {type(w).__name__} {w!r:.60}")
        if not _WORD_CHARS.match(w):
            raise ValueError(f"{where}[{i}]: {w!r:.60} is not a single word of ASCII letters/digits (with ' . - inside): "
                             "the fonts are only checked for those")
        if w.lower() not in seen:
            seen.add(w.lower())
            out.append(w)
    if not out:
        raise ValueError(f"{where}: the word list is empty")
    return out


# -- colours -------------------------------------------------------------------------------------------------------
def luma(rgb) -> float:
    """Rec. 601 luma ``0.299 R + 0.587 G + 0.114 B`` of an RGB triple (0..255)."""
    r, g, b = (int(v) for v in rgb)
    return (299 * r + 587 * g + 114 * b) / 1000


def _luma_milli(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0].astype(np.int64) * 299 + rgb[..., 1].astype(np.int64) * 587 + rgb[..., 2].astype(np.int64) * 114


def _colours(rng: np.random.Generator, lo: int, hi: int) -> tuple[tuple[int, ...], tuple[int, ...], float]:
    """``(fg, bg, luma difference)`` with ``lo <= |luma(fg) - luma(bg)| < hi`` (exact, in thousandths)."""
    while True:
        bg = rng.integers(0, 256, 3)
        cand = rng.integers(0, 256, (64, 3))
        d = np.abs(_luma_milli(cand) - int(_luma_milli(bg)))
        ok = np.flatnonzero((d >= lo * 1000) & (d < hi * 1000))
        if len(ok):
            k = int(ok[0])
            return tuple(int(v) for v in cand[k]), tuple(int(v) for v in bg), int(d[k]) / 1000


# -- one row ---------------------------------------------------------------------------------------------------------
@dataclass
class _Pools:
    """What a split draws from: its fonts ``[(name, path)]``, words and numbers."""

    fonts: tuple
    words: tuple
    numbers: np.ndarray


def make_pools(fonts="matplotlib", words="pydoc", numbers: bool = True, download_dir=None) -> _Pools:
    """All fonts / words / numbers in one pool, unsplit (for :func:`sample_row` outside the builder: benchmarks,
    previews). ``fonts`` / ``words`` as for :func:`load_text_images`."""
    return _Pools(fonts=tuple(resolve_fonts(fonts, download_dir)), words=tuple(resolve_words(words, download_dir)[0]),
                  numbers=np.arange(NUMBER_RANGE if numbers else 0, dtype=np.int64))


def _case(word: str, rng: np.random.Generator, title: float, upper: float) -> str:
    u = rng.random()
    return word.title() if u < title else word.upper() if u < title + upper else word


def sample_row(rng: np.random.Generator, pools: _Pools, *, tier: str = "mixed", hard_fraction: float = 0.5,
               number_fraction: float = 0.1, title_fraction: float = 0.15, upper_fraction: float = 0.1,
               height: int | None = None, width: int | None = None, max_width: int = MAX_WIDTH,
               max_tries: int = 64, random_fraction: float = 0.0, random_max_length: int = 8) -> dict:
    """Draw every rendering parameter of one row from ``rng`` (see the module docstring); no pixels yet.

    ``random_fraction``: share of rows whose text is a random string of 1 to ``random_max_length`` ASCII letters and
    digits (kind ``"random"``): text no language prior can guess, so a model must read it."""
    row_tier = tier if tier != "mixed" else ("hard" if rng.random() < hard_fraction else "clean")
    factors = ()
    if row_tier == "hard":
        mask = int(rng.integers(1, 8))  # a non-empty subset of the three hard factors, uniformly
        factors = tuple(f for k, f in enumerate(HARD_FACTORS) if mask >> k & 1)
    lo_s, hi_s = HARD["small_font"] if "small_font" in factors else CLEAN["font_size"]
    box_w = (width if width is not None else max_width) - 2  # at least 1 px on each side
    box_h = height if height is not None else HEIGHT_RANGE[1]
    for _ in range(max_tries):
        n_num = len(pools.numbers) if number_fraction > 0 else 0
        if random_fraction > 0 and rng.random() < random_fraction:  # no draw at 0: rows stay as they were
            size = int(rng.integers(1, random_max_length + 1))
            text = "".join(_RANDOM_CHAR_ARRAY[rng.integers(len(RANDOM_CHARS), size=size)])
            kind = "random"
        elif n_num and (not pools.words or rng.random() < number_fraction):
            text, kind = str(int(pools.numbers[rng.integers(n_num)])), "number"
        elif pools.words:
            text, kind = _case(pools.words[int(rng.integers(len(pools.words)))], rng, title_fraction, upper_fraction), "word"
        else:
            raise DataSourceError("the split has neither words nor numbers to draw from")
        fname, fpath = pools.fonts[int(rng.integers(len(pools.fonts)))]
        size = int(rng.integers(lo_s, hi_s + 1))
        while True:
            left, top, right, bottom = _font(fpath, size).getbbox(text, anchor="ls")
            ink_w, ink_h = right - left, bottom - top
            if (ink_w <= box_w and ink_h <= box_h) or size <= lo_s:
                break
            size -= 1
        if ink_w <= box_w and ink_h <= box_h and ink_w > 0 and ink_h > 0:
            break
    else:
        raise DataSourceError(f"no text fitted in {box_w + 2}x{box_h} px at font sizes {lo_s}-{hi_s} after {max_tries} "
                              f"draws (last: {text!r} in {fname}); the words are too long for max_width={max_width}")
    h = height if height is not None else int(rng.integers(max(HEIGHT_RANGE[0], ink_h), HEIGHT_RANGE[1] + 1))
    if width is not None:
        w = width
        x = int(rng.integers(1, w - ink_w))  # 1 .. w - ink_w - 1
    else:
        pl, pr = (int(v) for v in rng.integers(PAD_RANGE[0], PAD_RANGE[1] + 1, 2))
        w = min(max_width, ink_w + pl + pr)
        x = min(pl, w - ink_w - 1)
    y = int(rng.integers(0, h - ink_h + 1))
    lo_c, hi_c = HARD["low_contrast"] if "low_contrast" in factors else CLEAN["luma_diff"]
    fg, bg, diff = _colours(rng, lo_c, hi_c)
    if "noise" in factors:
        sigma = int(rng.integers(round(HARD["noise"][0] * 10), round(HARD["noise"][1] * 10) + 1)) / 10
    else:
        sigma = int(rng.integers(0, round(CLEAN["noise_sigma"][1] * 10) + 1)) / 10
    blur = int(rng.integers(round(BLUR_RANGE[0] * 10), round(BLUR_RANGE[1] * 10) + 1)) / 10 if rng.random() < BLUR_PROBABILITY else 0.0
    return {"text": text, "kind": kind, "tier": row_tier, "hard_factors": list(factors), "font": fname,
            "font_file": os.path.basename(fpath), "font_path": fpath, "font_size": size, "height": h, "width": w,
            "fg": list(fg), "bg": list(bg), "luma_diff": diff, "noise_sigma": sigma, "blur": blur,
            "offset_x": x, "offset_y": y, "_origin": (x - left, y - top)}


def render_text_image(params: dict, rng: np.random.Generator | None = None) -> Image.Image:
    """Draw the row described by ``params`` (from :func:`sample_row`): RGB ``width x height`` PIL image.

    The noise comes from ``rng`` (the row's stream, right after :func:`sample_row`); ``None``: no noise.
    """
    font = _font(params["font_path"], params["font_size"])
    im = Image.new("RGB", (params["width"], params["height"]), tuple(params["bg"]))
    ImageDraw.Draw(im).text(params["_origin"], params["text"], fill=tuple(params["fg"]), font=font, anchor="ls")
    if params["blur"] > 0:
        im = im.filter(ImageFilter.GaussianBlur(params["blur"]))
    sigma = params["noise_sigma"]
    if sigma > 0 and rng is not None:
        a = np.asarray(im, dtype=np.float32)
        a = a + rng.standard_normal(a.shape, dtype=np.float32) * np.float32(sigma)
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    return im


# -- builder -------------------------------------------------------------------------------------------------------
@dataclass
class TextImagesConfig(datasets.BuilderConfig):
    """Every option of the builder (all part of the cache key); see :func:`load_text_images` for their meaning."""

    fonts: object = "matplotlib"
    words: object = "wamerican"
    n_train: int = 10_000
    n_val: int = 1_000
    n_test: int = 1_000
    tier: str = "mixed"
    hard_fraction: float = 0.5
    train_hard_fraction: float | None = None
    random_fraction: float = 0.0
    random_max_length: int = 8
    number_fraction: float | None = None
    title_fraction: float | None = None
    upper_fraction: float | None = None
    test_fonts: object = 0.2
    font_split: str = "font"
    val_words: float = 0.1
    test_words: float = 0.1
    height: int | None = None
    width: int | None = None
    max_width: int = MAX_WIDTH
    seed: int = 0
    num_shards: int = 48
    download_dir: str | None = None
    source_fingerprint: str = ""


def _is_count(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_options(c) -> None:
    """Validate every option before anything is fetched or rendered (a :class:`ValueError` naming the option)."""
    for k in ("n_train", "n_val", "n_test"):
        v = getattr(c, k)
        if not _is_count(v) or v < 0:
            raise ValueError(f"{k} must be a non-negative int, got {v!r}")
    if c.n_train + c.n_val + c.n_test == 0:
        raise ValueError("n_train, n_val and n_test are all 0: nothing to build")
    if c.tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {c.tier!r}")
    for k in ("hard_fraction", "train_hard_fraction", "random_fraction", "number_fraction", "title_fraction",
              "upper_fraction"):
        v = getattr(c, k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1):
            raise ValueError(f"{k} must be a fraction in [0, 1], got {v!r}")
    if not _is_count(c.random_max_length) or not 1 <= c.random_max_length <= 32:
        raise ValueError(f"random_max_length must be an int in 1..32, got {c.random_max_length!r}")
    if (c.title_fraction or 0) + (c.upper_fraction or 0) > 1:
        raise ValueError(f"title_fraction + upper_fraction must be <= 1, got {c.title_fraction} + {c.upper_fraction}")
    for k in ("val_words", "test_words"):
        v = getattr(c, k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (isinstance(v, float) and not v < 1 and not v.is_integer()):
            raise ValueError(f"{k} must be a fraction in [0, 1) or a count of words, got {v!r}")
    tf = c.test_fonts
    if not ((isinstance(tf, (int, float)) and not isinstance(tf, bool) and tf >= 0)
            or (isinstance(tf, (list, tuple)) and all(isinstance(n, str) for n in tf))):
        raise ValueError(f"test_fonts must be a fraction, a count or a list of font names, got {tf!r}")
    if c.font_split not in ("font", "family"):
        raise ValueError(f"font_split must be 'font' or 'family', got {c.font_split!r}")
    if not _is_count(c.max_width) or not 16 <= c.max_width <= MAX_WIDTH:
        raise ValueError(f"max_width must be an int in 16..{MAX_WIDTH}, got {c.max_width!r}")
    if c.height is not None and (not _is_count(c.height) or not HEIGHT_RANGE[0] <= c.height <= HEIGHT_RANGE[1]):
        raise ValueError(f"height must be None (drawn per row) or an int in {HEIGHT_RANGE[0]}..{HEIGHT_RANGE[1]}, got {c.height!r}")
    if c.width is not None and (not _is_count(c.width) or not 16 <= c.width <= c.max_width):
        raise ValueError(f"width must be None (fitted to the word) or an int in 16..{c.max_width}, got {c.width!r}")
    if not _is_count(c.num_shards) or c.num_shards < 1:
        raise ValueError(f"num_shards must be a positive int, got {c.num_shards!r}")
    if not _is_count(c.seed) or c.seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {c.seed!r}")
    f = c.fonts
    if not ((isinstance(f, str) and f in ("matplotlib", "debian", "all")) or (isinstance(f, (list, tuple)) and f)):
        raise ValueError(f"fonts must be 'matplotlib', 'debian', 'all' or a non-empty list of font file paths, got {f!r:.120}")
    w = c.words
    if not (isinstance(w, (str, os.PathLike)) or (isinstance(w, (list, tuple)) and w)):
        raise ValueError(f"words must be 'wamerican', 'pydoc', a word-list file or a non-empty list of strings, got {w!r:.120}")


def _plan(c) -> dict:
    """Resolve fonts and words and split them: ``{"pools": {split_code: _Pools}, "summary": {...}}``."""
    fonts = resolve_fonts(c.fonts, c.download_dir)
    words, words_source = resolve_words(c.words, c.download_dir)
    given = isinstance(c.words, (list, tuple)) or c.words not in ("wamerican", "pydoc")
    number_fraction = c.number_fraction if c.number_fraction is not None else (0.0 if given else 0.1)
    title = c.title_fraction if c.title_fraction is not None else (0.0 if given else 0.15)
    upper = c.upper_fraction if c.upper_fraction is not None else (0.0 if given else 0.1)

    # fonts: test ones held out (by font or by family); train and validation share the rest
    units = sorted({font_family(p) if c.font_split == "family" else n for n, p in fonts})
    unit_of = {n: (font_family(p) if c.font_split == "family" else n) for n, p in fonts}
    if c.n_test == 0:
        held = set()
    elif isinstance(c.test_fonts, (list, tuple)):
        held = set(c.test_fonts)
        unknown = sorted(held - set(units))
        if unknown:
            raise ValueError(f"test_fonts: {unknown} not among the {c.font_split}s {units}")
    else:
        tf = c.test_fonts
        if tf == 0:
            raise ValueError("test_fonts=0 with n_test > 0: the test split needs fonts of its own")
        if not _is_count(tf) and tf >= 1 and not float(tf).is_integer():
            raise ValueError(f"test_fonts must be a fraction in (0, 1), a whole count or a list of names, got {tf!r}")
        k = int(tf) if _is_count(tf) or tf >= 1 else max(1, round(tf * len(units)))
        if c.n_train + c.n_val > 0 and k >= len(units):
            raise ValueError(f"test_fonts={c.test_fonts!r} holds out {k} of {len(units)} {c.font_split}s: none would be left "
                             f"for train/validation (give more fonts, e.g. fonts='all')")
        perm = np.random.default_rng([c.seed, 101]).permutation(len(units))
        held = {units[i] for i in perm[:k]}
    test_fonts = tuple((n, p) for n, p in fonts if unit_of[n] in held)
    train_fonts = tuple((n, p) for n, p in fonts if unit_of[n] not in held)
    if c.n_test and not test_fonts:
        raise ValueError("test_fonts selects no font for the test split")
    if (c.n_train or c.n_val) and not train_fonts:
        raise ValueError(f"every font is held out for test: train/validation have none ({len(fonts)} fonts)")

    # words (by lower-case form: the pool is unique by it) and numbers
    def split_codes(n, salt):  # 0 = train, 1 = validation, 2 = test (the share of an empty split stays unused)
        val, test = (c.val_words if c.n_val else 0), (c.test_words if c.n_test else 0)
        try:
            return split_assignment(n, val, test, [c.seed, salt])
        except ValueError as e:
            raise ValueError(f"words: {e} (the pool has {n} entries; give more words or smaller val_words/test_words)") from None

    wcodes = split_codes(len(words), 102)
    ncodes = split_codes(NUMBER_RANGE, 103)
    numbers = np.arange(NUMBER_RANGE, dtype=np.int64)
    pools = {}
    for code, n in enumerate((c.n_train, c.n_val, c.n_test)):
        if not n:
            continue
        w = tuple(wd for wd, k in zip(words, wcodes) if k == code)
        nums = numbers[ncodes == code] if number_fraction > 0 else numbers[:0]
        if not w and not len(nums):
            raise ValueError(f"the {SPLITS[code]} split gets no words (pool of {len(words)}: val_words={c.val_words}, "
                             f"test_words={c.test_words}); give more words")
        pools[code] = _Pools(fonts=test_fonts if code == 2 else train_fonts, words=w, numbers=nums)
    summary = {"words_source": words_source, "fonts_total": len(fonts),
               "train_fonts": [n for n, _ in train_fonts], "test_fonts_held_out": [n for n, _ in test_fonts],
               "words_per_split": {SPLITS[k]: len(p.words) for k, p in pools.items()},
               "numbers_per_split": {SPLITS[k]: int(len(p.numbers)) for k, p in pools.items()},
               "number_fraction": number_fraction, "title_fraction": title, "upper_fraction": upper}
    return {"pools": pools, "summary": summary, "fractions": (number_fraction, title, upper)}


_OPTIONS_TAG = "pixeltok-options: "  # the line _common.read_options reads back (for the dataset card)


def _describe(c, summary: dict | None) -> str:
    opts = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)
            if f.name not in ("name", "version", "data_dir", "data_files", "description", "source_fingerprint")}
    for k in ("words", "fonts"):
        v = opts[k]
        if isinstance(v, (list, tuple)) and len(v) > 20:
            digest = hashlib.sha1("\n".join(map(str, v)).encode()).hexdigest()[:12]
            opts[k] = f"<list of {len(v)}, sha1 {digest}>"
        elif isinstance(v, (list, tuple)):
            opts[k] = [str(x) for x in v]
    if summary:
        opts["resolved"] = summary
    return f"{c.description or ''}\n{_OPTIONS_TAG}{json.dumps(opts, default=str, sort_keys=True)}"


FEATURES = datasets.Features({
    "image": datasets.Image(), "text": datasets.Value("string"), "tier": datasets.Value("string"),
    "hard_factors": datasets.List(datasets.Value("string")), "kind": datasets.Value("string"),
    "font": datasets.Value("string"), "font_file": datasets.Value("string"), "font_size": datasets.Value("int32"),
    "height": datasets.Value("int32"), "width": datasets.Value("int32"),
    "fg": datasets.List(datasets.Value("uint8"), length=3), "bg": datasets.List(datasets.Value("uint8"), length=3),
    "luma_diff": datasets.Value("float64"), "noise_sigma": datasets.Value("float64"), "blur": datasets.Value("float64"),
    "offset_x": datasets.Value("int32"), "offset_y": datasets.Value("int32"), "index": datasets.Value("int64"),
})


class TextImages(datasets.GeneratorBasedBuilder):
    """Words rendered into small images -> ``image``, ``text`` and every rendering parameter (see the module doc)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = TextImagesConfig
    BUILDER_CONFIGS = [TextImagesConfig(name="default", version=VERSION,
                                        description="Single words rendered with real fonts into small images (pixeltok).")]
    DEFAULT_CONFIG_NAME = "default"

    def _resolved(self) -> dict:
        if getattr(self, "_plan_cache", None) is None:
            check_options(self.config)
            self._plan_cache = _plan(self.config)
        return self._plan_cache

    def _info(self) -> datasets.DatasetInfo:
        homepage = "https://packages.debian.org/stable/wamerican" if self.config.words == "wamerican" else ""
        return datasets.DatasetInfo(description=_describe(self.config, self._resolved()["summary"]), features=FEATURES,
                                    homepage=homepage)

    def _split_generators(self, dl_manager):
        c = self.config
        plan = self._resolved()
        gens = []
        for code, n in enumerate((c.n_train, c.n_val, c.n_test)):
            if not n:
                continue
            chunks = [(k * n // c.num_shards, (k + 1) * n // c.num_shards) for k in range(c.num_shards)]
            gens.append(datasets.SplitGenerator(name=SPLITS[code], gen_kwargs={"chunks": chunks, "split_code": code,
                                                                               "pools": plan["pools"][code]}))
        return gens

    def _generate_examples(self, chunks, split_code, pools) -> Iterator[tuple[str, dict]]:
        c = self.config
        number_fraction, title, upper = self._resolved()["fractions"]
        for start, stop in chunks:
            for i in range(start, stop):
                yield f"{SPLITS[split_code]}-{i}", make_row(i, split_code, pools, c, number_fraction, title, upper)


def make_row(index: int, split_code: int, pools: _Pools, c, number_fraction: float, title: float, upper: float) -> dict:
    """Row ``index`` of split ``split_code``: its parameters and image, from its own random stream."""
    rng = np.random.default_rng([c.seed, split_code, index])
    hard = c.train_hard_fraction if split_code == 0 and c.train_hard_fraction is not None else c.hard_fraction
    p = sample_row(rng, pools, tier=c.tier, hard_fraction=hard, number_fraction=number_fraction,
                   title_fraction=title, upper_fraction=upper, height=c.height, width=c.width, max_width=c.max_width,
                   random_fraction=c.random_fraction if split_code == 0 else 0.0,  # held-out rows: real text
                   random_max_length=c.random_max_length)
    image = render_text_image(p, rng)
    p.pop("_origin")
    p.pop("font_path")
    p["image"] = image
    p["index"] = index
    return p


# -- public loader ---------------------------------------------------------------------------------------------------
def _fingerprint(c) -> str:
    """Everything outside the config that changes the pixels: this module's code, the font and word files, the
    versions of Pillow / FreeType / numpy."""
    from importlib.metadata import version

    from PIL import features

    plan = _plan(c)
    h = hashlib.sha1(Path(__file__).read_bytes())
    h.update(json.dumps([version("pillow"), features.version("freetype2"), version("numpy"), plan["summary"]],
                        sort_keys=True, default=str).encode())
    for pools in plan["pools"].values():
        for name, path in pools.fonts:
            st = os.stat(path)
            h.update(f"{name}|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
        h.update("\n".join(pools.words).encode())
    return h.hexdigest()[:16]


def load_text_images(*, n_train: int = 10_000, n_val: int = 1_000, n_test: int = 1_000, tier: str = "mixed",
                     fonts="matplotlib", words="wamerican", seed: int = 0, sizes: dict | None = None,
                     streaming: bool = False, cache_dir=None, num_proc: int | None = None, download_mode=None,
                     download_dir=None, **options):
    """Single words rendered into small images, with seeded unseen-font / unseen-word splits.

    Args:
        n_train, n_val, n_test: rows per split (a split of 0 rows is left out); or ``sizes={"train": ..,
            "validation": .., "test": ..}``.
        tier: ``"clean"``, ``"hard"`` or ``"mixed"`` (each row's tier drawn, ``hard_fraction=0.5`` hard).
        fonts: ``"matplotlib"`` (default), ``"debian"``, ``"all"`` or a list of font file paths.
            The default is matplotlib's bundled fonts (21 text faces: DejaVu Sans/Mono/Serif x 4 styles,
            STIXGeneral x 4, cmr10/cmb10/cmti10/cmss10/cmtt10) because matplotlib is a pixeltok dependency: they are
            there offline, on every OS, with no system tool, so the default never fails on a fresh machine and is
            identical wherever the same matplotlib is installed. ``"debian"`` fetches ``fonts-dejavu-core``,
            ``fonts-liberation`` and ``fonts-freefont-ttf`` with ``apt-get download`` (cached under
            ``download_dir``, default the pixeltok cache) and raises :class:`DataSourceError` if that fails;
            ``"all"`` is both (DejaVu kept once).
        words: ``"wamerican"`` (default: Debian's ``/usr/share/dict/words``, fetched with ``apt-get download`` and
            cached; :class:`DataSourceError` saying how to proceed offline if that fails -- no silent fallback, so a
            dataset never changes with the network), ``"pydoc"`` (offline: ~1k words from the Python docs shipped
            with the interpreter, :func:`pydoc_words`), a word-list file (one per line) or a list of strings (used as
            given; then ``number_fraction``, ``title_fraction`` and ``upper_fraction`` default to 0).
        seed: seed of every random choice (font/word splits, every row).
        streaming: ``IterableDataset`` splits that render on the fly: the same rows as the Arrow build, sharded into
            ``num_shards=48`` index ranges (so ``datasets.distributed.split_dataset_by_node`` gives each rank whole
            shards for 1, 2, 3, 4, 6, 8, 12, 16, 24 or 48 ranks; other counts still work, by skipping).
        cache_dir, num_proc, download_mode: as for :func:`pixeltok.data.load_pokemon`.
        download_dir: where fetched Debian packages are kept (default ``<pixeltok cache>/debian``).
        **options: ``hard_fraction=0.5``, ``train_hard_fraction`` (None: ``hard_fraction``; training rows only, so
            a reader can see more hard rows while its held-out splits stay the same), ``random_fraction=0``
            (training rows only: that share of random 1-8 character strings of letters and digits, which a reader
            cannot guess from spelling; ``random_max_length`` sets the 8, e.g. 3 for the first stage of a curriculum),
            ``number_fraction`` (0.1 for the built-in word lists: numbers 0-99999),
            ``title_fraction`` (0.15), ``upper_fraction`` (0.1), ``test_fonts=0.2`` (share or count held out for
            test, or a list of font names), ``font_split="font"|"family"``, ``val_words=0.1``, ``test_words=0.1``
            (shares or counts of the word pool), ``height`` (None: 11-20 drawn per row; or a fixed int),
            ``width`` (None: fitted to the word; or a fixed int <= ``max_width``), ``max_width=96``, ``num_shards``.

    Returns:
        ``DatasetDict`` with ``train`` / ``validation`` / ``test`` and columns ``image`` (RGB), ``text``, ``tier``,
        ``hard_factors``, ``kind`` (word/number), ``font``, ``font_file``, ``font_size``, ``height``, ``width``, ``fg``,
        ``bg``, ``luma_diff``, ``noise_sigma``, ``blur``, ``offset_x``, ``offset_y`` (ink box top-left), ``index``.
    """
    if sizes is not None:
        if not isinstance(sizes, dict) or set(sizes) - set(SPLITS):
            raise ValueError(f"sizes must be a dict with keys among {SPLITS}, got {sizes!r:.120}")
        n_train, n_val, n_test = (sizes.get(s, 0) for s in SPLITS)
    fields = {f.name for f in dataclasses.fields(TextImagesConfig)} - {"name", "version", "data_dir", "data_files",
                                                                        "description", "source_fingerprint"}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"load_text_images: unknown option(s) {unknown}; expected some of {sorted(fields)}")
    if isinstance(fonts, list):
        fonts = tuple(str(p) for p in fonts)
    if isinstance(words, list):
        words = tuple(words)
    if isinstance(words, os.PathLike):
        words = str(words)
    kw = dict(n_train=n_train, n_val=n_val, n_test=n_test, tier=tier, fonts=fonts, words=words, seed=seed,
              download_dir=None if download_dir is None else str(download_dir), **options)
    cfg = TextImagesConfig(name="default", **kw)
    check_options(cfg)
    return run_builder(TextImages, "default", cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
                       download_mode=download_mode, source_fingerprint=_fingerprint(cfg), **kw)


def render_text_images_card(dataset=None, *, license: str = "other", source: str | None = None, **facts):
    """The dataset card (``hub_cards/dataset_text_images.md``) of a :func:`load_text_images` ``DatasetDict``.

    ``render_dataset_card("text_images", ...)`` with defaults for this dataset: ``license="other"`` (rendered
    images; state your own) and ``source`` composed from the recorded options (the word list with its Debian package
    version, the font set). Other ``facts`` as for :func:`pixeltok.data.render_dataset_card`.
    """
    from . import render_dataset_card
    from ._common import read_options

    if source is None:
        opts = read_options(next(iter(dataset.values())).info) if dataset is not None else {}
        r = opts.get("resolved") or {}
        fonts = opts.get("fonts", "matplotlib")
        fonts_txt = {"matplotlib": "matplotlib's bundled fonts (DejaVu: Bitstream Vera licence; STIX: OFL; BaKoMa "
                                   "Computer Modern)",
                     "debian": f"Debian's {', '.join(DEBIAN_FONT_PACKAGES)}",
                     "all": f"matplotlib's bundled fonts and Debian's {', '.join(DEBIAN_FONT_PACKAGES)}"}.get(fonts, "user font files")
        source = (f"words: {r.get('words_source', opts.get('words', '?'))}; fonts: {fonts_txt} "
                  f"({r.get('fonts_total', '?')} fonts); rendered by pixeltok.data.load_text_images")
    return render_dataset_card("text_images", dataset=dataset, license=license, source=source, **facts)


# -- any image -> the reader's input ---------------------------------------------------------------------------------
