"""PixelBytes Pokémon sprites + captions (Furfaro 2024) as a ``datasets`` builder, from the Hub layout or raw sprites.

Sources (``config.source``)
---------------------------
- the published layout: a Hub dataset repo id (``ffurfaro/PixelBytes-Pokemon``: one ``train`` split of 964 rows,
  columns ``image`` (small RGB PNG, long side <= 25), ``caption``, ``pixelbyte``), a parquet file, or a folder of
  parquet files (a local copy, or a copy pushed by :func:`pixeltok.data.push_dataset_to_hub`);
- raw material: a folder of sprite images with captions, either in ``metadata.jsonl`` / ``metadata.csv`` (columns
  ``file_name`` and ``caption``, optional ``name``; the ``datasets`` imagefolder convention) or as ``name.png`` +
  ``name.txt`` pairs. A ``file_name`` must stay inside the folder: absolute paths, ``..`` and symlinks resolving
  outside are refused, as are text that is not UTF-8 and PNGs whose checksums fail.

Processing (every step is a config field)
-----------------------------------------
1. image -> ``pixelize(image, long_side, transparency, crop)``: crop to the opaque bounding box, composite alpha on
   white (or keep transparent pixels as the ``transparent`` colour with ``transparency="token"``), nearest-neighbour
   downscale so the long side is ``long_side`` (never upscale), nearest NES-55 colour (vectorized).
2. caption -> :func:`pixeltok.data._common.normalize_caption`: typographic punctuation to ASCII, accents stripped,
   whitespace collapsed to single spaces (``\\t``/``\\n`` are structural ids), lower-cased when ``lowercase``.
3. ``input_ids = PixelBytesTokenizer.encode_sample(indices, caption, order)``: ``<bos>`` image part, caption part
   ``<eos>`` in the unified byte + NES-colour vocabulary.
4. splits: a seeded permutation of the items (sorted by file name / parquet file and row) into ``train`` /
   ``validation`` / ``test`` (``val_size``, ``test_size``, ``seed``). A parquet source that already has
   ``validation``/``test`` files keeps its splits.

Columns
-------
``name`` (string: metadata ``name``, else the file stem / ``{parquet stem}-{row}``), ``image`` (``datasets.Image``:
the pixelized sprite, RGB, or RGBA with ``transparency="token"``), ``caption`` (normalized string), ``input_ids``
(``List(int16)``), and ``pixelbyte`` (``Array3D((None, 3, 3), int16)``, the causal 3x3 windows) when ``windows=True``;
otherwise build them on the fly with :func:`pixeltok.data.with_windows`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import datasets
import numpy as np
from PIL import Image

from ..image_io import ImageInputError
from ._common import (PNG_SIGNATURE, DataSourceError, check_errors_mode, check_image_file, check_png, check_resolves_inside,
                      describe_config, fail_or_skip, is_hub_repo_id, join_inside, list_image_files, logger, normalize_caption,
                      split_assignment)

_SPLIT_FILE_RE = re.compile(r"(?:^|[/_-])(train|validation|valid|val|test)(?:[-_./]|$)")


@dataclass
class PokemonConfig(datasets.BuilderConfig):
    """Every option of the builder (all part of the cache key).

    Args:
        source: Hub repo id, parquet file/folder, or raw sprite folder (see the module docstring).
        source_fingerprint: hash of the source files' sizes/mtimes (set by :func:`load_pokemon`).
        revision: Hub revision when ``source`` is a repo id.
        long_side, transparency, crop: :func:`pixelize` options (``transparency``: ``"white"`` or ``"token"``).
        lowercase: lower-case captions (the published captions are lower-case).
        caption_column: caption field in metadata files / parquet.
        order: ``image_first`` or ``caption_first`` sample layout.
        tokenizer: path/Hub id of a saved ``PixelBytesTokenizer`` (None = the default NES-55 vocabulary).
        windows: also store the ``pixelbyte`` column of 3x3 windows.
        val_size, test_size, seed: the seeded split (fractions or counts).
        errors: ``raise`` (clear error naming the file) or ``skip`` (log and skip the bad item).
    """

    source: object = None
    source_fingerprint: str = ""
    revision: str | None = None
    long_side: int = 25
    transparency: str = "white"
    crop: bool = True
    lowercase: bool = True
    caption_column: str = "caption"
    order: str = "image_first"
    tokenizer: str | None = None
    windows: bool = False
    val_size: float = 0.1
    test_size: float = 0.1
    seed: int = 0
    errors: str = "raise"


def sprite_features(windows: bool) -> datasets.Features:
    """The columns of every sprite + caption builder (this one and :mod:`pixeltok.data.synthetic`)."""
    f = {"name": datasets.Value("string"), "image": datasets.Image(), "caption": datasets.Value("string"),
         "input_ids": datasets.List(datasets.Value("int16"))}
    if windows:
        f["pixelbyte"] = datasets.Array3D(shape=(None, 3, 3), dtype="int16")
    return datasets.Features(f)


class Pokemon(datasets.GeneratorBasedBuilder):
    """Sprites + captions -> ``name``, ``image``, ``caption``, ``input_ids`` (+ ``pixelbyte``) with seeded splits."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = PokemonConfig
    BUILDER_CONFIGS = [PokemonConfig(name="default", version=VERSION,
                                     description="PixelBytes sprites (NES-55, long side 25) + captions, unified ids.")]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=describe_config(self.config), features=sprite_features(self.config.windows),
                                    homepage="https://huggingface.co/datasets/ffurfaro/PixelBytes-Pokemon")

    # -- splits -------------------------------------------------------------------------------------
    def _split_generators(self, dl_manager):
        c = self.config
        check_errors_mode(c.errors)
        if c.transparency not in ("white", "token"):
            raise ValueError(f"transparency must be 'white' or 'token', got {c.transparency!r}")
        if c.order not in ("image_first", "caption_first"):
            raise ValueError(f"order must be 'image_first' or 'caption_first', got {c.order!r}")
        if c.source is None:
            raise ValueError("load_pokemon needs a source: a Hub repo id, a parquet file or folder, or a sprite folder")
        items = _collect_items(c)  # [(name, kind, ref, caption, fixed_split or None)]
        if not items:
            raise DataSourceError(f"{c.source}: no usable sprite + caption pairs")
        fixed = [it[4] for it in items]
        if any(s in ("validation", "test") for s in fixed):
            names = fixed  # a parquet copy that already carries its splits
        else:
            codes = split_assignment(len(items), c.val_size, c.test_size, c.seed)
            names = [("train", "validation", "test")[k] for k in codes]
        gens = []
        for split in ("train", "validation", "test"):
            chosen = [it[:4] for it, s in zip(items, names) if s == split]
            if chosen:
                gens.append(datasets.SplitGenerator(name=split, gen_kwargs={"items": chosen}))
        return gens

    # -- examples -----------------------------------------------------------------------------------
    def _generate_examples(self, items) -> Iterator[tuple[str, dict]]:
        from ..tokenization.palettes import get_palette
        from ..tokenization.pixelbytes import pixelize

        c = self.config
        tok = _make_tokenizer(c)
        palette = get_palette("nes55")
        tables: dict[str, object] = {}  # parquet file -> image column, read once per job
        for name, kind, ref, caption in items:
            try:
                if kind == "file":
                    src, where = ref, ref
                    check_image_file(ref)  # PNG checksums, which Pillow partly skips
                else:
                    file, row = ref
                    where = f"{file} row {row}"
                    if file not in tables:
                        tables = {file: _read_parquet_images(file)}  # keep one file in memory at a time
                    src = _decode_bytes(tables[file][row], where)
                idx = pixelize(src, long_side=c.long_side, transparency=c.transparency, crop=c.crop)
            except (ImageInputError, DataSourceError, Image.DecompressionBombError) as e:
                msg = str(e)
                fail_or_skip(c.errors, msg if where in msg else f"{where}: {msg}")
                continue
            rgba = palette.indices_to_rgba(idx)
            image = Image.fromarray(rgba if c.transparency == "token" else np.ascontiguousarray(rgba[..., :3]))
            ids = tok.encode_sample(idx, caption, order=c.order)  # list of Python ints (fast Arrow conversion)
            ex = {"name": name, "image": image, "caption": caption, "input_ids": ids}
            if c.windows:
                ex["pixelbyte"] = tok.build_windows(ids).astype(np.int16)
            yield name, ex


def _make_tokenizer(c: PokemonConfig):
    from ..tokenization.pixelbytes import PixelBytesTokenizer

    if c.tokenizer:
        return PixelBytesTokenizer.from_pretrained(c.tokenizer)
    return PixelBytesTokenizer(long_side=c.long_side, transparency=c.transparency, crop=c.crop)


# -- sources ----------------------------------------------------------------------------------------------
def _collect_items(c: PokemonConfig) -> list[tuple]:
    src = str(c.source)
    p = Path(src)
    if p.is_file() and p.suffix == ".parquet":
        return _parquet_items([p], c)
    if p.is_dir():
        parquets = sorted(p.rglob("*.parquet"), key=lambda f: f.relative_to(p).as_posix())
        if parquets:
            return _parquet_items(parquets, c, root=p)
        return _folder_items(p, c)
    if p.exists():
        raise DataSourceError(f"{p}: expected a parquet file, a folder of parquet files or a folder of sprites + captions")
    if is_hub_repo_id(src):
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id=src, repo_type="dataset", revision=c.revision,
                                  allow_patterns=["*.parquet", "**/*.parquet"])
        parquets = sorted(Path(local).rglob("*.parquet"), key=lambda f: f.relative_to(local).as_posix())
        if not parquets:
            raise DataSourceError(f"Hub dataset {src}: holds no parquet files")
        return _parquet_items(parquets, c, root=Path(local))
    raise DataSourceError(f"{src}: no such file or folder (and not a Hub repo id 'org/name')")


def _clean_caption(raw, where: str, c: PokemonConfig) -> str | None:
    """Normalized caption, or None (after raising / logging) when it is missing or empty."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        fail_or_skip(c.errors, f"{where}: missing caption ({c.caption_column!r} is empty)")
        return None
    if not isinstance(raw, str):
        fail_or_skip(c.errors, f"{where}: caption must be text, got {type(raw).__name__} {raw!r:.40}")
        return None
    cap = normalize_caption(raw, lowercase=c.lowercase)
    if not cap:
        fail_or_skip(c.errors, f"{where}: missing caption ({c.caption_column!r} is empty)")
        return None
    return cap


def _parquet_items(files: list[Path], c: PokemonConfig, root: Path | None = None) -> list[tuple]:
    import pyarrow.parquet as pq

    items = []
    for f in files:
        rel = f.relative_to(root).as_posix() if root else f.name
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataSourceError(f"{f}: not a readable parquet file ({e})") from None
        cols = pf.schema_arrow.names
        for need in ("image", c.caption_column):
            if need not in cols:
                raise DataSourceError(f"{f}: no {need!r} column (columns: {cols}); expected the PixelBytes-Pokemon layout "
                                      f"with 'image' and '{c.caption_column}'")
        try:
            table = pf.read(columns=[c.caption_column] + (["name"] if "name" in cols else []))
        except Exception as e:  # corrupt pages: pyarrow raises ArrowInvalid, OSError, ...
            raise DataSourceError(f"{f}: not a readable parquet file ({e})") from None
        captions = table.column(c.caption_column).to_pylist()
        names = table.column("name").to_pylist() if "name" in cols else [None] * len(captions)
        m = _SPLIT_FILE_RE.search(rel)
        split = None if m is None else {"valid": "validation", "val": "validation"}.get(m.group(1), m.group(1))
        for row, (raw, nm) in enumerate(zip(captions, names)):
            cap = _clean_caption(raw, f"{f} row {row}", c)
            if cap is not None:
                items.append((str(nm) if nm is not None else f"{f.stem}-{row}", "parquet", (str(f), row), cap, split))
    return items


def _read_parquet_images(file: str) -> list:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(file, columns=["image"]).column("image").to_pylist()
    except Exception as e:  # corrupt pages: pyarrow raises ArrowInvalid, OSError, ...
        raise DataSourceError(f"{file}: not a readable parquet file ({e})") from None


def _decode_bytes(value, where: str) -> Image.Image:
    data = value.get("bytes") if isinstance(value, dict) else value
    if not data:
        raise ImageInputError(f"{where}: image has no bytes")
    if not isinstance(data, bytes):
        raise ImageInputError(f"{where}: image bytes must be binary, got {type(data).__name__}")
    if data.startswith(PNG_SIGNATURE):
        check_png(data, where)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.copy()
    except Exception as e:  # noqa: BLE001 - format plugins raise many types on corrupt bytes (struct.error, EOFError...)
        raise ImageInputError(f"{where}: not a readable image ({type(e).__name__}: {e})") from None


def _decode_utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:  # never "replace": a caption must not change silently
        line = data.count(b"\n", 0, e.start) + 1
        raise DataSourceError(f"{where} line {line}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _read_metadata(path: Path) -> list[tuple[int, dict]]:
    rows = []
    text = _decode_utf8(path.read_bytes(), str(path))
    if path.suffix == ".jsonl":
        for ln, line in enumerate(text.split("\n"), 1):  # split on \n only: JSON strings may hold other line breaks
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataSourceError(f"{path} line {ln}: not valid JSON ({e.msg} at column {e.colno})") from None
            except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits, deep nesting
                raise DataSourceError(f"{path} line {ln}: unreadable JSON ({type(e).__name__}: {str(e)[:80]})") from None
            if not isinstance(obj, dict):
                raise DataSourceError(f"{path} line {ln}: expected a JSON object, got {type(obj).__name__}")
            rows.append((ln, obj))
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            for obj in reader:
                rows.append((reader.line_num, obj))
        except csv.Error as e:
            raise DataSourceError(f"{path} line {reader.line_num}: not valid CSV ({e})") from None
    return rows


def _folder_items(folder: Path, c: PokemonConfig) -> list[tuple]:
    meta = [folder / n for n in ("metadata.jsonl", "metadata.csv") if (folder / n).is_file()]
    if len(meta) == 2:
        raise DataSourceError(f"{folder}: holds both metadata.jsonl and metadata.csv; keep one")
    items = []
    if meta:
        path = meta[0]
        seen = set()
        for ln, row in _read_metadata(path):
            where = f"{path} line {ln}"
            fn = row.get("file_name")
            if fn is None:
                raise DataSourceError(f"{where}: no 'file_name' field")
            img = join_inside(folder, fn, where)  # never a file outside the folder: refuse "..", absolute, symlinks out
            nm = row.get("name")
            if nm is not None and (not isinstance(nm, (str, int)) or isinstance(nm, bool)):
                raise DataSourceError(f"{where}: 'name' must be a string (or an integer), got {type(nm).__name__} {nm!r:.40}")
            if not img.is_file():
                fail_or_skip(c.errors, f"{where}: image {img} does not exist")
                continue
            rel = img.relative_to(folder).as_posix()
            if rel in seen:
                raise DataSourceError(f"{where}: {fn} is listed twice")
            seen.add(rel)
            cap = _clean_caption(row.get(c.caption_column), f"{where} ({fn})", c)
            if cap is not None:
                items.append((str(nm) if nm not in (None, "") else Path(fn).with_suffix("").as_posix(), "file", str(img), cap, None))
        unlisted = len([f for f in list_image_files(folder, check_links=False) if f.relative_to(folder).as_posix() not in seen])
        if unlisted:
            logger.warning("%s: %d image(s) not listed in %s are ignored", folder, unlisted, path.name)
        items.sort(key=lambda it: it[2])
    else:
        images = list_image_files(folder)  # refuses images that are symlinks to outside the folder
        if not images:
            raise DataSourceError(f"{folder}: folder holds no images (and no metadata.jsonl / metadata.csv / parquet)")
        for img in images:
            txt = img.with_suffix(".txt")
            rel = img.relative_to(folder).with_suffix("").as_posix()
            if not txt.is_file():
                fail_or_skip(c.errors, f"{img}: missing caption ({txt.name} not found)")
                continue
            check_resolves_inside(folder, txt)
            try:
                raw = _decode_utf8(txt.read_bytes(), str(txt))
            except DataSourceError as e:
                fail_or_skip(c.errors, str(e))
                continue
            cap = _clean_caption(raw if raw.strip() else None, str(txt), c)
            if cap is not None:
                items.append((rel, "file", str(img), cap, None))
    if not items:
        raise DataSourceError(f"{meta[0] if meta else folder}: " + ("lists " if meta else "") + "no usable sprite + caption pairs")
    names = [it[0] for it in items]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataSourceError(f"{folder}: two items are named {dup!r}; names must be unique")
    return items
