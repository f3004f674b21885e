"""pixeltok.data.load_scenes: procedurally drawn shape scenes with complete grammar captions (De-Diffusion data)."""

from __future__ import annotations

import numpy as np
import pytest

from pixeltok.data import load_scenes, render_dataset_card
from pixeltok.data import scenes as sc

SIZES = dict(n_train=60, n_val=20, n_test=20)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One Arrow build shared by the read-only tests."""
    return load_scenes(**SIZES, seed=5, cache_dir=tmp_path_factory.mktemp("scenes-cache"))


def _colours_in(img: np.ndarray) -> set[str]:
    rgb_to_name = {v: k for k, v in sc.COLOURS.items()}
    return {rgb_to_name[tuple(int(x) for x in c)] for c in np.unique(img.reshape(-1, 3), axis=0)}


def _plain(row):
    return {k: v for k, v in row.items() if k != "image"}


# -- one scene ----------------------------------------------------------------------------------------------------
def test_make_scene_is_deterministic_and_seeded():
    a = sc.make_scene(7, seed=3)
    b = sc.make_scene(7, seed=3)
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
    assert a[0].shape == (24, 24, 3) and a[0].dtype == np.uint8
    others = [sc.make_scene(7, seed=s)[1] for s in (4, 5, 6)] + [sc.make_scene(8, seed=3)[1]]
    assert a[1] not in others


@pytest.mark.parametrize("size", [16, 24, 64])
def test_pixels_use_only_the_caption_colours_and_every_object_shows(size):
    for i in range(150):
        s = sc.sample_scene(i, size=size, seed=1, max_shapes=6 if size == 64 else 4)
        img = s["image"]
        assert img.shape == (size, size, 3)
        objs, bg = sc.parse_caption(s["caption"])
        named = {o["colour"] for o in objs}
        assert bg not in named  # an object never has the background's colour
        used = _colours_in(img)
        assert used <= named | {bg}, (s["caption"], used)
        assert named <= used, s["caption"]  # no object is fully hidden
        _, lab = sc.draw_scene(s["shapes"], bg, size, labels=True)
        counts = np.bincount(lab.ravel(), minlength=len(objs) + 1)[1:]
        for o, n in zip(s["shapes"], counts):
            assert n >= 0.5 * sc._mask(o["shape"], o["side"]).sum()


def test_caption_parses_back_to_the_shapes_and_fixes_the_image():
    seen_shapes, seen_pos, seen_n = set(), set(), set()
    for i in range(300):
        s = sc.sample_scene(i, seed=2)
        objs, bg = sc.parse_caption(s["caption"])
        assert bg == s["background"] and len(objs) == s["num_shapes"] == len(s["shapes"])
        assert 1 <= s["num_shapes"] <= 4
        assert objs == [{k: o[k] for k in ("size", "colour", "shape", "position")} for o in s["shapes"]]
        assert len({o["position"] for o in objs}) == len(objs)  # one object per cell
        for o in s["shapes"]:  # the caption fixes each box up to the +-1 px jitter
            x0, y0, d = sc.nominal_box(o["position"], o["size"], 24)
            assert d == o["side"] == {"small": 7, "large": 12}[o["size"]]
            assert abs(o["x"] - x0) <= 1 and abs(o["y"] - y0) <= 1
        assert np.array_equal(sc.draw_scene(s["shapes"], bg, 24), s["image"])  # paint order = caption order
        seen_shapes |= {o["shape"] for o in objs}
        seen_pos |= {o["position"] for o in objs}
        seen_n.add(len(objs))
    assert seen_shapes == set(sc.SHAPES) and seen_pos == set(sc.POSITIONS) and seen_n == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="not 'a <small|large>"):
        sc.parse_caption("a huge red circle top left, on white")
    with pytest.raises(ValueError, match="on <background>"):
        sc.parse_caption("a large red circle top left")


def test_short_caption_names_an_object_of_the_scene():
    templates = set()
    for i in range(200):
        s = sc.sample_scene(i, seed=4)
        objs, bg = sc.parse_caption(s["caption"])
        short = s["short_caption"]
        assert len(short.split()) <= 7
        hit = [o for o in objs if f" {o['colour']} {o['shape']}" in f" {short}"]
        assert hit, (short, s["caption"])
        for k, t in enumerate(sc.SHORT_TEMPLATES):
            if short == t.format(a="an" if hit[0]["colour"][0] in "aeiou" else "a", colour=hit[0]["colour"],
                                 shape=hit[0]["shape"], background=bg):
                templates.add(k)
    assert templates == {0, 1, 2}
    assert sc.make_scene(0, seed=0)[2].split()[0] in ("a", "an", "there")


def test_splits_have_disjoint_contents_and_images():
    def draw(split, n):
        out = [sc.sample_scene(i, seed=0, split=split) for i in range(n)]
        return ({sc.scene_content_key(s["background"], s["shapes"]) for s in out},
                {s["image"].tobytes() for s in out}, out)

    tr_keys, tr_img, tr = draw("train", 1500)
    va_keys, va_img, va = draw("validation", 200)
    te_keys, te_img, te = draw("test", 200)
    assert not tr_keys & te_keys and not tr_keys & va_keys and not va_keys & te_keys
    assert not tr_img & te_img and not tr_img & va_img
    assert {sc.scene_family(s["background"], s["shapes"]) for s in te} == {2}
    assert {sc.scene_family(s["background"], s["shapes"]) for s in tr} == {0}
    # the same caption content in another paint order stays in its family
    s = next(x for x in te if x["num_shapes"] >= 2)
    assert sc.scene_family(s["background"], s["shapes"][::-1]) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=8), r"size must be an int in 16\.\.64"),
    (dict(size=65), r"size must be an int in 16\.\.64"),
    (dict(size=24.0), r"size must be an int"),
    (dict(min_shapes=3, max_shapes=2), r"min_shapes \(3\) must be <= max_shapes \(2\)"),
    (dict(max_shapes=10), r"max_shapes must be an int in 1\.\.9"),
    (dict(min_shapes=0), r"min_shapes must be an int in 1\.\.9"),
])
def test_bad_arguments_raise_naming_the_argument(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        load_scenes(10, 2, 2, cache_dir=tmp_path, **kwargs)
    with pytest.raises(ValueError, match=match):
        sc.sample_scene(0, **{"size": 24, **kwargs})
    assert not any(tmp_path.iterdir())  # refused before anything was built


def test_other_bad_options(tmp_path):
    with pytest.raises(ValueError, match="n_train must be a non-negative int"):
        load_scenes(-1, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="test_share=0 with n_test=5"):
        load_scenes(5, 5, 5, test_share=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="val_share \\+ test_share must be < 1"):
        load_scenes(5, 5, 5, val_share=0.5, test_share=0.5, cache_dir=tmp_path)
    with pytest.raises(TypeError, match="unknown option"):
        load_scenes(5, 5, 5, colours=3, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        sc.make_scene(0, split="dev")


# -- the builder ------------------------------------------------------------------------------------------------------
def test_built_dataset_rows_match_make_scene(built):
    assert {k: d.num_rows for k, d in built.items()} == {"train": 60, "validation": 20, "test": 20}
    assert set(built["train"].column_names) == {"image", "caption", "short_caption", "num_shapes", "background",
                                                "shapes", "index"}
    for split, d in built.items():
        for i in (0, d.num_rows - 1):
            row = d[i]
            img, cap, short = sc.make_scene(i, seed=5, split=split)
            assert row["image"].mode == "RGB" and row["image"].size == (24, 24)
            assert np.array_equal(np.asarray(row["image"]), img)
            assert (row["caption"], row["short_caption"], row["index"]) == (cap, short, i)
            assert row["num_shapes"] == len(row["shapes"]) == len(sc.parse_caption(cap)[0])


def test_rows_do_not_depend_on_split_sizes(built, tmp_path):
    small = load_scenes(25, 7, 0, seed=5, cache_dir=tmp_path)
    assert set(small) == {"train", "validation"}
    for split in small:
        a, b = small[split], built[split]
        assert [_plain(a[i]) for i in range(a.num_rows)] == [_plain(b[i]) for i in range(a.num_rows)]
        assert all(np.array_equal(np.asarray(a[i]["image"]), np.asarray(b[i]["image"])) for i in range(a.num_rows))


def test_streaming_yields_the_same_rows(built, tmp_path):
    stream = load_scenes(**SIZES, seed=5, streaming=True, cache_dir=tmp_path)
    for split in ("train", "test"):
        rows = list(stream[split].take(5))
        assert [_plain(r) for r in rows] == [_plain(built[split][i]) for i in range(5)]
        assert all(np.array_equal(np.asarray(r["image"]), np.asarray(built[split][i]["image"]))
                   for i, r in enumerate(rows))


def test_palette_holds_exactly_the_scene_colours():
    from pixeltok.tokenization.palettes import Palette
    from pixeltok.tokenization.pixel_image import PixelImageCodec

    pal = sc.scene_palette()
    p = Palette.from_dict(pal)
    assert p.names == tuple(sc.SCENE_COLOURS) and [tuple(c) for c in p.colors.tolist()] == list(sc.COLOURS.values())
    codec = PixelImageCodec(palette=pal, layout="runs", max_side=64)
    img = sc.make_scene(3, seed=0)[0]
    ids = codec.encode_image(img)
    assert np.array_equal(np.asarray(codec.decode_image(ids).convert("RGB")), img)  # lossless: no colour is off-palette


def test_dataset_card_states_the_real_numbers(built):
    card = str(sc.render_scenes_card(built, repo_id="me/scenes"))
    assert "license: cc0-1.0" in card and "task_categories" in card
    assert "train: 60, validation: 20, test: 20" in card and "Rows:** 100" in card
    assert "24x24 px" in card and "seed=5" in card and "`small` = 7 px, `large` = 12 px" in card
    assert "`purple` (#8228aa)" in card and "`grey` (#808080)" in card
    assert all(f"`{s}`" in card for s in sc.SHAPES) and "`bottom right`" in card
    assert 'load_dataset("me/scenes", "default")' in card and "load_scenes(60, 20, 20, size=24" in card
    # without the dataset: the loader's options, and the drawing facts for the given size
    card2 = str(sc.render_scenes_card(splits={"train": 10}, options={"size": 32, "n_train": 10}))
    assert "32x32 px" in card2 and "`small` = 9 px, `large` = 16 px" in card2
    card3 = str(render_dataset_card("scenes", license="cc0-1.0", source="generated", splits={"train": 3}))
    assert "Shape scenes with complete captions" in card3 and "24x24 px" in card3
    assert "`there is a red circle`" in card
