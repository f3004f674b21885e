"""PixelTextProcessor's strip tokens (``pack``) and luma normalization: exact round trips, errors, save/load."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image
from transformers import AutoProcessor, ByT5Tokenizer

from pixeltok import PixelTextProcessor
from pixeltok.tokenization.pixel_codec import TokenFormatError
from pixeltok.tokenization.processing_pixel_text import normalize_luma, pixel_embedding_init, strip_token_names

GREYS = {"name": "grey4", "colors": [["k0", "#000000"], ["k1", "#555555"], ["k2", "#aaaaaa"], ["k3", "#ffffff"]]}


def make(pack=6, scan="columns", **kw):
    return PixelTextProcessor(ByT5Tokenizer(), palette=GREYS, layout="raster", scan=scan, max_side=32, pack=pack,
                              **kw)


@pytest.fixture(scope="module")
def proc():
    return make()


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 32), w=st.integers(1, 32), pack=st.sampled_from([2, 3, 5, 6]),
       scan=st.sampled_from(["rows", "columns"]), seed=st.integers(0, 2**16))
def test_strips_round_trip_exactly_for_any_size(h, w, pack, scan, seed):
    p = make(pack, scan)
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ids = p.image_ids(img)
    length, rows = (h, w) if scan == "columns" else (w, h)
    assert len(ids) == 3 + rows * -(-length // pack)  # header + ceil(length / pack) strips per scan line
    batch = p(text=["<image> x"], images=[img])
    back = p.decode_images(batch["input_ids"][0])[0]
    assert np.array_equal(np.asarray(back), np.asarray(p.quantize(img)))
    assert p.decode(batch["input_ids"][0]) == "<image> x</s>"


def test_a_word_image_is_six_times_shorter_than_one_token_per_pixel():
    img = np.full((12, 40, 3), 255, np.uint8)
    img[3:9, 5:30] = 0
    kw = dict(palette=GREYS, layout="raster", scan="columns", max_side=40)
    one, strips = PixelTextProcessor(ByT5Tokenizer(), **kw), PixelTextProcessor(ByT5Tokenizer(), **kw, pack=6)
    assert one.num_image_tokens(img) == 2 + 3 + 40 * 13 and strips.num_image_tokens(img) == 2 + 3 + 40 * 2


def test_strip_tokens_name_their_pixels_in_order():
    names = strip_token_names(4, 3)
    assert len(names) == 64 and names[0] == "<px_s_000>" and names[1] == "<px_s_001>" and names[-1] == "<px_s_333>"
    assert strip_token_names(16, 1)[10] == "<px_s_a>"


def test_normalize_maps_any_polarity_to_dark_ink_on_white():
    rng = np.random.default_rng(0)
    text = np.zeros((12, 40), bool)
    text[4:8, 5:35:3] = True
    for fg, bg in [(200, 150), (40, 120), (10, 250)]:
        g = np.where(text, fg, bg).astype(np.float32) + rng.normal(0, 2, text.shape)
        n = normalize_luma(np.clip(g, 0, 255).astype(np.uint8))
        assert n[~text].mean() > 240 and n[text].mean() < 30, (fg, bg)
    assert (normalize_luma(np.full((5, 5), 77, np.uint8)) == 255).all()  # no contrast: blank


def test_normalized_processor_output_is_the_same_for_inverted_colours():
    p = make(normalize=True)
    text = np.zeros((12, 30), bool)
    text[3:9, 4:26:2] = True
    dark_on_light = np.where(text[..., None], [20, 30, 200], [250, 240, 200]).astype(np.uint8)
    light_on_dark = np.where(text[..., None], [250, 250, 90], [30, 10, 60]).astype(np.uint8)
    assert np.array_equal(p.image_ids(dark_on_light), p.image_ids(light_on_dark))


def test_pack_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs layout='raster'"):
        PixelTextProcessor(ByT5Tokenizer(), palette=GREYS, layout="runs", pack=2)
    with pytest.raises(ValueError, match="at most 16 colours"):
        PixelTextProcessor(ByT5Tokenizer(), palette="nes55", layout="raster", pack=2)
    with pytest.raises(ValueError, match="pack must be an int"):
        make(pack=0)
    p = make()
    ids = p(text=["<image>"], images=[np.zeros((12, 12, 3), np.uint8)])["input_ids"][0]
    with pytest.raises(TokenFormatError, match="strip tokens where"):
        p.decode_images(ids[:-3] + ids[-2:])  # one strip missing
    bad = list(ids)
    bad[5] = p.tokenizer.convert_tokens_to_ids("a")
    with pytest.raises(TokenFormatError, match="is not a strip token"):
        p.decode_images(bad)


def test_transparency_is_composited_over_white_with_strips(proc):
    rgba = np.zeros((12, 10, 4), np.uint8)
    rgba[..., 3] = 0
    assert np.array_equal(np.asarray(proc.quantize(rgba).convert("RGB")), np.full((12, 10, 3), 255))


def test_save_load_keeps_pack_normalize_and_ids(tmp_path):
    p = make(normalize=True, image_height=12, crop=True)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 50, 3), dtype=np.uint8))
    p.save_pretrained(tmp_path)
    q = AutoProcessor.from_pretrained(tmp_path)
    assert (q.pack, q.normalize, q.grayscale, q.crop) == (6, True, True, True)
    assert np.array_equal(q.image_ids(img), p.image_ids(img))
    assert len(q.tokenizer) == len(p.tokenizer)


def test_structured_strip_embeddings_put_similar_strips_close(proc):
    vecs = pixel_embedding_init(proc, 64)
    tid = {n: proc.tokenizer.convert_tokens_to_ids(n) for n in ("<px_s_333333>", "<px_s_333332>", "<px_s_000000>")}
    a, b, c = (vecs[tid[n]] for n in ("<px_s_333333>", "<px_s_333332>", "<px_s_000000>"))
    cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
    assert cos(a, b) > 0.8 > cos(a, c)
    assert len(vecs) >= 4 ** 6


def word_image(fg, bg, height=20, width=60, box=(12, 17, 20, 44), sigma=0.0, seed=0):
    """A ``height`` x ``width`` image of background ``bg`` with a block of 'letters' (vertical strokes) of ``fg``."""
    g = np.full((height, width), float(bg))
    r0, r1, c0, c1 = box
    g[r0:r1, c0:c1:3] = fg
    g[r0:r1, c0 + 1:c1:3] = fg
    g += np.random.default_rng(seed).normal(0, sigma, g.shape)
    return np.repeat(np.clip(np.rint(g), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("fg, bg, sigma", [(0, 255, 0), (230, 30, 0), (110, 150, 12)])
def test_ink_box_finds_small_text_in_any_polarity_and_noise(fg, bg, sigma):
    from pixeltok.image_io import ink_box

    rows, cols = ink_box(word_image(fg, bg, sigma=sigma))
    # ink rows 12..16, columns 20..42; margin 1 + 8% of 5 rows = 1 px (noise may add a pixel)
    assert 10 <= rows.start <= 11 and 17 <= rows.stop <= 19 and 18 <= cols.start <= 19 and 43 <= cols.stop <= 45
    flat = np.full((10, 10, 3), 77, np.uint8)
    assert ink_box(flat) == (slice(0, 10), slice(0, 10))  # no contrast: kept whole


def test_crop_makes_a_small_word_fill_the_height():
    small = word_image(0, 255)  # 5 px of ink in a 20 px image
    kw = dict(palette=GREYS, layout="raster", scan="columns", max_side=96, pack=6, normalize=True, image_height=12)
    plain, cropped = PixelTextProcessor(ByT5Tokenizer(), **kw), PixelTextProcessor(ByT5Tokenizer(), **kw, crop=True)
    ink_rows = lambda p: int((np.asarray(p.quantize(small).convert("L")) < 128).any(1).sum())  # noqa: E731
    assert ink_rows(plain) <= 4 and ink_rows(cropped) >= 8
    with pytest.raises(ValueError, match="crop=True needs image_height"):
        make(crop=True)
