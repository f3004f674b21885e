"""pixeltok.data.load_text_images: words rendered into small images (the reading task) and prepare_reader_image.

Most tests use offline word sources (``words="pydoc"`` or small lists) and matplotlib's bundled fonts; the Debian
word list and fonts are fetched once per session by the ``debian_dir`` fixture (``apt-get download``).
"""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from pixeltok.data import DataSourceError, load_text_images, prepare_reader_image, render_dataset_card
from pixeltok.data import text_images as ti
from pixeltok.image_io import ImageInputError

SIZES = dict(n_train=240, n_val=60, n_test=60)
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo", "lima",
         "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
         "xray", "yankee", "zulu", "Paris", "ROME", "o'clock", "e-mail"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One Arrow build shared by the read-only tests (pydoc words: offline)."""
    return load_text_images(**SIZES, words="pydoc", seed=3, cache_dir=tmp_path_factory.mktemp("ti-cache"))


@pytest.fixture(scope="session")
def debian_dir(tmp_path_factory):
    """wamerican + the Debian font packages, fetched once per session with apt-get download."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not available: the Debian word list and fonts cannot be fetched here")
    return tmp_path_factory.mktemp("debian-packages")


def _rows(ds):
    return [ds[i] for i in range(ds.num_rows)]


def _plain(row):
    return {k: v for k, v in row.items() if k != "image"}


# -- fonts --------------------------------------------------------------------------------------------------------
def test_matplotlib_fonts_are_checked_text_fonts():
    names = [n for n, _ in ti.resolve_fonts("matplotlib")]
    for want in ("DejaVu Sans Book", "DejaVu Sans Mono Bold", "DejaVu Serif Italic", "STIXGeneral Regular",
                 "cmr10 Regular", "cmss10 Regular", "cmtt10 Regular"):
        assert want in names
    assert not [n for n in names if n.split()[0] in ("cmex10", "cmsy10", "cmmi10", "STIXNonUnicode") or "Sym" in n
                or "Display" in n or "Last Resort" in n]
    folder = ti._matplotlib_font_dir()
    for bad in ("cmsy10.ttf", "cmex10.ttf", "STIXSizOneSymReg.ttf", "DejaVuSansDisplay.ttf", "LastResortHE-Regular.ttf"):
        assert ti.check_font(folder / bad), bad  # the automatic check rejects them, not only the name filter
    assert ti.check_font(folder / "cmti10.ttf") is None


def test_font_list_paths_are_validated(tmp_path):
    folder = ti._matplotlib_font_dir()
    pair = [str(folder / "DejaVuSans.ttf"), str(folder / "cmr10.ttf")]
    assert [n for n, _ in ti.resolve_fonts(pair)] == ["DejaVu Sans Book", "cmr10 Regular"]
    with pytest.raises(DataSourceError, match="not usable.*not Latin text"):
        ti.resolve_fonts(pair + [str(folder / "cmsy10.ttf")])
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font")
    with pytest.raises(DataSourceError, match="junk.ttf.*cannot load"):
        ti.resolve_fonts([str(junk)])
    with pytest.raises(DataSourceError, match="no such font file"):
        ti.resolve_fonts([str(tmp_path / "missing.ttf")])


# -- splits, tiers, bounds -----------------------------------------------------------------------------------------
def test_test_fonts_and_words_appear_in_no_other_split(built):
    assert set(built) == {"train", "validation", "test"}
    assert {k: d.num_rows for k, d in built.items()} == {"train": 240, "validation": 60, "test": 60}
    fonts = {k: set(d["font"]) for k, d in built.items()}
    texts = {k: {t.lower() for t in d["text"]} for k, d in built.items()}
    assert not fonts["test"] & (fonts["train"] | fonts["validation"])
    assert fonts["validation"] <= fonts["train"] | fonts["validation"]
    assert not texts["test"] & (texts["train"] | texts["validation"])
    assert not texts["validation"] & texts["train"]
    summary = ti._plan(ti.TextImagesConfig(name="default", **SIZES, words="pydoc", seed=3))["summary"]
    assert fonts["test"] <= set(summary["test_fonts_held_out"])
    assert not set(summary["test_fonts_held_out"]) & set(summary["train_fonts"])
    kinds = set(built["train"]["kind"])
    assert kinds == {"word", "number"}  # numbers are split too (checked by the text disjointness above)


def test_tier_properties_hold_per_row(built):
    tiers = set()
    for split, ds in built.items():
        for r in _rows(ds):
            tiers.add(r["tier"])
            small, low, noisy = 7 <= r["font_size"] <= 10, 40 <= r["luma_diff"] < 80, 6 <= r["noise_sigma"] <= 12
            clean_size, clean_luma, clean_noise = 11 <= r["font_size"] <= 15, r["luma_diff"] >= 80, r["noise_sigma"] <= 4
            if r["tier"] == "clean":
                assert clean_size and clean_luma and clean_noise and r["hard_factors"] == [], r
            else:
                assert r["tier"] == "hard" and r["hard_factors"], r
                f = set(r["hard_factors"])
                assert (small if "small_font" in f else clean_size), r
                assert (low if "low_contrast" in f else clean_luma), r
                assert (noisy if "noise" in f else clean_noise), r
            assert 0 <= r["blur"] <= 0.7
    assert tiers == {"clean", "hard"}  # mixed: both tiers in every evaluation


def test_image_sizes_colours_and_recorded_parameters(built):
    for ds in built.values():
        for r in _rows(ds):
            im = r["image"]
            assert im.mode == "RGB" and im.size == (r["width"], r["height"])
            assert 11 <= r["height"] <= 20 and 1 <= r["width"] <= 96
            assert 7 <= r["font_size"] <= 15
            diff = abs(ti.luma(r["fg"]) - ti.luma(r["bg"]))
            assert diff >= 40 and diff == pytest.approx(r["luma_diff"], abs=1e-9)
            assert 1 <= r["offset_x"] and 0 <= r["offset_y"] < r["height"]
            assert r["font_file"].endswith(".ttf") and r["text"]


def test_the_text_ink_lies_inside_the_image():
    pools = ti.make_pools("matplotlib", WORDS)
    m = 24
    for i in range(150):
        rng = np.random.default_rng([0, 0, i])
        p = ti.sample_row(rng, pools, number_fraction=0.2, title_fraction=0.2, upper_fraction=0.2)
        big = dict(p, width=p["width"] + 2 * m, height=p["height"] + 2 * m, blur=0.0, noise_sigma=0.0,
                   _origin=(p["_origin"][0] + m, p["_origin"][1] + m))
        a = np.asarray(ti.render_text_image(big))
        ink = np.argwhere((a != np.array(p["bg"], np.uint8)).any(-1))
        assert len(ink), p["text"]
        (y0, x0), (y1, x1) = ink.min(0) - m, ink.max(0) - m
        assert 0 <= x0 and x1 < p["width"] and 0 <= y0 and y1 < p["height"], (p["text"], p["font"], p["font_size"])


def test_same_seed_same_pixels_other_seed_other_rows(built, tmp_path):
    again = load_text_images(**SIZES, words="pydoc", seed=3, cache_dir=tmp_path / "fresh")  # rebuilt, not cached
    assert again["test"].cache_files[0]["filename"] != built["test"].cache_files[0]["filename"]
    for split in built:
        for a, b in zip(_rows(built[split]), _rows(again[split])):
            assert _plain(a) == _plain(b)
            assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
    other = load_text_images(n_train=20, n_val=0, n_test=0, words="pydoc", seed=4, streaming=True)["train"]
    assert [r["text"] for r in other] != built["train"]["text"][:20]


def test_streaming_rows_equal_arrow_rows_and_shard_by_rank(built):
    import datasets
    from datasets.distributed import split_dataset_by_node

    sd = load_text_images(**SIZES, words="pydoc", seed=3, streaming=True)
    assert isinstance(sd["train"], datasets.IterableDataset)
    for split in built:
        streamed = list(sd[split])
        assert len(streamed) == built[split].num_rows
        for a, b in zip(streamed, _rows(built[split])):
            assert _plain(a) == _plain(b)
            assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
    ranks = [split_dataset_by_node(sd["validation"], rank=k, world_size=2) for k in range(2)]
    assert all(r.n_shards == sd["validation"].n_shards // 2 for r in ranks)  # whole shards per rank, no skipping
    idx = [[row["index"] for row in r] for r in ranks]
    assert not set(idx[0]) & set(idx[1]) and sorted(idx[0] + idx[1]) == list(range(60))


def test_tier_argument_fixed_sizes_and_family_split():
    clean = list(load_text_images(n_train=40, n_val=0, n_test=0, tier="clean", words=WORDS, streaming=True)["train"])
    assert {r["tier"] for r in clean} == {"clean"}
    hard = load_text_images(n_train=60, n_val=0, n_test=20, tier="hard", words=WORDS, height=16, width=96,
                            font_split="family", test_fonts=2, streaming=True)
    rows = {k: list(d) for k, d in hard.items()}
    assert {r["tier"] for rs in rows.values() for r in rs} == {"hard"}
    assert {r["image"].size for rs in rows.values() for r in rs} == {(96, 16)}
    path = dict(ti.resolve_fonts("matplotlib"))
    fam = {k: {ti.font_family(path[r["font"]]) for r in rs} for k, rs in rows.items()}
    assert not fam["test"] & fam["train"]
    factors = {tuple(r["hard_factors"]) for rs in rows.values() for r in rs}
    assert len(factors) >= 5  # the non-empty combinations of the three hard factors all occur


def test_user_word_lists_long_words_and_numbers():
    words = WORDS + ["pneumonoultramicroscopicsilicovolcanoconiosis" * 2]
    ds = load_text_images(n_train=80, n_val=20, n_test=20, words=words, streaming=True)
    texts = [r["text"] for d in ds.values() for r in d]
    assert set(texts) <= set(WORDS)  # used as given: case kept, no numbers, the too-long word skipped
    assert {"o'clock", "e-mail", "Paris", "ROME"} & set(texts)
    with pytest.raises(DataSourceError, match="too long"):
        list(load_text_images(n_train=3, n_val=0, n_test=0, words=["x" * 80, "y" * 90, "z" * 85], streaming=True)["train"])
    nums = list(load_text_images(n_train=30, n_val=0, n_test=0, words=WORDS, number_fraction=1.0, streaming=True)["train"])
    assert all(r["kind"] == "number" and r["text"].isdigit() and int(r["text"]) < 100_000 for r in nums)


def test_random_strings_only_in_training_rows_and_other_rows_unchanged():
    kw = dict(n_train=60, n_val=20, n_test=20, words=WORDS, streaming=True)
    plain = {k: [r["text"] for r in d] for k, d in load_text_images(**kw).items()}
    mixed = {k: [(r["text"], r["kind"]) for r in d] for k, d in load_text_images(**kw, random_fraction=0.5).items()}
    randoms = [t for t, kind in mixed["train"] if kind == "random"]
    assert 15 <= len(randoms) <= 45 and all(1 <= len(t) <= 8 and t.isalnum() and t.isascii() for t in randoms)
    assert {t for t, kind in mixed["train"] if kind != "random"} <= set(WORDS)
    for split in ("validation", "test"):  # held-out rows are real words, exactly as without the option
        assert [t for t, _ in mixed[split]] == plain[split]
    with pytest.raises(ValueError, match="random_fraction"):
        load_text_images(**kw, random_fraction=1.5)
    short = [r["text"] for r in load_text_images(**kw, random_fraction=1.0, random_max_length=2)["train"]]
    assert all(1 <= len(t) <= 2 for t in short) and {len(t) for t in short} == {1, 2}
    with pytest.raises(ValueError, match="random_max_length"):
        load_text_images(**kw, random_max_length=0)


def test_train_hard_fraction_changes_only_the_training_rows():
    kw = dict(n_train=80, n_val=20, n_test=20, words=WORDS, streaming=True)
    plain = {k: [(r["text"], r["tier"], r["font_size"]) for r in d] for k, d in load_text_images(**kw).items()}
    more = {k: [(r["text"], r["tier"], r["font_size"]) for r in d]
            for k, d in load_text_images(**kw, train_hard_fraction=0.9).items()}
    hard = lambda rows: sum(t == "hard" for _, t, _ in rows)
    assert hard(more["train"]) > hard(plain["train"]) and hard(more["train"]) >= 60
    for split in ("validation", "test"):  # the held-out splits stay exactly as they were
        assert more[split] == plain[split]
    with pytest.raises(ValueError, match="train_hard_fraction"):
        load_text_images(**kw, train_hard_fraction=2)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(tier="medium"), ValueError, "tier must be one of"),
    (dict(n_train=-1), ValueError, "n_train must be a non-negative int"),
    (dict(n_train=0, n_val=0, n_test=0), ValueError, "nothing to build"),
    (dict(height=30), ValueError, "height must be None"),
    (dict(width=200), ValueError, "width must be None"),
    (dict(max_width=128), ValueError, "max_width must be"),
    (dict(hard_fraction=1.5), ValueError, "hard_fraction must be a fraction"),
    (dict(fonts="comic"), ValueError, "fonts must be 'matplotlib', 'debian', 'all'"),
    (dict(fonts=[]), ValueError, "fonts must be"),
    (dict(words=[]), ValueError, "words must be"),
    (dict(words=["two words"]), ValueError, r"words\[0\].*not a single word"),
    (dict(words=[3]), ValueError, r"words\[0\]: expected a string"),
    (dict(words="no-such-list.txt"), ValueError, "no such file"),
    (dict(words=["a", "b", "c"]), ValueError, "gets no words"),
    (dict(test_fonts=21), ValueError, "none would be left"),
    (dict(test_fonts=["Comic Sans"]), ValueError, "not among the fonts"),
    (dict(font_split="style"), ValueError, "font_split must be"),
    (dict(colour="red"), TypeError, "unknown option"),
    (dict(sizes={"train": 5, "dev": 5}), ValueError, "sizes must be a dict"),
])
def test_bad_arguments_give_clear_errors(kwargs, exc, match):
    args = dict(n_train=10, n_val=5, n_test=5, words="pydoc", streaming=True)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        load_text_images(**args)


def test_failed_debian_fetch_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ti.shutil, "which", lambda name: None)
    with pytest.raises(DataSourceError, match="apt-get not found.*fonts='matplotlib', words='pydoc'"):
        load_text_images(n_train=5, n_val=0, n_test=2, words="pydoc", fonts="debian", download_dir=tmp_path, streaming=True)
    monkeypatch.setattr(ti.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(ti.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 100, "", "E: Failed to fetch (offline)"))
    with pytest.raises(DataSourceError, match="apt-get download wamerican failed.*Failed to fetch"):
        load_text_images(n_train=5, n_val=0, n_test=2, download_dir=tmp_path, streaming=True)


# -- the Debian sources (fetched) --------------------------------------------------------------------------------
def test_debian_word_list_and_fonts(debian_dir):
    words = ti.wamerican_words(debian_dir)
    assert len(words) > 50_000 and len(words) == len(set(words))
    assert all(w.isascii() and w.isalpha() and w == w.lower() for w in words)
    assert "house" in words and not any(w.endswith("'s") for w in words)
    debian = [n for n, _ in ti.resolve_fonts("debian", debian_dir)]
    for want in ("Liberation Sans Regular", "Liberation Serif Bold", "Liberation Mono Italic", "FreeSans Regular",
                 "FreeSerif Italic", "FreeMono Bold", "DejaVu Sans Book"):
        assert want in debian
    every = ti.resolve_fonts("all", debian_dir)
    assert len(every) == len({n for n, _ in every}) > len(debian)  # DejaVu from both sources kept once
    ds = load_text_images(n_train=30, n_val=10, n_test=10, fonts="all", download_dir=debian_dir, streaming=True)
    rows = {k: list(d) for k, d in ds.items()}
    assert not {r["text"].lower() for r in rows["test"]} & {r["text"].lower() for r in rows["train"]}
    assert {r["kind"] for rs in rows.values() for r in rs} <= {"word", "number"}


# -- dataset card ----------------------------------------------------------------------------------------------
def test_dataset_card_renders(built):
    card = ti.render_text_images_card(built, repo_id="someone/words-in-pixels")
    text = str(card)
    assert text.startswith("---\nlicense: other\n")
    assert card.data.to_dict()["pretty_name"] == "Words in small images (pixeltok reading task)"
    assert "train: 240, validation: 60, test: 60" in text and "pydoc_data.topics" in text
    held = ti._plan(ti.TextImagesConfig(name="default", **SIZES, words="pydoc", seed=3))["summary"]["test_fonts_held_out"]
    assert all(f in text for f in held) and "seed=3" in text and "| `clean` | 11–15 px | ≥ 80 | ≤ 4 |" in text
    plain = render_dataset_card("text_images", splits={"train": 10, "test": 5}, license="cc0-1.0", source="hand-made")
    assert "license: cc0-1.0" in str(plain) and "hand-made" in str(plain)


# -- prepare_reader_image ---------------------------------------------------------------------------------------
def test_prepare_reader_image_any_input():
    rgba = np.zeros((60, 200, 4), np.uint8)
    rgba[..., 3] = 255
    out = prepare_reader_image(rgba, height=16)
    assert out.mode == "RGB" and out.size == (53, 16)
    grey = prepare_reader_image(Image.new("L", (30, 8), 100), height=12)
    assert grey.mode == "RGB" and grey.size == (45, 12)
    wide = prepare_reader_image(Image.new("RGBA", (2000, 100), (0, 0, 0, 0)), height=16)
    assert wide.size == (96, 16) and wide.getpixel((0, 0)) == (255, 255, 255)  # alpha on white, padded to height
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (10, 20, 30)).save(buf, "PNG")
    for src in (buf.getvalue(), {"bytes": buf.getvalue(), "path": None}):
        im = prepare_reader_image(src, height=20)
        assert im.size == (40, 20) and im.getpixel((5, 5)) == (10, 20, 30)


@pytest.mark.parametrize("image, match", [
    (np.zeros((0, 5, 3), np.uint8), "empty image"),
    (Image.new("RGB", (0, 0)), "empty image"),
    (b"", "empty bytes"),
    (b"definitely not a png", "not a readable image"),
    (12345, "unsupported image input type"),
    ({"path": None, "bytes": None}, "neither 'bytes' nor 'path'"),
    (np.zeros((1000, 10), np.uint8), "crop it to the word"),
    (np.zeros((5, 3000), np.uint8), "crop it to the word"),
    (np.zeros((2, 40000), np.uint8), "absurdly large"),
    (np.zeros((4, 4), np.float64), "must be uint8"),
])
def test_prepare_reader_image_errors(image, match):
    with pytest.raises(ImageInputError, match=match):
        prepare_reader_image(image)


def test_prepare_reader_image_bad_height():
    with pytest.raises(ValueError, match="height must be an int"):
        prepare_reader_image(Image.new("RGB", (8, 8)), height=0)
