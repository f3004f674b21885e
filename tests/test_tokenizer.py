"""PixelTokenizer: exact inverse for every palette/layout, HF behaviour, inputs of every kind, and bad input."""

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoTokenizer

import pixeltok
from pixeltok import ImageInputError, PixelTokenizer, PixelTokenizerFast
from pixeltok.tokenization import TokenFormatError, get_palette

PALETTES = ["named128", "nes55"]
LAYOUTS = ["grouped", "raster", "runs"]
_TOKS: dict = {}


def tok(palette="named128", layout="grouped", fast=False, max_side=128):
    key = (palette, layout, fast, max_side)
    if key not in _TOKS:
        _TOKS[key] = (PixelTokenizerFast if fast else PixelTokenizer)(palette=palette, layout=layout, max_side=max_side)
    return _TOKS[key]


def sprite(h, w, seed=0, n_colors=6, transparent=True):
    """A sprite-like RGBA image: few colours, blocky regions, transparent background."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (n_colors, 4), dtype=np.uint8)
    colours[:, 3] = 255
    if transparent:
        colours[0, 3] = 0
    cells = rng.integers(0, n_colors, (max(1, h // 3 + 1), max(1, w // 3 + 1)))
    idx = np.kron(cells, np.ones((3, 3), dtype=int))[:h, :w]
    return colours[idx]


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


images = st.builds(
    lambda h, w, seed, kind: (np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
                              if kind == "noise" else sprite(h, w, seed)),
    st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31), st.sampled_from(["noise", "sprite"]))


@pytest.mark.parametrize("palette", PALETTES)
@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(img=images)
def test_exact_inverse_ids_and_text(palette, layout, img):
    t = tok(palette, layout)
    q = t.quantize(img)
    ids = t.encode_image(img)
    assert same(t.decode_image(ids), q)
    text = t.image_to_text(img)
    assert same(t.text_to_image(text), q)
    # the text form is the tokenizer's own text: calling the tokenizer on it gives the same ids, decoding gives it back
    assert t(text)["input_ids"] == ids
    assert t.decode(ids, skip_special_tokens=True) == text
    # quantization is idempotent: re-encoding the decoded image gives identical tokens
    assert t.encode_image(q) == ids


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("hw", [(1, 1), (1, 37), (37, 1), (17, 31), (128, 128), (128, 3)])
def test_odd_and_max_sizes(layout, hw):
    t = tok("nes55", layout)
    img = sprite(*hw, seed=sum(hw))
    ids = t.encode_image(img)
    out = t.decode_image(ids)
    assert out.size == (hw[1], hw[0])
    assert same(out, t.quantize(img))
    transparent = img[..., 3] < 128
    assert out.mode == ("RGBA" if transparent.any() else "RGB")  # transparency survives
    assert np.array_equal(np.asarray(out.convert("RGBA"))[..., 3] == 0, transparent)


@settings(max_examples=30, deadline=None)
@given(img=images, palette=st.sampled_from(PALETTES), layout=st.sampled_from(LAYOUTS))
def test_slow_and_fast_agree(img, palette, layout):
    slow, fast = tok(palette, layout), tok(palette, layout, fast=True)
    text = slow.image_to_text(img)
    assert fast.image_to_text(img) == text
    assert slow(text)["input_ids"] == fast(text)["input_ids"] == slow.encode_image(img) == fast.encode_image(img)
    ids = fast(text)["input_ids"]
    assert fast.decode(ids, skip_special_tokens=True) == slow.decode(ids, skip_special_tokens=True) == text
    assert slow.get_vocab() == fast.get_vocab()


def test_text_format_is_readable():
    img = np.zeros((2, 3, 4), np.uint8)
    img[..., 3] = 255
    img[0, 1] = img[1, 0] = img[1, 1] = img[1, 2] = (255, 0, 0, 255)
    t = tok("named128", "grouped")
    assert t.image_to_text(img) == "w3 h2\nc_black 0_0, 2_0\nc_red 1_0, 0_1, 1_1, 2_1\n"
    assert tok("named128", "runs").image_to_text(img) == "w3 h2\nc_black 0_0, 2_0\nc_red 1_0, 0_1+2\n"
    assert tok("named128", "raster").image_to_text(img) == "w3 h2\nc_black c_red c_black\nc_red c_red c_red\n"
    assert t.tokenize("c_red 0_1, 0_14, 12_1") == ["c_red", "0_", "1,", "0_", "14,", "12_", "1"]


def test_runs_shorter_than_grouped_on_sprites():
    t_g, t_r = tok("named128", "grouped"), tok("named128", "runs")
    g = sum(len(t_g.encode_image(sprite(32, 32, s))) for s in range(10))
    r = sum(len(t_r.encode_image(sprite(32, 32, s))) for s in range(10))
    assert r <= 0.5 * g


def test_quantize_is_nearest_in_lab():
    from pixeltok.tokenization.palettes import rgb_to_lab

    pal = get_palette("named128")
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    idx = pal.quantize_indices(rgba).reshape(-1)
    lab = rgb_to_lab(rgba[..., :3].reshape(-1, 3))
    d = ((lab[:, None] - rgb_to_lab(pal.colors)[None]) ** 2).sum(-1)
    chosen, best = d[np.arange(len(d)), idx], d.min(1)
    assert np.allclose(chosen, best)  # exact nearest colour, not an approximation
    # palette colours map to themselves
    cols = np.dstack([pal.colors[None], np.full((1, len(pal), 1), 255, np.uint8)])
    assert np.array_equal(pal.quantize_indices(cols)[0], np.arange(len(pal)))


# ---------------------------------------------------------------------------------------------------
# inputs of every kind
def _modes():
    base = Image.fromarray(sprite(9, 13, seed=3))
    p = base.convert("RGB").quantize(8)
    p.info["transparency"] = 0
    i16 = Image.fromarray((np.arange(9 * 13, dtype=np.uint16).reshape(9, 13) * 500))
    return {"RGB": base.convert("RGB"), "RGBA": base, "L": base.convert("L"), "LA": base.convert("LA"),
            "P": p, "I;16": i16, "CMYK": base.convert("RGB").convert("CMYK"), "1": base.convert("1")}


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "I;16", "CMYK", "1"])
def test_pil_modes(mode):
    im = _modes()[mode]
    t = tok("named128", "runs")
    assert same(t.decode_image(t.encode_image(im)), t.quantize(im))
    q = np.asarray(t.quantize(im).convert("RGBA"))
    if mode in ("RGBA", "LA", "P"):
        assert (q[..., 3] == 0).any()
    if mode == "I;16":  # high byte kept
        expect = (np.asarray(im, dtype=np.uint32) >> 8).astype(np.uint8)
        gray = np.dstack([expect] * 3 + [np.full_like(expect, 255)])
        assert np.array_equal(q, np.asarray(t.quantize(gray).convert("RGBA")))


def test_array_tensor_and_path_inputs(tmp_path):
    t = tok()
    rgb = sprite(7, 5, seed=9)[..., :3]
    ref = t.encode_image(rgb)
    assert t.encode_image(np.dstack([rgb, np.full((7, 5), 255, np.uint8)])) == ref
    assert t.encode_image(torch.from_numpy(rgb).permute(2, 0, 1)) == ref
    assert t.encode_image(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255) == ref
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert t.encode_image(tmp_path / "a.png") == ref
    assert t.encode_image(str(tmp_path / "a.png")) == ref
    gray = rgb[..., 0]
    assert t.encode_image(gray) == t.encode_image(np.dstack([gray] * 3))


def test_batched_encode_and_decode():
    t = tok("nes55", "runs")
    imgs = [sprite(5, 9, 1), sprite(12, 4, 2), sprite(1, 1, 3)]
    enc = t.encode_images(imgs, return_tensors="pt", padding=True)
    assert enc["input_ids"].shape == enc["attention_mask"].shape
    lengths = [len(t.encode_image(i)) for i in imgs]
    assert enc["attention_mask"].sum(1).tolist() == lengths
    assert enc["input_ids"].shape[1] == max(lengths)
    for out, im in zip(t.decode_images(enc["input_ids"]), imgs):
        assert same(out, t.quantize(im))
    # left padding works too
    t_left = PixelTokenizer(palette="nes55", layout="runs", padding_side="left")
    enc = t_left.encode_images(imgs, return_tensors="np")
    assert same(t_left.decode_images(enc["input_ids"])[2], t.quantize(imgs[2]))
    with pytest.raises(ValueError, match="max_length"):
        t.encode_images(imgs, max_length=5, padding="max_length")


def test_standard_tokenizer_calls_on_text():
    t = PixelTokenizer()
    texts = [t.image_to_text(sprite(4, 4, s)) for s in range(3)]
    batch = t(texts, padding=True, return_tensors="pt")
    decoded = t.batch_decode(batch["input_ids"], skip_special_tokens=True)
    assert decoded == texts
    padded = t.pad({"input_ids": [t(x)["input_ids"] for x in texts]}, return_tensors="pt")
    assert torch.equal(padded["input_ids"], batch["input_ids"])
    n = t.add_tokens(["<caption>"])
    assert n == 1 and t.convert_tokens_to_ids("<caption>") == t.vocab_size
    assert t.tokenize("<caption> c_red") == ["<caption>", "c_red"]
    assert t.pad_token == "<pad>" and t.bos_token_id is not None and t.eos_token_id is not None


# ---------------------------------------------------------------------------------------------------
# saving, loading, Auto classes, remote code
@pytest.mark.parametrize("fast", [False, True])
def test_save_load_and_auto(tmp_path, fast):
    t = tok("nes55", "runs", fast=fast, max_side=48)
    t.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["palette"] == "nes55" and cfg["layout"] == "runs" and cfg["max_side"] == 48
    for loaded in (type(t).from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert isinstance(loaded, (PixelTokenizer, PixelTokenizerFast))
        assert loaded.get_vocab() == t.get_vocab() and loaded.layout == "runs" and loaded.max_side == 48
        img = sprite(20, 30, 5)
        assert loaded.encode_image(img) == t.encode_image(img)


def test_learned_palette_saved_with_tokenizer(tmp_path):
    photos = [np.asarray(Image.open(io.BytesIO(_png(sprite(16, 16, s, n_colors=12, transparent=False))))) for s in range(4)]
    for method in ("kmeans", "mediancut"):
        t = PixelTokenizer.train_palette(photos, 8, method=method, layout="grouped")
        assert len(t.color_palette) <= 8 and t.vocab_size == PixelTokenizer(palette=t.palette).vocab_size
        t.save_pretrained(tmp_path / method)
        back = AutoTokenizer.from_pretrained(tmp_path / method)
        assert np.array_equal(back.color_palette.colors, t.color_palette.colors)
        assert back.encode_image(photos[0]) == t.encode_image(photos[0])


def _png(a):
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="PNG")
    return b.getvalue()


@pytest.mark.parametrize("fast", [False, True])
def test_trust_remote_code_in_fresh_process(tmp_path, fast):
    t = tok("named128", "grouped", fast=fast)
    t.save_pretrained(tmp_path)
    img = sprite(6, 8, 11)
    np.save(tmp_path / "img.npy", img)
    expected = t.encode_image(img)
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from transformers import AutoTokenizer
        t = AutoTokenizer.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        assert "pixeltok" not in sys.modules, "pixeltok was imported"
        print(t.encode_image(np.load({str(tmp_path / 'img.npy')!r})))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected


def test_saved_vocab_mismatch_is_refused(tmp_path):
    PixelTokenizer().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["max_side"] = 64
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="vocabulary does not match"):
        PixelTokenizer.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------------
# bad input
def test_bad_image_files(tmp_path):
    t = tok()
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageInputError, match="junk.png"):
        t.encode_image(tmp_path / "junk.png")
    good = _png(np.zeros((40, 40, 3), np.uint8) + 7)
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageInputError, match="cut.png"):
        t.encode_image(tmp_path / "cut.png")
    with pytest.raises(ImageInputError, match="no such image"):
        t.encode_image(tmp_path / "missing.png")


def test_bad_arrays_and_sizes():
    t = tok(max_side=32)
    with pytest.raises(ImageInputError, match="empty"):
        t.encode_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ImageInputError, match="uint8"):
        t.encode_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageInputError, match="shape"):
        t.encode_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageInputError, match=r"\[0, 1\]"):
        t.encode_image(torch.full((3, 4, 4), 2.0))
    big = sprite(40, 70, 1)
    with pytest.raises(ImageInputError, match="70x40.*max_side=32"):
        t.encode_image(big)
    out = t.decode_image(t.encode_image(big, resize="nearest"))
    assert out.size == (32, 18)


@pytest.mark.parametrize("text, match", [
    ("c_red 0_0\n", "missing size header"),
    ("w2 h1\nc_nosuch 0_0, 1_0\n", "unknown colour 'c_nosuch'"),
    ("w2 h1\nc_red 0_0, 1_0, 2_0\n", "outside the 2x1 image"),
    ("w2 h1\nc_red 0_0, 0_0\nc_blue 1_0\n", "duplicate pixel 0_0"),
    ("w2 h2\nc_red 0_0, 1_0\n", "not covered"),
    ("w2 h1\nc_red 0_0 1_0\n", "line 2: malformed grouped line"),
    ("w2 h1\nc_red 0_0, 1_0", "not ended by a newline"),
    ("w2 h1\nc_red 0_0, 1_0\n<pad>\n", "unexpected token '<pad>'"),
    ("w2 h1\nc_red 0_0, 999_0\n", "out of range"),
    ("w2 h1\nc_red 0_0, 1_0 ???\n", "unrecognised token '\\?\\?\\?'"),
])
def test_malformed_text(text, match):
    with pytest.raises(TokenFormatError, match=match):
        tok().text_to_image(text)


def test_decoding_is_canonical_unless_asked_otherwise():
    t, r = tok("named128", "grouped"), tok("named128", "runs")
    for tk, text, match in [(t, "w2 h1\nc_red 1_0, 0_0\n", "got '1_' where it has '0_'"),
                            (t, "w2 h1\nc_red 1_0\nc_black 0_0\n", "got 'c_red' where it has 'c_black'"),
                            (t, "w2 h1\nc_red 0_0\nc_red 1_0\n", "line 2: not the canonical grouped"),
                            (r, "w3 h1\nc_red 0_0, 1_0, 2_0\n", "runs of one colour merged")]:
        with pytest.raises(TokenFormatError, match=match):
            tk.text_to_image(text)
        img = tk.text_to_image(text, canonical=False)  # e.g. a model's output that lists pixels in another order
        assert same(tk.text_to_image(tk.image_to_text(img)), img)
        assert same(tk.decode_image(tk(text)["input_ids"], canonical=False), img)


def test_malformed_raster_and_runs():
    with pytest.raises(TokenFormatError, match="row 1 has 1 pixels"):
        tok(layout="raster").text_to_image("w2 h2\nc_red c_red\nc_red\n")
    with pytest.raises(TokenFormatError, match="outside the 3x1 image"):
        tok(layout="runs").text_to_image("w3 h1\nc_red 1_0+2\n")
    with pytest.raises(TokenFormatError, match="empty"):
        tok().decode_image([tok().bos_token_id, tok().eos_token_id])


@settings(max_examples=200, deadline=None)
@given(data=st.data(), layout=st.sampled_from(LAYOUTS))
def test_random_token_sequences_never_silently_wrong(data, layout):
    """Edited id sequences either raise TokenFormatError or decode to an image of the header's size that re-encodes
    to exactly those ids (decoding is canonical: nothing is silently reordered or repaired)."""
    t = tok("nes55", layout, max_side=8)
    base = t.encode_image(sprite(3, 4, data.draw(st.integers(0, 1000))), add_special_tokens=False)
    ops = data.draw(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, t.vocab_size - 1)), max_size=3))
    ids = list(base)
    for pos, new in ops:
        ids[pos] = new
    try:
        img = t.decode_image(ids)
    except TokenFormatError:
        return
    header = t.convert_ids_to_tokens(ids[:2])
    assert img.size == (int(header[0][1:]), int(header[1][1:]))
    assert t.encode_image(img, add_special_tokens=False) == ids


# ---------------------------------------------------------------------------------------------------
# the Hub (a real Hub-compatible server on 127.0.0.1, see tests/hub_server.py)
def test_push_to_hub_and_auto_load(hub_repo_id):
    t = PixelTokenizer.train_palette([sprite(16, 16, s, n_colors=10, transparent=False) for s in range(3)], 6,
                                     layout="runs", max_side=40)
    t.push_to_hub(hub_repo_id, commit_message="learned-palette tokenizer")
    loaded = AutoTokenizer.from_pretrained(hub_repo_id)
    assert isinstance(loaded, (PixelTokenizer, PixelTokenizerFast))
    assert loaded.get_vocab() == t.get_vocab() and loaded.layout == "runs" and loaded.max_side == 40
    img = sprite(30, 33, 4)
    assert loaded.encode_image(img) == t.encode_image(img)
    assert same(loaded.decode_image(t.encode_image(img)), t.quantize(img))


# ---------------------------------------------------------------------------------------------------
# hardening: learned palettes of any size survive save/reload with identical ids
def _random_palette(n: int, rng) -> "pixeltok.Palette":
    packed = rng.choice(1 << 24, n, replace=False)
    rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], -1).astype(np.uint8)
    return pixeltok.Palette("learned", tuple(f"k{i}" for i in range(n)), rgb)


def test_learned_palette_reload_identity_every_size(tmp_path):
    """Sizes 2..256 (names k0..k255 sort as strings from k10 on): folders saved by the slow and the fast class,
    reloaded through AutoTokenizer (transformers 5 always picks the fast class) and through the slow class's own
    from_pretrained (which used to raise "vocabulary does not match"), keep the vocabulary, colours and encoding.
    max_side=16 keeps each vocabulary small and fits an image of every palette colour, whose quantization is the
    identity, so the expected ids come from the index grid without building a lookup table."""
    rng = np.random.default_rng(0)
    for n in range(2, 257):
        pal = _random_palette(n, rng)
        idx = np.resize(np.arange(n, dtype=np.int16), (16, 16))  # every colour at least once
        img = pal.rgba[idx]
        for cls in (PixelTokenizer, PixelTokenizerFast):
            t = cls(palette=pal, layout="runs", max_side=16)
            expected = [t.bos_token_id, *t._pixel_vocab.encode(idx, "runs").tolist(), t.eos_token_id]
            folder = tmp_path / f"{n}-{cls.__name__}"
            t.save_pretrained(folder)
            loaded = [AutoTokenizer.from_pretrained(folder)] + ([PixelTokenizer.from_pretrained(folder)] if cls is PixelTokenizer else [])
            for back in loaded:
                assert back.get_vocab() == t.get_vocab(), (n, cls, type(back))
                assert back.color_palette.names == pal.names, (n, cls, type(back))
                assert np.array_equal(back.color_palette.colors, pal.colors), (n, cls, type(back))
                assert back.encode_image(img) == expected, (n, cls, type(back))


@pytest.mark.parametrize("fast", [False, True])
def test_legacy_string_sorted_palette_config_is_repaired(tmp_path, fast):
    """Folders saved before the fix hold the palette as a JSON object sorted as strings: reload restores the ids,
    from the saved vocabulary (vocab.json / tokenizer.json) or, without one, train_palette's k<i> order."""
    pal = _random_palette(12, np.random.default_rng(1))
    t = (PixelTokenizerFast if fast else PixelTokenizer)(palette=pal, max_side=8)
    t.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["palette"] = {"name": "learned", "colors": dict(sorted(cfg["palette"]["colors"]))}  # the old, sorted form
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg, sort_keys=True))
    img = pal.rgba[np.arange(12).reshape(3, 4)]
    for back in (type(t).from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert back.get_vocab() == t.get_vocab() and back.encode_image(img) == t.encode_image(img)
    # names that are not train_palette's and no vocabulary: the mapping's own order is all there is
    renamed = pixeltok.Palette("mine", tuple(f"z{i}" for i in range(12)), pal.colors)
    d = renamed.to_dict()
    assert pixeltok.Palette.from_dict({"name": "mine", "colors": dict(d["colors"])}).names == renamed.names


def test_palette_dict_form_keeps_order_under_sorted_json():
    pal = _random_palette(30, np.random.default_rng(2))
    back = pixeltok.Palette.from_dict(json.loads(json.dumps(pal.to_dict(), sort_keys=True)))
    assert back.names == pal.names and np.array_equal(back.colors, pal.colors)
    with pytest.raises(ValueError, match="malformed palette"):
        pixeltok.Palette.from_dict({"name": "x", "colors": [["k0", "red"]]})


# ---------------------------------------------------------------------------------------------------
# hardening: errors that say what to do, and telling a text's palette/layout from the text
def test_too_large_error_names_python_and_command_line_forms():
    with pytest.raises(ImageInputError, match=r"640x427.*resize='nearest'\|'box'\|'lanczos' \(command line: --resize nearest\)"):
        tok().encode_image(np.zeros((427, 640, 3), np.uint8))


@pytest.mark.parametrize("palette", PALETTES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_sniff_text_format_every_palette_and_layout(palette, layout):
    from pixeltok.tokenization import sniff_text_format

    img = sprite(9, 11, seed=4)  # blocky: runs texts do hold x_y+n runs
    text = tok(palette, layout).image_to_text(img)
    assert sniff_text_format(text) == {"palette": palette, "layout": layout}


def test_sniff_text_format_edge_cases():
    from pixeltok.tokenization import sniff_text_format

    clear = np.zeros((2, 3, 4), np.uint8)  # fully transparent: any palette decodes it the same
    assert sniff_text_format(tok("nes55", "raster").image_to_text(clear)) == {"palette": None, "layout": "raster"}
    alternating = np.zeros((1, 4, 3), np.uint8)
    alternating[0, 1::2] = 255  # no run of two: a runs text that is exactly the grouped text
    text = tok("named128", "runs").image_to_text(alternating)
    assert text == tok("named128", "grouped").image_to_text(alternating)
    assert sniff_text_format(text)["layout"] == "grouped"
    learned = PixelTokenizer(palette=_random_palette(5, np.random.default_rng(3)))
    with pytest.raises(TokenFormatError, match="learned palette.*--tokenizer"):
        sniff_text_format(learned.image_to_text(sprite(4, 4, 1, transparent=False)))
    with pytest.raises(TokenFormatError, match="no colour tokens"):
        sniff_text_format("hello world\n")
    with pytest.raises(TokenFormatError, match="not all in one built-in palette"):
        sniff_text_format("w2 h1\nc_red 0_0\nc_nes0d 1_0\n")


def test_sniff_text_format_imports_without_transformers_or_torch():
    """The CLI sniffs before it builds a tokenizer: the numpy-only modules must not pull in transformers/torch."""
    pkg_dir = str(pixeltok.__path__[0])
    code = textwrap.dedent(f"""
        import sys, types
        stub = types.ModuleType("pixeltok"); stub.__path__ = [{pkg_dir!r}]; sys.modules["pixeltok"] = stub
        from pixeltok.tokenization import sniff_text_format
        import pixeltok.tokenization.pixel_codec, pixeltok.tokenization.palettes
        print(sniff_text_format("w1 h1\\nc_nes0d 0_0\\n"))
        heavy = sorted(m for m in ("transformers", "torch", "tokenizers") if m in sys.modules)
        assert not heavy, heavy
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'nes55'" in out.stdout and "'grouped'" in out.stdout


def test_decoding_text_of_other_settings_names_them():
    text = tok("nes55", "runs").image_to_text(sprite(6, 6, 2))
    with pytest.raises(TokenFormatError, match=r"unknown colour 'c_nes.*palette='nes55', layout='runs'.*--palette nes55 --layout runs"):
        tok("named128", "grouped").text_to_image(text)
    with pytest.raises(TokenFormatError, match=r"malformed raster line.*layout='runs'.*--layout runs"):
        tok("nes55", "raster").text_to_image(text)
    with pytest.raises(TokenFormatError, match="unknown colour 'c_nosuch'") as e:  # nothing to suggest: no hint
        tok().text_to_image("w2 h1\nc_nosuch 0_0, 1_0\n")
    assert "seems to use" not in str(e.value)


# ---------------------------------------------------------------------------------------------------
# hardening: hostile or odd inputs become ImageInputError / TokenFormatError
def _png_claiming(w: int, h: int) -> bytes:
    """A PNG whose IHDR (valid CRC) claims w x h, with a token IDAT: the size is read from the header alone."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _gif_claiming(w: int, h: int) -> bytes:
    import struct

    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0) + b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
            + b"\x02\x02\x44\x01\x00\x3b")


@pytest.mark.parametrize("name, data, size", [
    ("bomb.png", _png_claiming(60000, 60000), "60000x60000"),
    ("bomb.gif", _gif_claiming(65535, 65535), "65535x65535"),
    ("big.png", _png_claiming(10000, 10000), "10000x10000"),  # 1x-2x the limit: Pillow only warns
], ids=["png-60000", "gif-65535", "png-10000"])
def test_decompression_bombs_are_refused_by_size(tmp_path, name, data, size):
    from pixeltok.image_io import open_image, to_rgb_exact, to_rgba

    path = tmp_path / name
    path.write_bytes(data)
    for fn in (tok().encode_image, to_rgba, to_rgb_exact, open_image, pixeltok.compress):
        with pytest.raises(ImageInputError, match=rf"{name}.*{size}.*decompression-bomb limit"):
            fn(path)


def test_premultiplied_and_palette_alpha_modes():
    from pixeltok.image_io import to_rgba

    la = Image.new("LA", (2, 2), (100, 128)).convert("La")  # stored premultiplied: 50 at alpha 128
    assert to_rgba(la)[0, 0].tolist() == [99, 99, 99, 128]  # un-premultiplied (Pillow rounds 50*255/128 down)
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 0, 255])
    pa = Image.frombytes("PA", (2, 1), bytes([0, 10, 1, 200]))  # (index, alpha) per pixel
    pa.putpalette(p.getpalette())
    assert to_rgba(pa).tolist() == [[[255, 0, 0, 10], [0, 0, 255, 200]]]
    t = tok()
    assert same(t.decode_image(t.encode_image(la)), t.quantize(la))


@pytest.mark.parametrize("image", [
    torch.zeros(3, 0, 4), torch.zeros(1, 5, 0, dtype=torch.uint8), Image.new("I;16", (0, 3)), Image.new("I", (3, 0)),
    Image.new("RGBA", (0, 0)), np.zeros((4, 0, 3), np.uint8)], ids=["tensor-float", "tensor-uint8", "I;16", "I", "RGBA", "numpy"])
def test_zero_size_images_are_refused(image):
    from pixeltok.image_io import to_rgb_exact

    with pytest.raises(ImageInputError, match="empty image"):
        tok().encode_image(image)
    with pytest.raises(ImageInputError, match="empty image"):
        to_rgb_exact(image)


def test_lazily_opened_corrupt_pil_image(tmp_path):
    good = _png(np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3))
    im = Image.open(io.BytesIO(good[: len(good) // 2]))  # header parses; the pixels fail on first access
    with pytest.raises(ImageInputError, match="truncated"):
        tok().encode_image(im)


@pytest.mark.parametrize("ids, match", [
    ([2**64], "too large"), ([2**65, 3], "too large"), (["a"], "integers"), ([[1, 2], [3]], "flat sequence"),
    ([5.0, 3.0], "integers, got dtype float64"), (np.array([1.5]), "float64"), (torch.tensor([1.0]), "float32"),
    ([True, False], "bool"), ([1, None], "NoneType"), ([-1], "outside the vocabulary"), ([[1, 2], [3, 4]], "shape"),
    (np.array([2**63], np.uint64), "too large"),
])
def test_bad_ids_are_refused(ids, match):
    with pytest.raises(TokenFormatError, match=match):
        tok().decode_image(ids)


def test_integer_id_containers_all_decode_alike():
    t = tok("nes55", "runs")
    ids = t.encode_image(sprite(5, 6, 3))
    ref = t.decode_image(ids)
    for form in (np.array(ids, np.int32), np.array(ids, np.uint16), torch.tensor(ids), torch.tensor([ids]),
                 [np.int64(i) for i in ids], np.array(ids, dtype=object)):
        assert same(t.decode_image(form), ref)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("opts", [{}, {"padding": "max_length", "max_length": 90}, {"pad_to_multiple_of": 16},
                                  {"padding": False}])
def test_encode_images_pads_exactly_like_transformers_pad(side, opts):
    """The numpy padding of encode_images (transformers' pad walks Python lists: slower than encoding) gives what
    tokenizer.pad gives, on either side and with each padding option."""
    rng = np.random.default_rng(5)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(2, 3), (4, 5), (1, 1)]]
    tok = PixelTokenizer(palette="nes55", layout="runs")
    tok.padding_side = side
    got = tok.encode_images(imgs, return_tensors=None, **opts)
    ref = tok.pad({"input_ids": [tok.encode_image(im) for im in imgs]}, return_attention_mask=True,
                  **{"padding": True, **opts})
    assert got["input_ids"] == ref["input_ids"] and got["attention_mask"] == ref["attention_mask"]
