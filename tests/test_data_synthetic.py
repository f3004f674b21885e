"""pixeltok.data.synthetic: the built-in procedural sprites behind ``load_pokemon("synthetic")`` (tiny.yaml's data)."""

import json

import numpy as np
import pytest
from PIL import Image

from pixeltok.data import load_pokemon
from pixeltok.data.synthetic import COLOURS, SHAPES, make_creature


def _pixels(img, rgb) -> np.ndarray:
    return (img[..., 3] == 255) & (img[..., :3] == np.asarray(rgb)).all(-1)


def test_creatures_are_deterministic_symmetric_and_captioned_truthfully():
    for i in range(48):
        img, cap = make_creature(i)
        again, cap2 = make_creature(i)
        assert np.array_equal(img, again) and cap == cap2  # a function of (index, sprite_seed) alone
        assert img.shape == (16, 16, 4) and img.dtype == np.uint8
        assert np.array_equal(img, img[:, ::-1])  # left-right symmetric pixel art
        assert SHAPES[i % len(SHAPES)] in cap
        (colour,) = [c for c in COLOURS if c in cap.split()]
        rgb = np.asarray(COLOURS[colour])
        body, dark = _pixels(img, rgb), _pixels(img, rgb * 11 // 20)
        rows = np.flatnonzero(body.any(1))
        assert _pixels(img, (0, 0, 0)).sum() == 2  # one 2-px eye or two eyes
        assert ("horns" in cap) == dark[: rows[0]].any()  # above the body
        assert ("legs" in cap) == dark[rows[-1] + 1:].any()  # below it
        assert ("wings" in cap) == _pixels(img, (rgb + 255) // 2).any()
        assert ("white spots" in cap) == _pixels(img, (255, 255, 255)).any()
        assert ("dark stripes" in cap) == dark[rows[0]: rows[-1] + 1].any()
    assert len({make_creature(i)[1] for i in range(48)}) > 30  # varied captions
    assert any(not np.array_equal(make_creature(i, sprite_seed=1)[0], make_creature(i)[0]) for i in range(5))


def test_load_pokemon_synthetic_has_the_sprite_folder_schema(tmp_path):
    # a 3-sprite raw folder through the Pokemon builder: the reference schema
    (tmp_path / "folder").mkdir()
    rows = []
    for i in range(3):
        Image.fromarray(make_creature(i)[0], "RGBA").save(tmp_path / "folder" / f"s{i}.png")
        rows.append({"file_name": f"s{i}.png", "caption": make_creature(i)[1]})
    (tmp_path / "folder" / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder = load_pokemon(tmp_path / "folder", cache_dir=tmp_path / "c1", long_side=8, val_size=1, test_size=1)

    synth = load_pokemon("synthetic", cache_dir=tmp_path / "c2", long_side=8, val_size=0.2, test_size=0.2, seed=0)
    assert {k: len(v) for k, v in synth.items()} == {"train": 28, "validation": 10, "test": 10}
    assert synth["train"].features == folder["train"].features
    row = synth["test"][0]
    assert row["name"].startswith("creature_") and max(row["image"].size) <= 8
    assert row["input_ids"][0] == 1 and row["input_ids"][-1] == 2  # <bos> ... <eos>
    # the same pixels and caption as the folder route (same pixelize / normalize / tokenizer)
    i = int(folder["train"][0]["name"][1:])
    same = load_pokemon("synthetic", cache_dir=tmp_path / "c2", long_side=8, val_size=0, test_size=0, seed=0)["train"]
    by_name = {r["name"]: r for r in same}
    assert by_name[f"creature_{i:03d}"]["input_ids"] == folder["train"][0]["input_ids"]

    again = load_pokemon("synthetic", cache_dir=tmp_path / "c3", long_side=8, val_size=0.2, test_size=0.2, seed=0)
    assert again["test"]["input_ids"] == synth["test"]["input_ids"]  # rebuilt from scratch: identical

    windows = load_pokemon("synthetic", cache_dir=tmp_path / "c2", num_sprites=6, windows=True, val_size=1,
                           test_size=1)
    assert windows["train"].features == load_pokemon(tmp_path / "folder", cache_dir=tmp_path / "c1", windows=True,
                                                     val_size=1, test_size=1)["train"].features


def test_a_local_folder_named_synthetic_wins(tmp_path, monkeypatch):
    (tmp_path / "synthetic").mkdir()
    Image.fromarray(make_creature(0)[0], "RGBA").save(tmp_path / "synthetic" / "mine.png")
    (tmp_path / "synthetic" / "mine.txt").write_text("my own sprite")
    monkeypatch.chdir(tmp_path)
    ds = load_pokemon("synthetic", cache_dir=tmp_path / "c", val_size=0, test_size=0)
    assert ds["train"]["name"] == ["mine"]


def test_unknown_option_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="caption_columnn"):
        load_pokemon("synthetic", cache_dir=tmp_path, caption_columnn="x")
