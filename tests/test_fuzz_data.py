"""Bounded, seeded fuzz tests of the data builders (pixeltok.data.load_cifar_tiles / load_pokemon).

Each test mutates one small generated input (seeded numpy RNG: flip / overwrite / truncate / insert bytes) and loads
it through the public loader (``streaming=True``: no Arrow files, ~20 ms a load). The property:

- a CIFAR-10 ``.tar.gz`` or a sprite PNG (formats with checksums) loads to exactly the original rows, or raises
  :class:`DataSourceError` naming the mutated file -- never another exception, never silently different data;
- a ``metadata.jsonl`` (plain text: no checksum can tell an edited caption from a corrupt one) loads to exactly the
  rows its mutated text describes (an independent reference parse here: captions normalized, every ``file_name``
  one of the folder's sprites), or raises :class:`DataSourceError` naming ``metadata.jsonl``.

About 300 mutated inputs in all (``FUZZ_COUNTS``), a few seconds on one core.
"""

import gzip
import io
import json
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pixeltok.data import DataSourceError, load_cifar_tiles, load_pokemon
from pixeltok.data._common import normalize_caption
from pixeltok.data.cifar_tiles import CIFAR10_LABELS
from pixeltok.tokenization.pixelbytes import PixelBytesTokenizer, pixelize

N_GZ, N_TAR, N_PNG, N_META = 120, 60, 60, 60
FUZZ_COUNTS: dict[str, dict[str, int]] = {}  # target -> {"loaded": n, "refused": n}, checked per test
BATCHES = [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]


def mutate(data: bytes, rng: np.random.Generator, *, regions=None, kinds=("flip", "set", "truncate", "insert"),
           max_flips: int = 3) -> tuple[bytes, str]:
    """One seeded mutation of ``data`` -> (mutated bytes, description). ``regions``: ``[(start, stop)]`` that flips,
    overwrites and insertions are confined to (default: anywhere, biased to the first 64 and last 32 bytes, where
    the headers and trailers are)."""
    kind = str(rng.choice(kinds))
    n = len(data)

    def pos(end: int = n) -> int:  # end = n + 1 for insertions: after the last byte too
        if regions is not None:
            a, b = regions[int(rng.integers(len(regions)))]
            return int(rng.integers(a, min(b, end)))
        u = rng.random()
        if u < 0.3:
            return int(rng.integers(0, min(64, n)))
        if u < 0.45:
            return int(rng.integers(max(0, n - 32), end))
        return int(rng.integers(0, end))

    b = bytearray(data)
    if kind == "truncate":
        cut = int(rng.integers(0, n))
        return bytes(b[:cut]), f"truncate to {cut} of {n} bytes"
    if kind == "insert":
        at, k = pos(n + 1), int(rng.integers(1, 9))
        lo, hi = (0, 256) if rng.random() < 0.5 else (32, 127)  # any bytes, or printable ones
        extra = bytes(rng.integers(lo, hi, k, dtype=np.uint8))
        return bytes(b[:at] + extra + b[at:]), f"insert {extra!r} at {at}"
    ats = [pos() for _ in range(int(rng.integers(1, max_flips + 1)))]
    for at in ats:
        if kind == "flip":
            b[at] ^= int(rng.integers(1, 256))
        else:  # overwrite with a printable character: stays valid UTF-8 / JSON more often
            b[at] = int(rng.integers(32, 127))
    return bytes(b), f"{kind} at {ats}"


def run_fuzz(target: str, n: int, seed: int, make_input, load, expected, culprit) -> None:
    """Try ``n`` mutated inputs: ``make_input(rng) -> description`` writes one, ``load()`` reads it back,
    ``expected()`` is what a successful load must equal; a refusal must be a DataSourceError naming ``culprit``
    (the mutated file's name, or a callable returning it)."""
    rng = np.random.default_rng(seed)
    counts = {"loaded": 0, "refused": 0}
    for i in range(n):
        what = make_input(rng)
        try:
            got = load()
        except DataSourceError as e:
            name = culprit() if callable(culprit) else culprit
            assert name in str(e), f"{target} #{i} ({what}): error does not name {name}: {e}"
            counts["refused"] += 1
            continue
        except Exception as e:  # any other type is a bug: a raw traceback from deep inside
            raise AssertionError(f"{target} #{i} ({what}): {type(e).__name__}: {e}") from e
        assert got == expected(), f"{target} #{i} ({what}): loaded silently different data"
        counts["loaded"] += 1
    FUZZ_COUNTS[target] = counts
    assert sum(counts.values()) == n
    print(f"fuzz {target}: {n} mutated inputs, {counts}")


# -- CIFAR-10 binary archive --------------------------------------------------------------------------------------
def tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    """gzip with a file name in its header, as ``tar czf`` / ``tarfile`` write it (FNAME: bytes that change nothing)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="cifar-10-binary.tar", mode="wb", fileobj=buf, mtime=1_700_000_000) as f:
        f.write(data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cifar_tar():
    """The official layout (cifar-10-batches-bin/ with the six batches, batches.meta.txt, readme.html), 2 records a
    batch. Returns (tar bytes, header block ranges, expected rows)."""
    rng = np.random.default_rng(0)
    members = {}
    for name in BATCHES:
        recs = rng.integers(0, 256, (2, 3073), dtype=np.uint8)
        recs[:, 0] = rng.integers(0, 10, 2)
        members[f"cifar-10-batches-bin/{name}"] = recs.tobytes()
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(CIFAR10_LABELS) + "\n\n").encode()
    members["cifar-10-batches-bin/readme.html"] = b"<html>CIFAR-10</html>"
    raw = tar_bytes(members)
    headers, off = [], 0
    for data in members.values():  # USTAR: one 512-byte header block per member, data padded to 512
        headers.append((off, off + 512))
        off += 512 + -(-len(data) // 512) * 512
    headers.append((off, off + 1024))  # the end-of-archive marker
    expected = {"train": [], "test": []}
    for name in BATCHES:
        recs = np.frombuffer(members[f"cifar-10-batches-bin/{name}"], np.uint8).reshape(-1, 3073)
        split = "test" if name == "test_batch.bin" else "train"
        for i, r in enumerate(recs):
            ids = r[1:].reshape(3, 1024).T.reshape(-1)  # planes -> interleaved r0, g0, b0, r1, ...
            expected[split].append((name, i, int(r[0]), ids.tobytes()))
    return raw, headers, expected


def cifar_rows(path) -> dict:
    dd = load_cifar_tiles(path, "cifar10", val_size=0.0, streaming=True)
    return {split: [(r["source"], r["record"], r["label"], bytes(r["input_ids"])) for r in ds.remove_columns("image")]
            for split, ds in dd.items()}


def test_fuzz_cifar_targz_bytes(cifar_tar, tmp_path):
    """Mutations of the .tar.gz file itself: gzip header (name, mtime, flags), deflate data, CRC/length trailer."""
    raw, _, expected = cifar_tar
    good = gz(raw)
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(good)
    assert cifar_rows(path) == expected

    def make(rng):
        data, what = mutate(good, rng)
        path.write_bytes(data)
        return what

    run_fuzz("cifar .tar.gz bytes", N_GZ, 1, make, lambda: cifar_rows(path), lambda: expected, "cifar-10-binary.tar.gz")
    c = FUZZ_COUNTS["cifar .tar.gz bytes"]
    assert c["refused"] > N_GZ // 2 and c["loaded"] >= 1  # gzip header mtime / OS bytes change nothing


def test_fuzz_cifar_tar_headers_inside_valid_gzip(cifar_tar, tmp_path):
    """Mutations of the tar headers / end-of-archive marker (and truncations), recompressed so the gzip CRC is
    valid: only the tar-level checks stand between a damaged header and a silently dropped member."""
    raw, headers, expected = cifar_tar
    path = tmp_path / "cifar-10-binary.tar.gz"

    def make(rng):
        # single-byte changes: a tar header checksum (a plain byte sum) catches every one, but two could cancel out
        data, what = mutate(raw, rng, regions=headers, kinds=("flip", "set", "truncate", "insert"), max_flips=1)
        path.write_bytes(gz(data))
        return what

    run_fuzz("cifar tar headers (valid gzip)", N_TAR, 2, make, lambda: cifar_rows(path), lambda: expected,
             "cifar-10-binary.tar.gz")
    assert FUZZ_COUNTS["cifar tar headers (valid gzip)"]["refused"] > N_TAR // 2


# -- sprite folder ------------------------------------------------------------------------------------------------
CAPTIONS = ["A small fire lizard.", "Sleeps all day", "A bird with sharp eyes"]


@pytest.fixture()
def sprite_folder(tmp_path):
    d = tmp_path / "sprites"
    (d / "img").mkdir(parents=True)
    lines = []
    for i, cap in enumerate(CAPTIONS):
        im = Image.new("RGBA", (20, 16), (0, 0, 0, 0))
        ImageDraw.Draw(im).ellipse((2 + i, 2, 15, 13), fill=(200, 40 * i, 30, 255))
        im.putpixel((18, 14), (250, 10, 10, 60))
        im.save(d / "img" / f"mon{i}.png")
        lines.append(json.dumps({"file_name": f"img/mon{i}.png", "caption": cap}))
    (d / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return d


def sprite_rows(folder) -> list:
    ds = load_pokemon(folder, val_size=0, test_size=0, streaming=True)["train"]
    return sorted((r["name"], r["caption"], tuple(r["input_ids"])) for r in ds.remove_columns("image"))


def test_fuzz_sprite_pngs(sprite_folder):
    """Mutations of one sprite PNG a time (signature, IHDR, IDAT pixel data, CRCs, IEND): exact or refused."""
    expected = sprite_rows(sprite_folder)
    originals = {f"mon{i}.png": (sprite_folder / "img" / f"mon{i}.png").read_bytes() for i in range(len(CAPTIONS))}
    current = {}

    def make(rng):
        for name, data in originals.items():  # undo the previous trial
            (sprite_folder / "img" / name).write_bytes(data)
        name = sorted(originals)[int(rng.integers(len(originals)))]
        data, what = mutate(originals[name], rng)
        (sprite_folder / "img" / name).write_bytes(data)
        current["name"] = name
        return f"{name}: {what}"

    run_fuzz("sprite png", N_PNG, 3, make, lambda: sprite_rows(sprite_folder), lambda: expected, lambda: current["name"])
    assert FUZZ_COUNTS["sprite png"]["refused"] > N_PNG // 2


def reference_rows(text: bytes, folder: Path, tok: PixelBytesTokenizer, grids: dict) -> list:
    """What a sprite folder with this metadata.jsonl must load to, parsed independently of the builder."""
    rows = []
    for line in text.decode("utf-8").split("\n"):
        if not line.strip():
            continue
        obj = json.loads(line)
        fn = str(PurePosixPath(obj["file_name"]))
        assert fn in grids, f"loaded an image the folder does not hold as a sprite: {obj['file_name']!r}"
        cap = normalize_caption(obj["caption"])
        name = obj.get("name") or PurePosixPath(fn).with_suffix("").as_posix()
        rows.append((str(name), cap, tuple(tok.encode_sample(grids[fn], cap))))
    return sorted(rows)


def test_fuzz_sprite_metadata_jsonl(sprite_folder):
    meta = sprite_folder / "metadata.jsonl"
    original = meta.read_bytes()
    tok = PixelBytesTokenizer()
    grids = {f"img/mon{i}.png": pixelize(sprite_folder / "img" / f"mon{i}.png") for i in range(len(CAPTIONS))}
    assert sprite_rows(sprite_folder) == reference_rows(original, sprite_folder, tok, grids)
    current = {}
    # the whole file, plus each caption and file_name value: edits there must load exactly as the file now says
    values = [json.dumps(v).encode()[1:-1] for i, cap in enumerate(CAPTIONS) for v in (cap, f"img/mon{i}.png")]
    regions = [(0, len(original))] + [(original.index(v), original.index(v) + len(v)) for v in values]

    def make(rng):
        data, what = mutate(original, rng, regions=regions)
        meta.write_bytes(data)
        current["text"] = data
        return what

    run_fuzz("sprite metadata.jsonl", N_META, 4, make, lambda: sprite_rows(sprite_folder),
             lambda: reference_rows(current["text"], sprite_folder, tok, grids), "metadata.jsonl")
    assert FUZZ_COUNTS["sprite metadata.jsonl"]["refused"] > N_META // 3
