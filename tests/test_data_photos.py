"""Whole photos and crops (pixeltok.data.photos.load_photos), the codec recipe's data path, on fixtures built here."""

import os

import numpy as np
import pytest
import skimage.data
from PIL import Image

from pixeltok.data import DataSourceError
from pixeltok.data._common import box_downscale
from pixeltok.data.photos import load_photos, photo_path, read_photo
from pixeltok.tiling import cut_tiles


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A plasma-style wallpaper folder (two sizes of one wallpaper) and a backgrounds folder, of generated photos."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    imgs = {"big": rng.integers(0, 256, (70, 90, 3), dtype=np.uint8),
            "small": rng.integers(0, 256, (9, 9, 3), dtype=np.uint8),
            "back": rng.integers(0, 256, (41, 67, 3), dtype=np.uint8)}
    walls = d / "wallpapers" / "Dunes" / "contents" / "images"
    walls.mkdir(parents=True)
    Image.fromarray(imgs["big"]).save(walls / "1920x1080.png")
    Image.fromarray(imgs["small"]).save(walls / "640x480.png")
    (d / "backgrounds" / "mate").mkdir(parents=True)
    Image.fromarray(imgs["back"]).save(d / "backgrounds" / "mate" / "Sea.png")
    (d / "secret.png").write_bytes((d / "backgrounds" / "mate" / "Sea.png").read_bytes())
    return {"walls": str(d / "wallpapers"), "backs": str(d / "backgrounds"), "imgs": imgs, "dir": d}


def test_references_resolve_to_the_photo(folders):
    assert np.array_equal(read_photo("wallpaper:Dunes", folders["walls"]), folders["imgs"]["big"])  # the largest file
    assert np.array_equal(read_photo("background:mate/Sea.png", None, folders["backs"]), folders["imgs"]["back"])
    assert np.array_equal(read_photo("skimage:chelsea"), skimage.data.chelsea())
    assert read_photo("skimage:camera").shape == (512, 512, 3)  # a grey photo comes back as RGB
    path = os.path.join(folders["backs"], "mate", "Sea.png")
    assert np.array_equal(read_photo(path), folders["imgs"]["back"])  # a plain path


def test_whole_photos_at_each_scale(folders, tmp_path):
    ds = load_photos(["wallpaper:Dunes"], ["background:mate/Sea.png"], wallpaper_dir=folders["walls"],
                     backgrounds_dir=folders["backs"], scales=[1, 2, 3], cache_dir=tmp_path)
    assert sorted(ds) == ["test", "train"] and ds["train"].num_rows == 3 and ds["test"].num_rows == 3
    for row in ds["train"]:
        assert row["photo"] == "wallpaper:Dunes" and row["y"] == row["x"] == 0
        want = box_downscale(folders["imgs"]["big"], row["scale"])
        assert np.array_equal(np.asarray(row["image"]), want)  # PNG in Arrow: lossless


def test_crops_are_the_seeded_sample_of_full_tiles(folders, tmp_path):
    kw = dict(wallpaper_dir=folders["walls"], backgrounds_dir=folders["backs"], scales=[1, 2], crop_size=16,
              max_crops_per_photo=5, seed=3, cache_dir=tmp_path)
    ds = load_photos(["wallpaper:Dunes", "background:mate/Sea.png"], ["skimage:coffee"], config="crops", **kw)
    # the sample drawn by one generator per split (seed for train, seed + 1 for test), photos in sorted order
    rng, want = np.random.default_rng(3), []
    for key in ("back", "big"):  # "background:..." sorts before "wallpaper:..."
        for s in (1, 2):
            tiles, _ = cut_tiles(box_downscale(folders["imgs"][key], s), size=16, border="drop")
            want += [tiles[k] for k in rng.permutation(len(tiles))[:5]]
    got = np.stack(list(ds["train"].with_format("numpy")["image"]))
    assert got.shape == (len(want), 16, 16, 3) and np.array_equal(got, np.stack(want))
    for row in ds["train"].select(range(3)):
        y, x, s = row["y"], row["x"], row["scale"]
        src = box_downscale(folders["imgs"]["back" if row["photo"].startswith("background") else "big"], s)
        assert np.array_equal(np.asarray(row["image"]), src[y:y + 16, x:x + 16])
    assert set(ds["test"]["photo"]) == {"skimage:coffee"} and ds["test"].num_rows == 10
    again = load_photos(["wallpaper:Dunes", "background:mate/Sea.png"], ["skimage:coffee"], config="crops", **kw)
    assert again["train"].cache_files == ds["train"].cache_files  # built once, then read from the cache
    other = load_photos(["wallpaper:Dunes", "background:mate/Sea.png"], ["skimage:coffee"], config="crops",
                        **{**kw, "seed": 4})
    assert not np.array_equal(np.stack(list(other["train"].with_format("numpy")["image"])), got)


@pytest.mark.parametrize("call, message", [
    (lambda f: load_photos(["wallpaper:Nope"], wallpaper_dir=f["walls"]), "wallpaper 'Nope' not found"),
    (lambda f: load_photos(["wallpaper:Dunes"]), "needs wallpaper_dir"),
    (lambda f: load_photos(["background:../secret.png"], backgrounds_dir=f["backs"]), "leaves backgrounds_dir"),
    (lambda f: load_photos(["skimage:nope"]), "not a scikit-image photo"),
    (lambda f: load_photos(["skimage:download_all"]), "not a scikit-image photo"),
    (lambda f: load_photos(["/no/such.png"]), "no such image file"),
    (lambda f: load_photos(["skimage:chelsea"], ["skimage:chelsea"]), "in both train_photos and test_photos"),
    (lambda f: load_photos(["skimage:chelsea", "skimage:chelsea"]), "lists a photo twice"),
    (lambda f: load_photos([]), "no photos"),
    (lambda f: load_photos(["skimage:chelsea"], scales=[0]), "scales must be"),
    (lambda f: load_photos(["skimage:chelsea"], config="crops", crop_size=True), "crop_size must be"),
    (lambda f: load_photos(["skimage:chelsea"], config="crops", max_crops_per_photo=0), "max_crops_per_photo"),
    (lambda f: load_photos(["skimage:chelsea"], config="tiles"), "unknown photos config"),
    (lambda f: load_photos(["skimage:chelsea"], tile=3), "unknown options"),
])
def test_bad_options_name_the_problem(folders, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(folders)


def test_a_broken_photo_names_its_file(folders, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DataSourceError, match="broken.png: not a readable image"):
        load_photos([str(bad)], cache_dir=tmp_path / "c")
    assert photo_path("skimage:chelsea") == "skimage:chelsea"
    with pytest.raises(DataSourceError, match="not an 8-bit RGB or grey photo"):
        read_photo("skimage:binary_blobs")
    small = os.path.join(folders["walls"], "Dunes", "contents", "images", "640x480.png")
    with pytest.raises(DataSourceError, match="smaller than scale 16"):
        load_photos([small], scales=[16], cache_dir=tmp_path / "d")
