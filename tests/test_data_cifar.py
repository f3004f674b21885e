"""CIFAR-10 binary archive + image tiles builder (pixeltok.data.load_cifar_tiles), on fixtures built here."""

import functools
import gzip
import http.server
import io
import logging
import os
import pickle
import re
import tarfile
import threading

import numpy as np
import pytest
import skimage.data
from PIL import Image

import pixeltok
from pixeltok.data import DataSourceError, load_cifar_tiles, render_dataset_card
from pixeltok.data._common import box_downscale, split_assignment
from pixeltok.data.cifar_tiles import CIFAR10_LABELS

N_PER_BATCH = 6
BATCHES = [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]


def make_records(n, seed):
    """``(n, 3073)`` uint8 official records: label byte then R, G, B planes."""
    rng = np.random.default_rng(seed)
    recs = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
    recs[:, 0] = rng.integers(0, 10, n)
    return recs


def write_tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    d = tmp_path_factory.mktemp("cifar")
    recs = {name: make_records(N_PER_BATCH, k) for k, name in enumerate(BATCHES)}
    members = {f"cifar-10-batches-bin/{n}": r.tobytes() for n, r in recs.items()}
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(CIFAR10_LABELS) + "\n\n").encode()
    archive = write_tar(d / "cifar-10-binary.tar.gz", members)
    folder = d / "extracted"
    with tarfile.open(archive) as tf:
        tf.extractall(folder, filter="data")
    return {"archive": archive, "folder": folder / "cifar-10-batches-bin", "records": recs, "dir": d}


def rows_of(ds):
    return [(r["source"], r["record"]) for r in ds.select_columns(["source", "record"])]


def test_archive_records_pixels_and_subpixel_order(cifar, tmp_path):
    dd = load_cifar_tiles(cifar["archive"], cache_dir=tmp_path, val_size=1 / 3)
    assert dd["train"].info.config_name == "cifar10"
    assert set(dd) == {"train", "validation", "test"}
    assert (dd["train"].num_rows, dd["validation"].num_rows, dd["test"].num_rows) == (20, 10, 6)
    f = dd["train"].features
    assert set(f) == {"image", "input_ids", "label", "source", "record"}
    assert f["label"].names == list(CIFAR10_LABELS) and f["input_ids"].length == 3072
    assert str(f["input_ids"].feature.dtype) == "uint8"
    for split in ("train", "validation", "test"):
        for r in dd[split].select(range(3)):
            rec = cifar["records"][r["source"]][r["record"]]
            planes = rec[1:].reshape(3, 1024)
            ids = np.asarray(r["input_ids"])
            # sub-pixel order r0, g0, b0, r1, ... written out per pixel, no reshape tricks
            expected = [int(planes[ch][k]) for k in range(1024) for ch in range(3)]
            assert ids.tolist() == expected
            img = r["image"]
            assert img.mode == "RGB" and img.size == (32, 32)
            assert np.array_equal(np.asarray(img).reshape(-1), ids)
            assert r["label"] == int(rec[0])
    assert {r["source"] for r in dd["test"]} == {"test_batch.bin"}


def test_splits_are_seeded_disjoint_and_complete(cifar, tmp_path):
    a = load_cifar_tiles(cifar["archive"], cache_dir=tmp_path / "a", val_size=0.5, seed=3)
    b = load_cifar_tiles(cifar["folder"], cache_dir=tmp_path / "b", val_size=0.5, seed=3)  # extracted folder
    c = load_cifar_tiles(cifar["archive"], cache_dir=tmp_path / "c", val_size=0.5, seed=4)
    assert rows_of(a["validation"]) == rows_of(b["validation"])
    assert rows_of(a["validation"]) != rows_of(c["validation"])
    tr, va = set(rows_of(a["train"])), set(rows_of(a["validation"]))
    assert not tr & va
    assert tr | va == {(n, i) for n in BATCHES[:5] for i in range(N_PER_BATCH)}
    assert len(va) == 5 * 3  # exact per-batch size


def test_single_bin_file_and_url(cifar, tmp_path, monkeypatch):
    one = load_cifar_tiles(cifar["folder"] / "test_batch.bin", cache_dir=tmp_path)
    assert set(one) == {"test"} and one["test"].num_rows == N_PER_BATCH

    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # a plain local HTTP server, not the Hub
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(cifar["dir"]))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/cifar-10-binary.tar.gz"
        dd = load_cifar_tiles(url, cache_dir=tmp_path / "url", val_size=0.0)
    finally:
        srv.shutdown()
    assert set(dd) == {"train", "test"} and dd["train"].num_rows == 30


def test_python_pickle_archive_is_refused_without_unpickling(tmp_path):
    boom = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(boom), "w"))

    payload = pickle.dumps({b"data": Evil()}, protocol=2)
    arch = write_tar(tmp_path / "cifar-10-python.tar.gz", {"cifar-10-batches-py/data_batch_1": payload})
    with pytest.raises(DataSourceError, match=r"cifar-10-python\.tar\.gz.*pickle.*cifar-10-binary\.tar\.gz"):
        load_cifar_tiles(arch, cache_dir=tmp_path)
    raw = tmp_path / "data_batch_1"
    raw.write_bytes(payload)
    with pytest.raises(DataSourceError, match="pickle"):
        load_cifar_tiles(raw, config="cifar10", cache_dir=tmp_path)
    assert not boom.exists()


def test_truncated_record_raises_naming_file_or_skips_with_log(tmp_path, caplog):
    good = make_records(4, 0).tobytes()
    arch = write_tar(tmp_path / "cut.tar.gz", {"b/data_batch_1.bin": good, "b/data_batch_2.bin": good + b"\x01" * 100,
                                                 "b/test_batch.bin": good})
    with pytest.raises(DataSourceError, match=r"data_batch_2\.bin.*not a whole number"):
        load_cifar_tiles(arch, cache_dir=tmp_path / "c1", val_size=0.0)
    with caplog.at_level(logging.WARNING, logger="pixeltok.data"):
        dd = load_cifar_tiles(arch, cache_dir=tmp_path / "c2", val_size=0.0, errors="skip")
    assert dd["train"].num_rows == 8  # the 4 complete records of each batch, nothing shifted
    assert any("data_batch_2.bin" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)


def test_wrong_layouts(tmp_path):
    arch = write_tar(tmp_path / "other.tar.gz", {"x/readme.txt": b"hello", "x/data.bin": b"\0" * 3073})
    with pytest.raises(DataSourceError, match=r"other\.tar\.gz.*no CIFAR-10 binary batches.*readme\.txt"):
        load_cifar_tiles(arch, cache_dir=tmp_path)
    recs = make_records(3, 1)
    recs[2, 0] = 17
    arch2 = write_tar(tmp_path / "labels.tar.gz", {"b/test_batch.bin": recs.tobytes()})
    with pytest.raises(DataSourceError, match=r"test_batch\.bin: record 2 has label byte 17"):
        load_cifar_tiles(arch2, cache_dir=tmp_path)
    arch3 = write_tar(tmp_path / "c100.tar.gz", {"cifar-100-binary/train.bin": b"\0" * 3074})
    with pytest.raises(DataSourceError, match="CIFAR-100"):
        load_cifar_tiles(arch3, cache_dir=tmp_path)
    with pytest.raises(DataSourceError, match="not a readable tar"):
        (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b garbage")
        load_cifar_tiles(tmp_path / "broken.tar.gz", cache_dir=tmp_path)


# -- tiles ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage.data.astronaut()[:200, :170]).save(d / "astronaut.png")  # 170x200
    Image.fromarray(skimage.data.coffee()[:100, :130]).save(d / "coffee.png")  # 130x100
    rgba = np.dstack([skimage.data.chelsea()[:64, :96], np.full((64, 96), 255, np.uint8)])
    rgba[:10, :, 3] = 0  # transparent band -> composited on white
    sub = d / "more"
    sub.mkdir()
    Image.fromarray(rgba, "RGBA").save(sub / "chelsea_rgba.png")
    Image.fromarray(skimage.data.camera()[:70, :70]).save(sub / "camera_grey.png")  # mode L
    return d


def test_tiles_from_folder_content_positions_and_counts(photos, tmp_path):
    dd = load_cifar_tiles(photos, cache_dir=tmp_path, val_size=0, test_size=0)
    assert dd["train"].info.config_name == "tiles"
    ds = dd["train"]
    assert set(ds.features) == {"image", "input_ids", "source", "y", "x"}
    expected = {"astronaut.png": (200 // 32) * (170 // 32), "coffee.png": 3 * 4, "more/chelsea_rgba.png": 2 * 3,
                "more/camera_grey.png": 2 * 2}
    assert {s: ds["source"].count(s) for s in expected} == expected and ds.num_rows == sum(expected.values())
    full = {s: np.asarray(Image.open(photos / s).convert("RGBA")) for s in expected}
    for r in ds.select(range(0, ds.num_rows, 7)):
        src = full[r["source"]]
        want = src[r["y"]:r["y"] + 32, r["x"]:r["x"] + 32]
        a = want[..., 3:4].astype(np.uint32)
        want = ((want[..., :3].astype(np.uint32) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
        assert np.array_equal(np.asarray(r["image"]), want)
        assert np.array_equal(np.asarray(r["input_ids"]), want.reshape(-1))
    white = ds.filter(lambda r: r["source"] == "more/chelsea_rgba.png" and r["y"] == 0)[0]
    assert (np.asarray(white["image"])[:10] == 255).all()


def test_tiles_options_border_downscale_preset_and_sampling(photos, tmp_path):
    src = [str(photos / "coffee.png")]  # 130 x 100
    pad = load_cifar_tiles(src, cache_dir=tmp_path, border="pad", val_size=0, test_size=0)["train"]
    assert pad.num_rows == 4 * 5 and all(im.size == (32, 32) for im in pad["image"])
    keep = load_cifar_tiles(src, cache_dir=tmp_path, border="keep", val_size=0, test_size=0)["train"]
    assert keep.features["input_ids"].length == -1
    last = keep.filter(lambda r: r["y"] == 96 and r["x"] == 128)[0]
    assert last["image"].size == (2, 4) and len(last["input_ids"]) == 2 * 4 * 3
    stride = load_cifar_tiles(src, cache_dir=tmp_path, stride=16, val_size=0, test_size=0)["train"]
    assert stride.num_rows == ((100 - 32) // 16 + 1) * ((130 - 32) // 16 + 1)
    small = load_cifar_tiles(src, cache_dir=tmp_path, size=8, downscale=3, val_size=0, test_size=0)["train"]
    down = box_downscale(np.asarray(Image.open(src[0]).convert("RGB")), 3)  # 43 x 33
    assert down.shape == (33, 43, 3)
    r = small.filter(lambda r: r["y"] == 8 and r["x"] == 16)[0]
    assert np.array_equal(np.asarray(r["image"]), down[8:16, 16:24])
    ref = np.asarray(Image.open(src[0]).convert("RGB"))[24:27, 48:51].reshape(-1, 3).astype(float).mean(0)
    assert np.array_equal(down[8, 16], np.floor(ref + 0.5).astype(np.uint8))
    style = load_cifar_tiles([str(photos / "astronaut.png")], "cifar_style", cache_dir=tmp_path, val_size=0, test_size=0)["train"]
    assert style.num_rows == (200 // 4 // 32) * (170 // 4 // 32) == 1
    capped = load_cifar_tiles(photos, cache_dir=tmp_path, max_tiles_per_image=2, val_size=0, test_size=0)["train"]
    assert capped.num_rows == 4 * 2


def test_tile_splits_by_source_and_by_tile(photos, tmp_path):
    files = [str(p) for p in sorted(photos.rglob("*.png"))]
    dd = load_cifar_tiles(files, cache_dir=tmp_path, val_size=1, test_size=1, seed=0)
    srcs = {k: set(v["source"]) for k, v in dd.items()}
    assert set(dd) == {"train", "validation", "test"}
    assert not (srcs["train"] & srcs["validation"]) and not (srcs["train"] & srcs["test"]) and not (srcs["validation"] & srcs["test"])
    codes = split_assignment(4, 1, 1, 0)
    names = [os.path.basename(f) for f in files]
    assert srcs["test"] == {names[i] for i in np.flatnonzero(codes == 2)}
    bt = load_cifar_tiles(files, cache_dir=tmp_path, split_by="tile", val_size=0.25, test_size=0.25, seed=1)
    keys = {k: {(r["source"], r["y"], r["x"]) for r in v.select_columns(["source", "y", "x"])} for k, v in bt.items()}
    assert sum(len(v) for v in keys.values()) == 30 + 12 + 6 + 4
    assert not keys["train"] & keys["test"] and len(set(bt["test"]["source"])) > 1
    again = load_cifar_tiles(files, cache_dir=tmp_path / "again", split_by="tile", val_size=0.25, test_size=0.25, seed=1)
    assert again["test"]["source"] == bt["test"]["source"] and again["test"]["y"] == bt["test"]["y"]


def test_bad_images_raise_naming_file_or_skip(photos, tmp_path, caplog):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(skimage.data.coffee()[:64, :64]).save(d / "ok.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataSourceError, match=r"broken\.png"):
        load_cifar_tiles(d, cache_dir=tmp_path / "c", val_size=0, test_size=0)
    with caplog.at_level(logging.WARNING, logger="pixeltok.data"):
        dd = load_cifar_tiles(d, cache_dir=tmp_path / "c", val_size=0, test_size=0, errors="skip")
    assert dd["train"].num_rows == 4 and set(dd["train"]["source"]) == {"ok.png"}
    assert any("broken.png" in r.getMessage() for r in caplog.records)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError, match=r"empty.*no image files"):
        load_cifar_tiles(empty, cache_dir=tmp_path)
    with pytest.raises(DataSourceError, match=r"missing\.png: no such image file"):
        load_cifar_tiles([str(d / "ok.png"), str(d / "missing.png")], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="border"):
        load_cifar_tiles(d, cache_dir=tmp_path, border="wrap")


def test_num_proc_streaming_and_cache_invalidated_by_version(photos, tmp_path, monkeypatch):
    one = load_cifar_tiles(photos, cache_dir=tmp_path / "p1", val_size=0, test_size=0)["train"]
    two = load_cifar_tiles(photos, cache_dir=tmp_path / "p2", val_size=0, test_size=0, num_proc=2)["train"]
    assert sorted(zip(one["source"], one["y"], one["x"])) == sorted(zip(two["source"], two["y"], two["x"]))
    assert one.cache_files and two.cache_files
    stream = load_cifar_tiles(photos, cache_dir=tmp_path / "s", val_size=0, test_size=0, streaming=True)["train"]
    first = next(iter(stream))
    assert (first["source"], first["y"], first["x"]) == (one[0]["source"], one[0]["y"], one[0]["x"])
    assert list(first["input_ids"]) == list(one[0]["input_ids"])

    again = load_cifar_tiles(photos, cache_dir=tmp_path / "p1", val_size=0, test_size=0)["train"]
    assert again.cache_files == one.cache_files  # same version + same source: reused
    monkeypatch.setattr(pixeltok, "__version__", "0.1.0.post99")
    newer = load_cifar_tiles(photos, cache_dir=tmp_path / "p1", val_size=0, test_size=0)["train"]
    assert newer.cache_files[0]["filename"] != one.cache_files[0]["filename"]
    assert "0.1.0.post99" in newer.cache_files[0]["filename"]


def test_dataset_card_states_processing(photos, tmp_path):
    dd = load_cifar_tiles([str(photos / "astronaut.png")], "cifar_style", cache_dir=tmp_path, val_size=0, test_size=0)
    card = render_dataset_card("cifar_tiles", dataset=dd, license="cc-by-4.0", source="scikit-image astronaut",
                               repo_id="me/tiles")
    assert card.data.license == "cc-by-4.0" and card.data.size_categories == ["n<1K"]
    assert "image-classification" in card.data.task_categories
    text = str(card)
    assert 'load_dataset("me/tiles", "cifar_style")' in text and "downscale=4" in text and "r0, g0, b0" in text
    with pytest.raises(ValueError, match="license"):
        render_dataset_card("cifar_tiles", dataset=dd, source="x")


# -- damaged archives and unsafe paths (each used to load silently) --------------------------------------------------
def tar_blob(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_flipped_bytes_in_targz_raise_naming_the_file(cifar, tmp_path):
    good = cifar["archive"].read_bytes()
    # one flipped byte used to give a corrupted row, two could drop test_batch.bin: the gzip CRC was never checked
    for k, positions in enumerate(([len(good) // 2], [len(good) // 3, len(good) // 2 + 7], [len(good) - 6])):
        bad = bytearray(good)
        for p in positions:
            bad[p] ^= 0x10
        path = tmp_path / f"bad{k}.tar.gz"
        path.write_bytes(bytes(bad))
        with pytest.raises(DataSourceError, match=rf"bad{k}\.tar\.gz: corrupt"):
            load_cifar_tiles(path, cache_dir=tmp_path / f"c{k}", val_size=0.0)
    (tmp_path / "cut.tar.gz").write_bytes(good[:-100])
    with pytest.raises(DataSourceError, match=r"cut\.tar\.gz: corrupt or truncated archive while reading member '.*test_batch\.bin'"):
        load_cifar_tiles(tmp_path / "cut.tar.gz", cache_dir=tmp_path / "cut", val_size=0.0)


def test_damaged_tar_header_or_missing_end_never_drops_members(tmp_path):
    recs = make_records(2, 0).tobytes()
    names = ["b/data_batch_1.bin", "b/data_batch_2.bin", "b/test_batch.bin"]
    raw = tar_blob(dict.fromkeys(names, recs))
    third = 2 * (512 + -(-len(recs) // 512) * 512)  # offset of test_batch.bin's header block
    bad = bytearray(raw)
    bad[third + 3] ^= 0x01  # header checksum fails: tarfile takes it for the end of the archive
    # inside a valid gzip (the CRC cannot help) and as a plain .tar
    (tmp_path / "hdr.tar.gz").write_bytes(gzip.compress(bytes(bad)))
    (tmp_path / "hdr.tar").write_bytes(bytes(bad))
    for f in ("hdr.tar.gz", "hdr.tar"):
        with pytest.raises(DataSourceError, match=rf"{f}: corrupt or truncated archive: after member 'b/data_batch_2\.bin' "
                                                  "comes data that is not a valid member header"):
            load_cifar_tiles(tmp_path / f, cache_dir=tmp_path / ("c-" + f), val_size=0.0)
    (tmp_path / "cut.tar").write_bytes(raw[:third])  # cut exactly at a member boundary
    with pytest.raises(DataSourceError, match=r"cut\.tar: .*after member 'b/data_batch_2\.bin' comes no end-of-archive marker"):
        load_cifar_tiles(tmp_path / "cut.tar", cache_dir=tmp_path / "cut", val_size=0.0)
    (tmp_path / "ok.tar").write_bytes(raw)
    dd = load_cifar_tiles(tmp_path / "ok.tar", cache_dir=tmp_path / "ok", val_size=0.0)
    assert (dd["train"].num_rows, dd["test"].num_rows) == (4, 2)


def test_unsafe_member_names_and_oversized_members_are_refused(tmp_path):
    recs = make_records(2, 1).tobytes()
    for k, name in enumerate(("../cifar-10-batches-bin/data_batch_1.bin", "/tmp/cifar-10-batches-bin/test_batch.bin",
                              "b/../../test_batch.bin")):
        arch = write_tar(tmp_path / f"evil{k}.tar.gz", {"b/data_batch_2.bin": recs, name: recs})
        with pytest.raises(DataSourceError, match=rf"evil{k}\.tar\.gz: member '{re.escape(name)}' has an absolute path or a '\.\.'"):
            load_cifar_tiles(arch, cache_dir=tmp_path / f"c{k}", val_size=0.0)
    # a header claiming more than 10000 records is refused before anything that big is read or allocated
    ti = tarfile.TarInfo("b/test_batch.bin")
    ti.size = 10001 * 3073
    (tmp_path / "huge.tar").write_bytes(ti.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 4096)
    with pytest.raises(DataSourceError, match=r"huge\.tar: member b/test_batch\.bin: 30733073 bytes is more than a CIFAR-10 batch"):
        load_cifar_tiles(tmp_path / "huge.tar", cache_dir=tmp_path / "h", val_size=0.0)


def test_folder_symlink_leaving_the_folder_is_refused(cifar, tmp_path):
    d = tmp_path / "batches"
    d.mkdir()
    (d / "data_batch_1.bin").write_bytes(make_records(2, 2).tobytes())
    (d / "test_batch.bin").symlink_to(cifar["folder"] / "test_batch.bin")  # outside d
    with pytest.raises(DataSourceError, match=r"test_batch\.bin: resolves to .*outside the data folder"):
        load_cifar_tiles(d, cache_dir=tmp_path / "c", val_size=0.0)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32)).save(photos / "a.png")
    (photos / "b.png").symlink_to(tmp_path / "outside.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "outside.png")
    with pytest.raises(DataSourceError, match=r"b\.png: resolves to .*outside the data folder"):
        load_cifar_tiles(photos, cache_dir=tmp_path / "t", val_size=0, test_size=0)
