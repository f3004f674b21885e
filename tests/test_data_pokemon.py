"""PixelBytes sprites + captions builder (pixeltok.data.load_pokemon) and the Wesnoth corpus reader, on fixtures built here."""

import io
import json
import logging
import re
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

import pixeltok
from pixeltok.data import DataSourceError, load_pokemon, render_dataset_card, with_windows
from pixeltok.data._common import normalize_caption, split_assignment
from pixeltok.data.wesnoth import extract_deb, parse_unit_types, prepare_wesnoth
from pixeltok.tokenization.palettes import get_palette
from pixeltok.tokenization.pixelbytes import PixelBytesTokenizer, pixelize

NES = get_palette("nes55")
CAPTIONS = ["A small fire lizard. Its tail burns “brightly”.", "Sleeps\tall day\nlong — très calme.",
            "A bird with sharp eyes", "Water turtle; shoots water", "A seed on its back", "Rock snake, 9 m long",
            "Ghost made of gas", "Electric mouse!"]


def draw_sprite(i: int, size=(48, 40)) -> Image.Image:
    """A pixel-art-like RGBA sprite: a few solid shapes on a transparent background, one half-transparent pixel."""
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.ellipse((6 + i, 5, 30 + i, 33), fill=tuple(int(v) for v in NES.colors[(3 * i) % 55]) + (255,))
    d.rectangle((10, 12 + i, 20, 22 + i), fill=tuple(int(v) for v in NES.colors[(7 * i + 5) % 55]) + (255,))
    im.putpixel((size[0] - 2, size[1] - 2), (250, 10, 10, 60))
    return im


@pytest.fixture(scope="module")
def sprites(tmp_path_factory):
    d = tmp_path_factory.mktemp("sprites")
    (d / "img").mkdir()
    with open(d / "metadata.jsonl", "w") as f:
        for i, cap in enumerate(CAPTIONS):
            draw_sprite(i).save(d / "img" / f"mon{i}.png")
            f.write(json.dumps({"file_name": f"img/mon{i}.png", "caption": cap}) + "\n")
    return d


def test_folder_columns_pixels_and_ids_round_trip(sprites, tmp_path):
    dd = load_pokemon(sprites, cache_dir=tmp_path, val_size=2, test_size=2, seed=0)
    assert {k: v.num_rows for k, v in dd.items()} == {"train": 4, "validation": 2, "test": 2}
    f = dd["train"].features
    assert list(f) == ["name", "image", "caption", "input_ids"] and str(f["input_ids"].feature.dtype) == "int16"
    tok = PixelBytesTokenizer()
    for split in dd.values():
        for r in split:
            i = int(r["name"].rsplit("mon", 1)[1])
            idx = pixelize(sprites / "img" / f"mon{i}.png")  # the reference pre-processing
            assert r["caption"] == normalize_caption(CAPTIONS[i]) and r["caption"].isascii() and r["caption"].islower()
            img = np.asarray(r["image"])
            assert r["image"].mode == "RGB" and img.shape[:2] == idx.shape and max(idx.shape) == 25
            assert np.array_equal(img, NES.indices_to_rgba(idx)[..., :3])
            assert r["input_ids"] == tok.encode_sample(idx, r["caption"])
            caption, image = tok.decode_sample(r["input_ids"], strict=True)
            assert caption == r["caption"] and np.array_equal(np.asarray(image)[..., :3], img)
    assert normalize_caption(CAPTIONS[1]) == "sleeps all day long - tres calme."


def test_transparency_token_windows_and_order(sprites, tmp_path):
    dd = load_pokemon(sprites, cache_dir=tmp_path, transparency="token", crop=False, windows=True,
                      order="caption_first", lowercase=False)
    r = dd["train"][0]
    assert r["image"].mode == "RGBA"
    a = np.asarray(r["image"])
    assert (a[..., 3] == 0).any() and set(np.unique(a[..., 3])) <= {0, 255}
    tok = PixelBytesTokenizer(transparency="token", crop=False)
    ids = r["input_ids"]
    assert tok.first_color_id + NES.transparent_index in ids  # the transparent colour is a token
    assert ids[1] != tok.first_color_id and tok.decode_sample(ids)[0] == r["caption"] and r["caption"][0].isupper()
    assert np.array_equal(np.asarray(r["pixelbyte"]), tok.build_windows(ids))
    plain = load_pokemon(sprites, cache_dir=tmp_path)
    lazy = with_windows(plain)["train"][0]
    assert np.array_equal(np.asarray(lazy["pixelbyte"]), tok.build_windows(plain["train"][0]["input_ids"]))


def test_splits_seeded_disjoint_complete(sprites, tmp_path):
    a = load_pokemon(sprites, cache_dir=tmp_path / "a", val_size=0.25, test_size=0.25, seed=7)
    b = load_pokemon(sprites, cache_dir=tmp_path / "b", val_size=0.25, test_size=0.25, seed=7)
    c = load_pokemon(sprites, cache_dir=tmp_path / "c", val_size=0.25, test_size=0.25, seed=8)
    names = {k: v["name"] for k, v in a.items()}
    assert names == {k: v["name"] for k, v in b.items()}
    assert names != {k: v["name"] for k, v in c.items()}
    allnames = sorted(n for v in names.values() for n in v)
    assert allnames == sorted(f"img/mon{i}" for i in range(8))
    codes = split_assignment(8, 0.25, 0.25, 7)  # items sorted by file name
    assert sorted(names["test"]) == sorted(f"img/mon{i}" for i in np.flatnonzero(codes == 2))
    with pytest.raises(ValueError, match="no training items"):
        load_pokemon(sprites, cache_dir=tmp_path, val_size=4, test_size=4)


def test_pairs_and_csv_layouts(tmp_path):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for i in range(3):
        draw_sprite(i).convert("P").save(pairs / f"p{i}.gif")  # palette mode input
        (pairs / f"p{i}.txt").write_text(CAPTIONS[i])
    dd = load_pokemon(pairs, cache_dir=tmp_path / "c", val_size=0, test_size=0)
    assert sorted(dd["train"]["name"]) == ["p0", "p1", "p2"]
    csvd = tmp_path / "csv"
    csvd.mkdir()
    draw_sprite(1).save(csvd / "a.png")
    draw_sprite(2).convert("LA").save(csvd / "b.png")
    (csvd / "metadata.csv").write_text('file_name,caption,name\na.png,"Fire, and ""smoke""",Charm\nb.png,Grey one,Grey\n')
    dd = load_pokemon(csvd, cache_dir=tmp_path / "c", val_size=0, test_size=0)
    assert dict(zip(dd["train"]["name"], dd["train"]["caption"])) == {"Charm": 'fire, and "smoke"', "Grey": "grey one"}


def test_bad_inputs_raise_naming_file_or_skip_with_log(tmp_path, caplog):
    d = tmp_path / "bad"
    d.mkdir()
    for i in range(3):
        draw_sprite(i).save(d / f"s{i}.png")
    (d / "s3.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    rows = [{"file_name": "s0.png", "caption": "ok zero"}, {"file_name": "s1.png", "caption": "  "},
            {"file_name": "s2.png", "caption": "ok two"}, {"file_name": "s3.png", "caption": "broken"}]
    (d / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataSourceError, match=r"metadata\.jsonl line 2 \(s1\.png\): missing caption"):
        load_pokemon(d, cache_dir=tmp_path / "c")
    rows[1]["caption"] = "fixed"
    (d / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataSourceError, match=r"s3\.png"):
        load_pokemon(d, cache_dir=tmp_path / "c", val_size=0, test_size=0)
    rows[1]["caption"] = None
    (d / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with caplog.at_level(logging.WARNING, logger="pixeltok.data"):
        dd = load_pokemon(d, cache_dir=tmp_path / "c", val_size=0, test_size=0, errors="skip")
    assert sorted(dd["train"]["caption"]) == ["ok two", "ok zero"]
    msgs = " ".join(r.getMessage() for r in caplog.records)
    assert "s1.png" in msgs and "s3.png" in msgs
    # image listed but absent; pair without caption; empty folder; fully transparent sprite
    (d / "metadata.jsonl").write_text(json.dumps({"file_name": "nope.png", "caption": "x"}))
    with pytest.raises(DataSourceError, match=r"nope\.png does not exist"):
        load_pokemon(d, cache_dir=tmp_path / "c")
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    draw_sprite(0).save(pairs / "lonely.png")
    with pytest.raises(DataSourceError, match=r"lonely\.png: missing caption \(lonely\.txt not found\)"):
        load_pokemon(pairs, cache_dir=tmp_path / "c")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError, match=r"empty: folder holds no images"):
        load_pokemon(empty, cache_dir=tmp_path / "c")
    clear = tmp_path / "clear"
    clear.mkdir()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(clear / "ghost.png")
    (clear / "ghost.txt").write_text("invisible")
    with pytest.raises(DataSourceError, match=r"ghost\.png.*fully transparent"):
        load_pokemon(clear, cache_dir=tmp_path / "c", val_size=0, test_size=0)


def write_published_parquet(path, n=6, seed=0):
    """The ffurfaro/PixelBytes-Pokemon layout: image {bytes, path} PNG RGB <= 25 px, caption, pixelbyte windows."""
    rng = np.random.default_rng(seed)
    images, caps, windows, grids = [], [], [], []
    for i in range(n):
        h, w = int(rng.integers(10, 26)), int(rng.integers(10, 26))
        idx = rng.integers(0, 55, (h, w)).astype(np.int16)
        buf = io.BytesIO()
        Image.fromarray(NES.indices_to_rgba(idx)[..., :3]).save(buf, "PNG")
        images.append({"bytes": buf.getvalue(), "path": None})
        caps.append(f"pokemon number {i} is a creature of type {i % 3}.")
        windows.append(rng.integers(0, 150, (5, 3, 3)).tolist())
        grids.append(idx)
    image_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array(images, type=image_t), "caption": caps,
                      "pixelbyte": pa.array(windows, type=pa.list_(pa.list_(pa.list_(pa.int64()))))})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return grids, caps


def test_published_parquet_layout(tmp_path):
    repo = tmp_path / "PixelBytes-Pokemon"
    grids, caps = write_published_parquet(repo / "data" / "train-00000-of-00001.parquet")
    dd = load_pokemon(repo, cache_dir=tmp_path / "c", val_size=1, test_size=1)
    assert {k: v.num_rows for k, v in dd.items()} == {"train": 4, "validation": 1, "test": 1}
    tok = PixelBytesTokenizer()
    for split in dd.values():
        for r in split:
            row = int(r["name"].rsplit("-", 1)[1])
            assert np.array_equal(np.asarray(r["image"]), NES.indices_to_rgba(grids[row])[..., :3])  # NES sprites unchanged
            assert r["input_ids"] == tok.encode_sample(grids[row], caps[row])
    single = load_pokemon(repo / "data" / "train-00000-of-00001.parquet", cache_dir=tmp_path / "c", val_size=0, test_size=0)
    assert single["train"].num_rows == 6
    # a copy that already carries splits keeps them
    write_published_parquet(tmp_path / "split" / "data" / "train-00000-of-00001.parquet", n=3, seed=1)
    write_published_parquet(tmp_path / "split" / "data" / "test-00000-of-00001.parquet", n=2, seed=2)
    kept = load_pokemon(tmp_path / "split", cache_dir=tmp_path / "c")
    assert {k: v.num_rows for k, v in kept.items()} == {"train": 3, "test": 2}
    pq.write_table(pa.table({"img": [b"x"], "caption": ["c"]}), tmp_path / "wrong.parquet")
    with pytest.raises(DataSourceError, match=r"wrong\.parquet: no 'image' column"):
        load_pokemon(tmp_path / "wrong.parquet", cache_dir=tmp_path / "c")


def test_num_proc_and_cache_invalidated_by_version_and_source(sprites, tmp_path, monkeypatch):
    one = load_pokemon(sprites, cache_dir=tmp_path / "p1", val_size=0, test_size=0)["train"]
    two = load_pokemon(sprites, cache_dir=tmp_path / "p2", val_size=0, test_size=0, num_proc=2)["train"]
    assert sorted(zip(one["name"], map(tuple, one["input_ids"]))) == sorted(zip(two["name"], map(tuple, two["input_ids"])))
    again = load_pokemon(sprites, cache_dir=tmp_path / "p1", val_size=0, test_size=0)["train"]
    assert again.cache_files == one.cache_files
    monkeypatch.setattr(pixeltok, "__version__", "0.1.0.post99")
    newer = load_pokemon(sprites, cache_dir=tmp_path / "p1", val_size=0, test_size=0)["train"]
    assert "0.1.0.post99" in newer.cache_files[0]["filename"] and newer.cache_files != one.cache_files
    stream = load_pokemon(sprites, cache_dir=tmp_path / "s", val_size=0, test_size=0, streaming=True)["train"]
    assert [r["name"] for r in stream] == one["name"]


def test_edited_source_is_rebuilt(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    draw_sprite(0).save(d / "a.png")
    (d / "a.txt").write_text("first caption")
    assert load_pokemon(d, cache_dir=tmp_path / "c", val_size=0, test_size=0)["train"]["caption"] == ["first caption"]
    (d / "a.txt").write_text("second caption, longer")
    assert load_pokemon(d, cache_dir=tmp_path / "c", val_size=0, test_size=0)["train"]["caption"] == ["second caption, longer"]


def test_dataset_card(sprites, tmp_path):
    dd = load_pokemon(sprites, cache_dir=tmp_path, transparency="token")
    card = render_dataset_card("pokemon", dataset=dd, license="gpl-2.0", source="Battle for Wesnoth 1.16 (Debian)",
                               repo_id="me/sprites", source_datasets=["ffurfaro/PixelBytes-Pokemon"])
    assert card.data.license == "gpl-2.0" and card.data.size_categories == ["n<1K"]
    assert card.data.task_categories == ["image-to-text", "text-to-image", "text-generation"]
    assert card.data.source_datasets == ["ffurfaro/PixelBytes-Pokemon"]
    text = str(card)
    assert 'load_dataset("me/sprites", "default")' in text and "`transparency`" not in text
    assert "alpha < 128 becomes the `transparent` colour" in text and "long side ≤ 25" in text
    with pytest.raises(ValueError, match="source"):
        render_dataset_card("pokemon", dataset=dd, license="mit")


# -- Wesnoth ----------------------------------------------------------------------------------------------
WML = '''#textdomain wesnoth-units
[unit_type]
    id=Elvish Archer
    name= _ "Elvish Archer"
    race=elf
    image="units/elves-wood/archer.png"
    description= _ "As primarily foragers, most elves
learn to become ""proficient"" archers."+{SPECIAL_NOTES}+_" Second part."
    {DEFENSE_ANIM "units/elves-wood/archer-defend.png" "units/x.png" {SOUND_LIST:ELF_HIT} }
    [attack]
        name=bow
        description=_"bow"
    [/attack]
[/unit_type]
[unit_type]
    id=Ghost Ship
    image="units/boat.png~RC(magenta>red)"
    description=""
[/unit_type]
#define PATH_TEMP
units/#enddef
[unit_type]
    id=Sea Thing # wmllint: noconvert
    image="{PATH_TEMP}sea.png~O(0)~BLIT(units/sea.png)"
    description= _ "Lives in the sea."
[/unit_type]
'''


def test_wml_parser():
    units = parse_unit_types(WML)
    assert [u["id"] for u in units] == ["Elvish Archer", "Ghost Ship", "Sea Thing"]
    assert units[0]["description"] == 'As primarily foragers, most elves\nlearn to become "proficient" archers. Second part.'
    assert units[0]["name"] == "Elvish Archer" and units[0]["race"] == "elf"
    assert units[1]["description"] == ""
    assert units[2]["image"].startswith("units/sea.png~O(0)")


def make_fake_deb(path, files: dict[str, bytes]):
    """A minimal Debian package (ar archive with data.tar.xz), the container format ``apt-get download`` returns."""
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:xz") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo("./" + name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", tbuf.getvalue())]
    with open(path, "wb") as f:
        f.write(b"!<arch>\n")
        for name, data in members:
            f.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
            f.write(data + (b"\n" if len(data) % 2 else b""))


def test_prepare_wesnoth_from_a_deb(tmp_path):
    core = "usr/share/games/wesnoth/1.16/data/core"
    pngs = {}
    for n in ("units/elves-wood/archer.png", "units/sea.png", "units/boat.png"):
        buf = io.BytesIO()
        draw_sprite(len(pngs), (72, 72)).save(buf, "PNG")
        pngs[f"{core}/images/{n}"] = buf.getvalue()
    files = {f"{core}/units/elves/Archer.cfg": WML.encode(), f"{core}/README.md": b"not extracted", **pngs}
    debdir = tmp_path / "debs"
    debdir.mkdir()
    make_fake_deb(debdir / "wesnoth-1.16-data_1.16.9-1_all.deb", files)
    assert extract_deb(debdir / "wesnoth-1.16-data_1.16.9-1_all.deb", tmp_path / "x") == 4
    assert not (tmp_path / "x" / core / "README.md").exists()
    out = prepare_wesnoth(tmp_path / "corpus", deb_dir=debdir)
    meta = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [m["file_name"] for m in meta] == ["images/elvish-archer.png", "images/sea-thing.png"]
    assert "GPL-2.0-or-later" in (out / "SOURCE.md").read_text()
    dd = load_pokemon(out, cache_dir=tmp_path / "c", val_size=0, test_size=0)
    assert dd["train"]["name"] == ["Elvish Archer", "Sea Thing"]
    assert dd["train"]["caption"][0].startswith('as primarily foragers, most elves learn to become "proficient"')


# -- paths leaving the folder, wrong types / encodings, corrupt PNGs (each used to load silently or crash raw) -------
@pytest.fixture()
def outside(tmp_path):
    """A sprite folder ``data/`` with one good row, and a sprite in a sibling folder ``other/``."""
    (tmp_path / "other").mkdir()
    draw_sprite(0).save(tmp_path / "other" / "s0.png")
    d = tmp_path / "data"
    d.mkdir()
    draw_sprite(1).save(d / "s1.png")
    return d


def test_metadata_paths_leaving_the_folder_are_refused(outside, tmp_path):
    d = outside
    (d / "link.png").symlink_to(tmp_path / "other" / "s0.png")
    for k, fn in enumerate(("../other/s0.png", str(tmp_path / "other" / "s0.png"), "link.png", "sub/../../other/s0.png")):
        rows = [{"file_name": "s1.png", "caption": "fine"}, {"file_name": fn, "caption": "stolen"}]
        (d / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        with pytest.raises(DataSourceError, match=rf"metadata\.jsonl line 2: file_name '{re.escape(fn)}':? (is absolute or "
                                                  r"contains '\.\.'|resolves to .*outside the data folder)"):
            load_pokemon(d, cache_dir=tmp_path / f"c{k}", val_size=0, test_size=0, errors="skip")  # never skipped
    (d / "metadata.jsonl").unlink()
    (d / "s1.txt").write_text("fine")
    (d / "link.txt").write_text("stolen")
    with pytest.raises(DataSourceError, match=r"link\.png: resolves to .*outside the data folder"):
        load_pokemon(d, cache_dir=tmp_path / "pairs", val_size=0, test_size=0)


def test_metadata_wrong_types_and_encodings_raise_clearly(outside, tmp_path):
    d = outside
    cases = [(b'{"file_name": 5, "caption": "x"}', r" line 1: file_name must be a non-empty relative path \(a string\), got 5"),
             (b'{"file_name": "s1.png", "caption": "caf\xe9"}', r" line 1: not valid UTF-8 \(invalid continuation byte at byte 39\)"),
             (b'{"file_name": "s1.png", "caption": "x", "name": {"a": 1}}', r" line 1: 'name' must be a string"),
             (b'{"file_name": "s1.png", "caption": "x", "n": ' + b"9" * 5000 + b"}", r" line 1: unreadable JSON"),
             (b"\n\n", r": lists no usable sprite")]
    for k, (text, msg) in enumerate(cases):
        (d / "metadata.jsonl").write_bytes(text)
        with pytest.raises(DataSourceError, match=r"metadata\.jsonl" + msg):
            load_pokemon(d, cache_dir=tmp_path / f"c{k}", val_size=0, test_size=0)
    (d / "metadata.jsonl").unlink()
    (d / "s1.txt").write_bytes(b"caf\xe9 au lait")  # latin-1: used to lose the accent silently ("replace")
    with pytest.raises(DataSourceError, match=r"s1\.txt line 1: not valid UTF-8"):
        load_pokemon(d, cache_dir=tmp_path / "pairs", val_size=0, test_size=0)


def test_png_with_corrupt_pixel_data_is_refused(tmp_path):
    d = tmp_path / "png"
    d.mkdir()
    draw_sprite(2).save(d / "s.png")
    (d / "s.txt").write_text("a sprite")
    good = (d / "s.png").read_bytes()
    ref = np.asarray(Image.open(d / "s.png").convert("RGBA"))
    # find a byte of the deflate data whose flip Pillow decodes without complaint into different pixels
    # (Pillow skips IDAT CRCs and stops before the zlib Adler-32)
    idat = good.index(b"IDAT") + 4
    silent = None
    for p in range(idat, idat + 200):
        bad = bytearray(good)
        bad[p] ^= 0x04
        try:
            px = np.asarray(Image.open(io.BytesIO(bytes(bad))).convert("RGBA"))
        except Exception:
            continue
        if not np.array_equal(px, ref):
            silent = bytes(bad)
            break
    assert silent is not None
    (d / "s.png").write_bytes(silent)
    with pytest.raises(DataSourceError, match=r"s\.png: PNG chunk 1 \(b'IDAT'\) at byte \d+: CRC mismatch"):
        load_pokemon(d, cache_dir=tmp_path / "c", val_size=0, test_size=0)
    (d / "s.png").write_bytes(good[:-20])  # truncated inside IDAT
    with pytest.raises(DataSourceError, match=r"s\.png: PNG chunk 1 \(b'IDAT'\) .*past the end of the"):
        load_pokemon(d, cache_dir=tmp_path / "c", val_size=0, test_size=0)


def test_wesnoth_refuses_paths_leaving_the_images_folder_and_bad_deb_sizes(tmp_path):
    core = "usr/share/games/wesnoth/1.16/data/core"
    buf = io.BytesIO()
    draw_sprite(0, (72, 72)).save(buf, "PNG")
    # from <debs>/extracted/<core>/images, nine levels up is <debs>/: the old code copied secret.png into the corpus
    wml = '[unit_type]\n    id=Thief\n    image="../../../../../../../../../secret.png"\n    description= _ "Steals."\n[/unit_type]\n'
    files = {f"{core}/units/thief.cfg": wml.encode(), f"{core}/images/units/ok.png": buf.getvalue()}
    debdir = tmp_path / "debs"
    debdir.mkdir()
    draw_sprite(3, (72, 72)).save(debdir / "secret.png")
    deb = debdir / "wesnoth-1.16-data_1.16.9-1_all.deb"
    make_fake_deb(deb, files)
    with pytest.raises(DataSourceError, match=r"thief\.cfg unit 'Thief': image '\.\./.*secret\.png' is absolute or contains '\.\.'"):
        prepare_wesnoth(tmp_path / "corpus", deb_dir=debdir)
    good = deb.read_bytes()
    at = good.index(b"data.tar.xz") + 48  # the member's 10-byte size field
    for k, bad in enumerate((good[:at] + b"12x4567890" + good[at + 10:], good[:at] + b"9999999999" + good[at + 10:])):
        deb.write_bytes(bad)
        with pytest.raises(DataSourceError, match=r"\.deb: ar member 'data\.tar\.xz' at byte \d+: bad header"):
            extract_deb(deb, tmp_path / f"x{k}")
    # data.tar.xz cut short, the ar size fixed to match: the xz check fails instead of files going missing
    payload_at = good.index(b"data.tar.xz") + 60
    size = int(good[at:at + 10])
    cut = good[:at] + f"{size - 40:<10}".encode() + good[at + 10:payload_at + size - 40]
    deb.write_bytes(cut)
    with pytest.raises(DataSourceError, match=r"\.deb: data\.tar\.xz: (not a readable tar archive|corrupt).*Compressed file ended"):
        extract_deb(deb, tmp_path / "x")
