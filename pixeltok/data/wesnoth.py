"""A real sprite + caption corpus built at run time from Debian's ``wesnoth-1.16-data`` (offline stand-in for Pokémon).

Battle for Wesnoth ships ~280 unit types, each with a 72x72 RGBA pixel-art sprite and a paragraph describing the
creature: the same shape as the PixelBytes Pokémon set, at about a quarter of its size. The data is
GPL-2.0-or-later: it is downloaded and converted on the user's machine and must never be committed or pushed
without its licence.

:func:`prepare_wesnoth` writes a raw sprite folder that :func:`pixeltok.data.load_pokemon` reads::

    dest_dir/images/<unit-id>.png      the unit's base sprite (as shipped, team colour magenta kept)
    dest_dir/metadata.jsonl            {"file_name", "caption", "name", "race", "cfg"} per unit, sorted by id
    dest_dir/SOURCE.md                 provenance and licence
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from ._common import DataSourceError, check_resolves_inside, is_safe_relpath, iter_tar, join_inside, logger, pixeltok_cache_dir

PACKAGE = "wesnoth-1.16-data"
CORE = "usr/share/games/wesnoth/1.16/data/core"
_MAX_DATA_TAR = 4 << 30  # decompressed data.tar (the real one is well under 1 GiB)
_MAX_MEMBER = 16 << 20  # one extracted file: unit .cfg files and sprites are a few KiB


# -- .deb handling (pure Python: a .deb is an ar archive holding data.tar.*) --------------------------------------
def _deb_data_member(deb: Path) -> tuple[str, bytes]:
    total = os.path.getsize(deb)
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise DataSourceError(f"{deb}: not a Debian package (no ar header)")
        while True:
            at = f.tell()
            hdr = f.read(60)
            if len(hdr) < 60:
                break
            name = hdr[:16].decode("ascii", "replace").strip().rstrip("/")
            field = hdr[48:58].decode("ascii", "replace").strip()
            # the size is checked against what is left of the file before anything of that size is read
            if not field.isdigit() or at + 60 + int(field) > total or hdr[58:60] != b"`\n":
                raise DataSourceError(f"{deb}: ar member {name!r} at byte {at}: bad header (size field {field!r}, "
                                      f"{total - at - 60} bytes left): truncated or not a Debian package")
            size = int(field)
            if name.startswith("data.tar"):
                return name, f.read(size)
            f.seek(size + (size & 1), 1)
    raise DataSourceError(f"{deb}: no data.tar member")


def extract_deb(deb: Path, dest: Path, prefixes: tuple[str, ...] = (f"{CORE}/units/", f"{CORE}/images/units/")) -> int:
    """Extract the members of ``deb`` under ``prefixes`` into ``dest`` (like ``dpkg -x`` restricted to a subtree).

    Returns the number of files written. Only regular files are written, and only below ``dest``.
    """
    name, payload = _deb_data_member(deb)
    n = 0
    # iter_tar: checked to the end (xz/gzip check, no silently dropped members); refuses absolute / ".." names
    for m, read in iter_tar(payload, f"{deb}: {name}", limit=_MAX_DATA_TAR):
        rel = m.name[2:] if m.name.startswith("./") else m.name
        if not m.isfile() or not rel.startswith(prefixes) or not is_safe_relpath(rel):
            continue
        if m.size > _MAX_MEMBER:  # the size is the tar header's: checked before it is allocated
            raise DataSourceError(f"{deb}: member {m.name} claims {m.size} bytes, more than any unit file ({_MAX_MEMBER})")
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        check_resolves_inside(dest, out, f"{deb}: member {m.name}")  # dest may hold symlinks of its own
        out.write_bytes(read())
        n += 1
    return n


def _find_root(path: Path) -> Path | None:
    """A folder holding ``usr/share/games/wesnoth/1.16/data/core`` (path itself or one level down)."""
    for cand in [path] + ([p for p in sorted(path.iterdir()) if p.is_dir()] if path.is_dir() else []):
        if (cand / CORE / "units").is_dir():
            return cand
    return None


def fetch_wesnoth(deb_dir: str | Path | None = None) -> Path:
    """Return a folder holding the extracted ``usr/share/games/wesnoth/1.16/data/core`` tree.

    ``deb_dir``: an already extracted tree (``dpkg -x``) or a folder with the ``.deb``; default: download with
    ``apt-get download wesnoth-1.16-data`` into ``<pixeltok cache>/wesnoth`` (cached: later calls reuse it).
    """
    if deb_dir is not None:
        d = Path(deb_dir)
        root = _find_root(d)
        if root is not None:
            return root
        debs = sorted(d.glob(f"{PACKAGE}_*.deb")) if d.is_dir() else ([d] if d.suffix == ".deb" else [])
        if not debs:
            raise DataSourceError(f"{d}: neither an extracted {PACKAGE} tree nor a folder with {PACKAGE}_*.deb")
        cache = (d if d.is_dir() else d.parent)
    else:
        cache = pixeltok_cache_dir() / "wesnoth"
        cache.mkdir(parents=True, exist_ok=True)
        debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    extracted = cache / "extracted"
    if (extracted / ".complete").is_file():
        return extracted
    if not debs:
        if shutil.which("apt-get") is None:
            raise DataSourceError(f"apt-get not found: download {PACKAGE} (Debian/Ubuntu package) by hand and pass deb_dir")
        logger.info("downloading %s with apt-get into %s", PACKAGE, cache)
        r = subprocess.run(["apt-get", "download", PACKAGE], cwd=cache, capture_output=True, text=True)
        debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
        if r.returncode != 0 or not debs:
            raise DataSourceError(f"apt-get download {PACKAGE} failed (exit {r.returncode}): {r.stderr.strip()[-500:]}")
    if extracted.exists():
        shutil.rmtree(extracted)  # an interrupted extraction
    n = extract_deb(debs[-1], extracted)
    logger.info("extracted %d files from %s", n, debs[-1].name)
    (extracted / ".complete").write_text(debs[-1].name)
    return extracted


# -- WML (Wesnoth Markup Language) reading: just enough for [unit_type] top-level keys -------------------------------
def _skip_braces(text: str, pos: int) -> int:
    depth = 0
    while pos < len(text):
        ch = text[pos]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    return pos


_MACRO_RE = re.compile(r"\{([A-Z0-9_]+)\}")


def _expand(value: str, macros: dict[str, str], keep_unknown: bool = False, depth: int = 0) -> str:
    """Substitute argument-less macros defined earlier in the file (``{PATH_TEMP}``); unknown ones are dropped
    (or kept verbatim with ``keep_unknown``, for quoted text)."""
    out = _MACRO_RE.sub(lambda m: macros.get(m.group(1), m.group(0) if keep_unknown else ""), value)
    changed = out != value
    return _expand(out, macros, keep_unknown, depth + 1) if changed and depth < 5 and _MACRO_RE.search(out) else out


def _read_value(text: str, pos: int, macros: dict[str, str] | None = None) -> tuple[str, int]:
    """Read a WML value after ``=``: translatable/quoted strings (``""`` escapes, multi-line) joined by ``+``
    (macros between the parts skipped), or an unquoted value to the end of the line (``#`` comment removed,
    argument-less macros from ``macros`` expanded)."""
    macros = macros or {}
    parts, n = [], len(text)
    while True:
        while pos < n and text[pos] in " \t":
            pos += 1
        quoted = pos < n and text[pos] in '_"'
        if quoted and text[pos] == "_":
            pos += 1
            while pos < n and text[pos] in " \t":
                pos += 1
            quoted = pos < n and text[pos] == '"'
        if quoted:
            pos += 1
            buf = []
            while pos < n:
                if text[pos] == '"':
                    if text.startswith('""', pos):
                        buf.append('"')
                        pos += 2
                        continue
                    pos += 1
                    break
                buf.append(text[pos])
                pos += 1
            parts.append(_expand("".join(buf), macros, keep_unknown=True))
        elif parts and pos < n and text[pos] == "{":
            pos = _skip_braces(text, pos)  # a macro between concatenated strings (e.g. {SPECIAL_NOTES})
        else:
            end = text.find("\n", pos)
            end = n if end < 0 else end
            raw = re.sub(r"\s#.*$", "", text[pos:end]).strip()
            parts.append(_expand(raw, macros).strip('"'))
            return "".join(parts), end
        j = pos
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == "+":
            pos = j + 1
            while pos < n and text[pos] in " \t\r\n":
                pos += 1
            continue
        return "".join(parts), pos


_KEY_RE = re.compile(r"([A-Za-z_][\w,]*)[ \t]*=")


def parse_unit_types(text: str) -> list[dict[str, str]]:
    """The direct ``key=value`` pairs of every ``[unit_type]`` block in a WML file (nested tags are skipped)."""
    units, stack, cur, pos, n = [], [], None, 0, len(text)
    macros: dict[str, str] = {}  # argument-less #define's seen so far (files redefine e.g. PATH_TEMP per unit)
    while pos < n:
        ch = text[pos]
        if ch in " \t\r\n":
            pos += 1
        elif ch == "#":
            end = text.find("\n", pos)
            end = n if end < 0 else end
            words = text[pos:end].split()
            if words[0] == "#define" and len(words) == 2:
                stop = text.find("#enddef", end)
                stop = n if stop < 0 else stop
                macros[words[1]] = text[end:stop].strip()
                end = stop + len("#enddef")
            elif words[0] == "#undef" and len(words) == 2:
                macros.pop(words[1], None)
            pos = end
        elif text.startswith("[/", pos):
            end = text.find("]", pos)
            tag = text[pos + 2:end]
            if stack and stack[-1] == tag:
                stack.pop()
                if tag == "unit_type" and cur is not None:
                    units.append(cur)
                    cur = None
            pos = end + 1
        elif ch == "[":
            end = text.find("]", pos)
            tag = text[pos + 1:end].lstrip("+")
            stack.append(tag)
            if tag == "unit_type":
                cur = {}
            pos = end + 1
        elif ch == "{":
            pos = _skip_braces(text, pos)
        else:
            m = _KEY_RE.match(text, pos)
            if not m:
                end = text.find("\n", pos)
                pos = n if end < 0 else end
                continue
            value, pos = _read_value(text, m.end(), macros)
            if stack and stack[-1] == "unit_type" and cur is not None:
                cur.setdefault(m.group(1), value)
    return units


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def prepare_wesnoth(dest_dir: str | Path, deb_dir: str | Path | None = None) -> Path:
    """Build a raw sprite folder (``images/*.png`` + ``metadata.jsonl`` with ``file_name``, ``caption``) from
    ``wesnoth-1.16-data``; see the module docstring. Returns ``dest_dir``.

    Units without a plain sprite file or without a description are left out (counted in the log). The folder
    is rebuilt from scratch on every call (it is small: ~280 sprites).
    """
    root = fetch_wesnoth(deb_dir)
    core = root / CORE
    dest = Path(dest_dir)
    if (dest / "images").exists():
        shutil.rmtree(dest / "images")
    (dest / "images").mkdir(parents=True, exist_ok=True)
    stats = {"unit_types": 0, "no_description": 0, "no_image": 0, "duplicate_id": 0}
    rows, seen = [], set()
    for cfg in sorted((core / "units").rglob("*.cfg")):
        for u in parse_unit_types(cfg.read_text(encoding="utf-8", errors="replace")):
            stats["unit_types"] += 1
            uid, desc = u.get("id", ""), u.get("description", "").strip()
            image = re.sub(r"\{[^}]*\}", "", u.get("image", "").split("~", 1)[0]).strip()  # drop image-path macros
            if not desc:
                stats["no_description"] += 1
                continue
            if not image or not image.endswith(".png"):
                stats["no_image"] += 1
                continue
            # a path read from a .cfg: never a file outside the images folder
            src = join_inside(core / "images", image, f"{cfg} unit {uid!r}", field="image")
            if not src.is_file():
                stats["no_image"] += 1
                continue
            slug = _slug(uid)
            if not slug or slug in seen:
                stats["duplicate_id"] += 1
                continue
            seen.add(slug)
            shutil.copyfile(src, dest / "images" / f"{slug}.png")
            rows.append({"file_name": f"images/{slug}.png", "caption": desc, "name": u.get("name") or uid,
                         "race": u.get("race", ""), "cfg": cfg.relative_to(core).as_posix()})
    if not rows:
        raise DataSourceError(f"{core}: no unit type with both a sprite and a description was found")
    rows.sort(key=lambda r: r["file_name"])
    with open(dest / "metadata.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (dest / "SOURCE.md").write_text(
        f"Built by pixeltok.data.prepare_wesnoth from Debian's {PACKAGE} ({(root / '.complete').read_text().strip() if (root / '.complete').is_file() else root}).\n"
        "Battle for Wesnoth data: GPL-2.0-or-later (https://www.wesnoth.org). Do not redistribute without the licence.\n"
        f"Rows: {len(rows)}; skipped: {json.dumps(stats)}\n", encoding="utf-8")
    logger.warning("prepare_wesnoth: %d sprites with captions in %s (%s)", len(rows), dest, stats)
    return dest
