"""CIFAR-10 (official binary archive) and any images cut into 32x32 tiles, as a ``datasets`` builder.

Configs
-------
``cifar10``
    The official ``cifar-10-binary.tar.gz`` (local path or URL), an extracted ``cifar-10-batches-bin`` folder, or
    ``.bin`` batch files. Each record is 1 label byte followed by 3072 bytes: the 32x32 red plane, then green, then
    blue, each in raster order (https://www.cs.toronto.edu/~kriz/cifar.html). Splits: ``train`` (data_batch_1..5
    minus the validation carve-out), ``validation`` (``val_size``, a fraction drawn per batch file with a seeded
    permutation), ``test`` (test_batch). The python (pickle) archive is refused: unpickling downloaded data can run
    arbitrary code. Archives are read through to the end so the gzip CRC is checked, and a damaged or truncated
    archive, a member named with an absolute path or ``..``, or a batch over 10000 records raises
    :class:`~pixeltok.data.DataSourceError` (file and member named) instead of loading wrong or missing rows.
``tiles``
    Any folder / list of images (any mode; alpha composited over ``background``), optionally box-downscaled by
    ``downscale``, cut into ``size`` tiles with ``pixeltok.tiling.cut_tiles`` (``stride``, ``border``). Splits are
    drawn per source image by default (``split_by="source"``) so overlapping tiles of one photo never straddle
    train and test.
``cifar_style``
    ``tiles`` with the preset ``downscale=4, size=32, border="drop"``: photos box-downscaled 4x first, giving
    CIFAR-like object scale and noise level.

Columns
-------
- ``image``: ``datasets.Image`` -- the tile, RGB, ``size x size`` (edge tiles smaller only with ``border="keep"``).
- ``input_ids``: ``List(Value("uint8"), length=3 * size * size)`` (variable length with ``border="keep"``): the
  codec's sub-pixel sequence = the tile's R, G, B bytes in raster order interleaved per pixel
  ``(r0, g0, b0, r1, g1, b1, ...)``, values 0..255, i.e. ``np.asarray(image).reshape(-1)``.
- ``cifar10``: ``label`` (``ClassLabel`` of the 10 CIFAR-10 classes), ``source`` (batch file name), ``record``
  (index of the record in its file).
- ``tiles`` / ``cifar_style``: ``source`` (file path relative to the folder), ``y``, ``x`` (top-left corner of the
  tile in the downscaled image, pixels).
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import datasets
import numpy as np
from PIL import Image

from ..image_io import ImageInputError, to_rgba
from ..tiling import cut_tiles
from ._common import (DataSourceError, box_downscale, check_errors_mode, check_image_file, check_resolves_inside, composite_on,
                      describe_config, fail_or_skip, is_url, iter_tar, list_image_files, logger, split_assignment)

CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
RECORD_BYTES = 1 + 3 * 32 * 32
MAX_BATCH_RECORDS = 10000  # every official batch holds exactly 10000 records: a larger size is corrupt, never allocated
_MAX_META_BYTES = 1 << 16
_MAX_ARCHIVE_BYTES = 1 << 30  # decompressed; the official archive is ~185 MB
CIFAR10_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_TRAIN_RE = re.compile(r"(?:^|/)data_batch_([1-5])\.bin$")
_TEST_RE = re.compile(r"(?:^|/)test_batch\.bin$")
_PICKLE_HINT = (f"pixeltok reads only the binary version: download {CIFAR10_BINARY_URL} (records of 1 label byte + "
                "3072 pixel bytes) and pass that archive or its extracted cifar-10-batches-bin folder")


@dataclass
class CifarTilesConfig(datasets.BuilderConfig):
    """Every option of the builder (all part of the cache key).

    Args:
        source: ``cifar10``: archive path/URL, extracted folder or ``.bin`` file; tiles: folder, image file or list
            of image files.
        source_fingerprint: hash of the source files' sizes/mtimes (set by :func:`load_cifar_tiles`).
        size: tile side in pixels.
        stride: step between tiles (default ``size``: no overlap).
        border: ``drop`` (full tiles only), ``pad`` (edge replication) or ``keep`` (smaller edge tiles).
        downscale: integer box-downscale factor applied to each image before tiling (1 = none).
        background: RGB that transparent pixels are composited over.
        max_tiles_per_image: keep at most this many tiles per image (seeded sample, in raster order); None = all.
        val_size, test_size: fractions (or counts, tiles only) for the seeded validation/test splits.
        split_by: ``source`` (whole images go to one split) or ``tile``.
        seed: seed of every random choice (splits, tile sampling).
        errors: ``raise`` (clear error naming the file) or ``skip`` (log and skip the bad file/record).
    """

    source: object = None
    source_fingerprint: str = ""
    size: int = 32
    stride: int | None = None
    border: str = "drop"
    downscale: int = 1
    background: tuple = (255, 255, 255)
    max_tiles_per_image: int | None = None
    val_size: float = 0.1
    test_size: float = 0.1
    split_by: str = "source"
    seed: int = 0
    errors: str = "raise"


class CifarTiles(datasets.GeneratorBasedBuilder):
    """CIFAR-10 binary records or image tiles -> ``image`` + ``input_ids`` (+ ``label`` / position columns)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = CifarTilesConfig
    BUILDER_CONFIGS = [
        CifarTilesConfig(name="cifar10", version=VERSION, description="CIFAR-10 from the official binary archive."),
        CifarTilesConfig(name="tiles", version=VERSION, description="Any images cut into 32x32 RGB tiles."),
        CifarTilesConfig(name="cifar_style", version=VERSION, downscale=4, border="drop",
                         description="Images box-downscaled 4x, then cut into 32x32 RGB tiles (CIFAR-like)."),
    ]
    DEFAULT_CONFIG_NAME = "tiles"

    # -- schema -------------------------------------------------------------------------------------
    def _info(self) -> datasets.DatasetInfo:
        c = self.config
        n_ids = 3 * 32 * 32 if c.name == "cifar10" else (3 * c.size * c.size if c.border != "keep" else -1)
        features = {"image": datasets.Image(), "input_ids": datasets.List(datasets.Value("uint8"), length=n_ids)}
        if c.name == "cifar10":
            features.update(label=datasets.ClassLabel(names=list(CIFAR10_LABELS)), source=datasets.Value("string"),
                            record=datasets.Value("int32"))
        else:
            features.update(source=datasets.Value("string"), y=datasets.Value("int32"), x=datasets.Value("int32"))
        return datasets.DatasetInfo(description=describe_config(c), features=datasets.Features(features),
                                    homepage="https://www.cs.toronto.edu/~kriz/cifar.html" if c.name == "cifar10" else "")

    def _check_config(self) -> None:
        c = self.config
        check_errors_mode(c.errors)
        if c.source is None:
            raise ValueError(f"config {c.name!r} needs a source (archive, folder, image file or list of image files)")
        if c.border not in ("drop", "pad", "keep"):
            raise ValueError(f"border must be 'drop', 'pad' or 'keep', got {c.border!r}")
        if int(c.size) < 1 or int(c.downscale) < 1 or (c.stride is not None and int(c.stride) < 1):
            raise ValueError(f"size, stride and downscale must be positive, got size={c.size}, stride={c.stride}, downscale={c.downscale}")
        if c.split_by not in ("source", "tile"):
            raise ValueError(f"split_by must be 'source' or 'tile', got {c.split_by!r}")
        if c.name == "cifar10" and not (isinstance(c.val_size, float) or c.val_size == 0):
            raise ValueError(f"cifar10: val_size is a fraction of each training batch, got {c.val_size!r}")

    # -- splits -------------------------------------------------------------------------------------
    def _split_generators(self, dl_manager):
        self._check_config()
        if self.config.name == "cifar10":
            return self._cifar_split_generators(dl_manager)
        return self._tile_split_generators()

    def _tile_split_generators(self):
        c = self.config
        files = _resolve_image_sources(c.source)
        if c.split_by == "source":
            codes = split_assignment(len(files), c.val_size, c.test_size, c.seed)
        else:
            codes = np.full(len(files), -1, dtype=np.int8)  # every file feeds every split; tiles are assigned inside
        gens = []
        for code, split in enumerate((datasets.Split.TRAIN, datasets.Split.VALIDATION, datasets.Split.TEST)):
            chosen = [f for f, k in zip(files, codes) if k in (code, -1)]
            if c.split_by == "source" and not chosen:
                continue  # a split with no source image is left out rather than written empty
            gens.append(datasets.SplitGenerator(name=split, gen_kwargs={"files": chosen, "split_code": code}))
        return gens

    def _cifar_split_generators(self, dl_manager):
        c = self.config
        src = str(c.source)
        if is_url(src):
            src = dl_manager.download(src)
        batches, meta = _list_cifar_batches(src, c.errors)  # [(kind, container, member, name, n_records)]
        if meta is not None:
            _check_meta(meta)
        train = [b for b in batches if _TRAIN_RE.search(b[3])]
        test = [b for b in batches if _TEST_RE.search(b[3])]
        gens = []
        if train:
            gens.append(datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"files": train, "split_code": 0}))
        if train and c.val_size:
            gens.append(datasets.SplitGenerator(name=datasets.Split.VALIDATION, gen_kwargs={"files": train, "split_code": 1}))
        if test:
            gens.append(datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs={"files": test, "split_code": 2}))
        return gens

    # -- examples -----------------------------------------------------------------------------------
    def _generate_examples(self, files, split_code) -> Iterator[tuple[str, dict]]:
        if self.config.name == "cifar10":
            yield from self._cifar_examples(files, split_code)
        else:
            yield from self._tile_examples(files, split_code)

    def _cifar_examples(self, files, split_code):
        c = self.config
        for kind, container, member, name, _, digest in files:
            data = _read_batch(kind, container, member, digest)
            recs = _records(data, name, c.errors)  # (N, 3073) uint8
            labels = recs[:, 0]
            ok = labels < len(CIFAR10_LABELS)
            if not ok.all():
                bad = int(np.flatnonzero(~ok)[0])
                msg = (f"{name}: record {bad} has label byte {int(labels[bad])} (CIFAR-10 labels are 0..9); this is not "
                       f"a CIFAR-10 binary batch (CIFAR-100's binary records have 2 label bytes)")
                fail_or_skip(c.errors, msg + f" [{int((~ok).sum())} such records]")
            batch_no = _TRAIN_RE.search(name)
            keep = ok.copy()
            if batch_no and split_code in (0, 1):
                # validation carve-out: a seeded permutation per batch file (exact sizes, independent per file)
                codes = split_assignment(len(recs), c.val_size, 0, [c.seed, int(batch_no.group(1))]) if c.val_size else np.zeros(len(recs), np.int8)
                keep &= codes == split_code
            # planes (3, 32, 32) -> (32, 32, 3): per-pixel interleaved RGB, the codec's sub-pixel order
            images = recs[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            base = os.path.basename(name)
            # input_ids go in as Python ints: datasets turns a numpy row into 3072 numpy scalars (~5x slower)
            for i in np.flatnonzero(keep):
                img = np.ascontiguousarray(images[i])
                yield f"{base}:{i}", {"image": Image.fromarray(img), "input_ids": img.reshape(-1).tolist(), "label": int(labels[i]),
                                      "source": base, "record": int(i)}

    def _tile_examples(self, files, split_code):
        c = self.config
        stride = int(c.stride or c.size)
        for file_no, path, rel in files:
            try:
                check_image_file(path)  # PNG checksums, which Pillow partly skips
                rgb = composite_on(to_rgba(path), tuple(c.background))
            except (ImageInputError, DataSourceError, Image.DecompressionBombError) as e:
                fail_or_skip(c.errors, str(e))
                continue
            if c.downscale > 1:
                if min(rgb.shape[:2]) < c.downscale:
                    fail_or_skip(c.errors, f"{path}: {rgb.shape[1]}x{rgb.shape[0]} is smaller than downscale={c.downscale}")
                    continue
                rgb = box_downscale(rgb, int(c.downscale))
            tiles, pos = cut_tiles(rgb, size=int(c.size), stride=stride, border=c.border)
            if not tiles:
                logger.info("%s: %dx%d gives no full %d-pixel tile (border=%r)", rel, rgb.shape[1], rgb.shape[0], c.size, c.border)
                continue
            idx = np.arange(len(tiles))
            if c.max_tiles_per_image is not None and len(idx) > c.max_tiles_per_image:
                idx = np.sort(np.random.default_rng([c.seed, file_no, 1]).choice(len(idx), int(c.max_tiles_per_image), replace=False))
            if c.split_by == "tile":
                codes = split_assignment(len(idx), c.val_size, c.test_size, [c.seed, file_no])
                idx = idx[codes == split_code]
            for k in idx:
                t = np.ascontiguousarray(tiles[k])
                y, x = pos[k]
                yield f"{rel}@{y},{x}", {"image": Image.fromarray(t), "input_ids": t.reshape(-1).tolist(), "source": rel, "y": y, "x": x}


# -- sources ----------------------------------------------------------------------------------------------
def _resolve_image_sources(source) -> list[tuple[int, str, str]]:
    """Folder / image file / list of image files -> ``[(file_no, path, name)]`` in a stable order."""
    if isinstance(source, (list, tuple)):
        paths = [str(p) for p in source]
        if not paths:
            raise DataSourceError("the list of image files is empty")
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise DataSourceError(f"{missing[0]}: no such image file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        names = [os.path.basename(p) for p in paths]
        if len(set(names)) != len(names):
            names = paths
        return [(i, p, n) for i, (p, n) in enumerate(zip(paths, names))]
    p = Path(str(source))
    if p.is_dir():
        files = list_image_files(p)
        if not files:
            raise DataSourceError(f"{p}: folder holds no image files")
        return [(i, str(f), f.relative_to(p).as_posix()) for i, f in enumerate(files)]
    if p.is_file():
        return [(0, str(p), p.name)]
    raise DataSourceError(f"{p}: no such file or folder")


def _is_tar(path: str) -> bool:
    return path.endswith((".tar", ".tar.gz", ".tgz")) or (os.path.isfile(path) and tarfile.is_tarfile(path))


def _is_batch(name: str) -> bool:
    return bool(_TRAIN_RE.search(name) or _TEST_RE.search(name))


def _check_size(size: int, name: str, limit: int, what: str) -> None:
    """Sizes come from the tar header / file system: checked before anything that big is allocated."""
    if size > limit:
        raise DataSourceError(f"{name}: {size} bytes is more than {what} ({limit} bytes): corrupt or not a CIFAR-10 file")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _scan_tar(src: str) -> tuple[list[tuple[str, str, str, int, str | None]], str | None]:
    """One checked pass over the whole archive (:func:`iter_tar`: CRC, end-of-archive marker, member names), keeping a
    digest of each batch so the later reads (one per split and worker) are known to get the bytes checked here."""
    entries, meta = [], None
    for m, read in iter_tar(src, limit=_MAX_ARCHIVE_BYTES):
        if not m.isfile():
            continue
        digest = None
        where = f"{src}: member {m.name}"
        if _is_batch(m.name):
            _check_size(m.size, where, MAX_BATCH_RECORDS * RECORD_BYTES, f"a CIFAR-10 batch of {MAX_BATCH_RECORDS} records")
            digest = _digest(read())
        elif m.name.endswith("batches.meta.txt"):
            _check_size(m.size, where, _MAX_META_BYTES, "a label list")
            meta = read().decode("utf-8", "replace")
        entries.append(("tar", src, m.name, m.size, digest))
    return entries, meta


def _list_cifar_batches(src: str, errors: str):
    """-> ``([(kind, container, member, name, n_records, digest)], meta_text | None)`` for the CIFAR-10 binary batches."""
    entries: list[tuple[str, str, str, int, str | None]] = []  # (kind, container, member, size, digest)
    meta_text = None
    if os.path.isdir(src):
        for f in sorted(Path(src).rglob("*")):
            if f.is_file():
                check_resolves_inside(Path(src), f)
                entries.append(("file", str(f), "", f.stat().st_size, None))
    elif os.path.isfile(src) and _is_tar(src):
        entries, meta_text = _scan_tar(src)
    elif os.path.isfile(src):
        if src.endswith(".bin"):
            entries = [("file", src, "", os.path.getsize(src), None)]
        else:
            with open(src, "rb") as f:
                head = f.read(2)
            if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2..5 header
                raise DataSourceError(f"{src}: is a Python pickle (the python version of CIFAR-10); {_PICKLE_HINT}")
            raise DataSourceError(f"{src}: expected cifar-10-binary.tar.gz, a cifar-10-batches-bin folder or a *.bin batch file")
    else:
        raise DataSourceError(f"{src}: no such file or folder")

    names = [(e[2] or e[1]).replace(os.sep, "/") for e in entries]
    where = src
    if any("cifar-10-batches-py" in n or re.search(r"(?:^|/)data_batch_[1-5]$", n) for n in names):
        raise DataSourceError(f"{where}: is the python (pickle) version of CIFAR-10, which pixeltok never unpickles "
                              f"(unpickling downloaded data can execute arbitrary code); {_PICKLE_HINT}")
    if any("cifar-10-batches-mat" in n or n.endswith(".mat") for n in names):
        raise DataSourceError(f"{where}: is the MATLAB version of CIFAR-10; {_PICKLE_HINT}")
    if any(re.search(r"(?:^|/)(train|test)\.bin$", n) for n in names) and not any(_TRAIN_RE.search(n) for n in names):
        raise DataSourceError(f"{where}: looks like CIFAR-100 binary (train.bin/test.bin, 2 label bytes per record); "
                              "this builder reads CIFAR-10 (data_batch_1..5.bin, test_batch.bin)")
    batches, meta = [], None
    for (kind, container, member, size, digest), name in zip(entries, names):
        inside = f" (in {where})" if kind == "tar" else ""
        if _is_batch(name):
            _check_size(size, name + inside, MAX_BATCH_RECORDS * RECORD_BYTES, f"a CIFAR-10 batch of {MAX_BATCH_RECORDS} records")
            n, rest = divmod(size, RECORD_BYTES)
            if rest:
                fail_or_skip(errors, f"{name}: {size} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-10 records "
                                     f"({n} records + {rest} bytes): truncated or not a CIFAR-10 binary batch" + inside)
            elif not n:
                fail_or_skip(errors, f"{name}: is empty (0 bytes): truncated or not a CIFAR-10 binary batch" + inside)
            batches.append((kind, container, member, name, n, digest))
        elif name.endswith("batches.meta.txt") and kind == "file":
            _check_size(size, name, _MAX_META_BYTES, "a label list")
            with open(container, "rb") as f:
                meta = f.read(_MAX_META_BYTES).decode("utf-8", "replace")
    meta = meta_text if meta is None else meta
    if not any(_TRAIN_RE.search(b[3]) for b in batches) and not any(_TEST_RE.search(b[3]) for b in batches):
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise DataSourceError(f"{where}: no CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin) found; "
                              f"it holds: {shown or 'nothing'}")
    counts = {}
    for b in batches:
        key = os.path.basename(b[3])
        if key in counts:
            raise DataSourceError(f"{where}: batch {key} appears twice ({counts[key]} and {b[3]})")
        counts[key] = b[3]
    return batches, meta


def _check_meta(text: str) -> None:
    names = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if names and tuple(names) != CIFAR10_LABELS:
        raise DataSourceError(f"batches.meta.txt lists labels {names[:12]}, not the CIFAR-10 classes {list(CIFAR10_LABELS)}")


def _read_batch(kind: str, container: str, member: str, digest: str | None = None) -> bytes:
    limit = MAX_BATCH_RECORDS * RECORD_BYTES
    if kind == "file":
        with open(container, "rb") as f:
            data = f.read(limit + 1)  # bounded even if the file grew since it was listed
        _check_size(len(data), container, limit, f"a CIFAR-10 batch of {MAX_BATCH_RECORDS} records")
        return data
    # the whole archive was checked by _scan_tar: stop at the member, and check it is the member that was checked
    for m, read in iter_tar(container, limit=_MAX_ARCHIVE_BYTES):
        if m.name == member and m.isfile():
            _check_size(m.size, f"{container}: member {member}", limit, f"a CIFAR-10 batch of {MAX_BATCH_RECORDS} records")
            data = read()
            if digest is not None and _digest(data) != digest:
                raise DataSourceError(f"{container}: member {member} changed since the archive was checked; build again")
            return data
    raise DataSourceError(f"{container}: member {member} not found")


def _records(data: bytes, name: str, errors: str) -> np.ndarray:
    n, rest = divmod(len(data), RECORD_BYTES)
    if rest:
        fail_or_skip(errors, f"{name}: {len(data)} bytes is not a whole number of {RECORD_BYTES}-byte records "
                             f"(truncated record {n}: {rest} bytes)")
    return np.frombuffer(data, dtype=np.uint8, count=n * RECORD_BYTES).reshape(n, RECORD_BYTES)
