"""PixelBytesTokenizer, pixelize and build_windows: the unified byte + palette vocabulary and its 3x3 windows."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pixeltok.image_io import ImageInputError
from pixeltok.models.pxby.modeling_pxby import WindowState
from pixeltok.models.pxby.modeling_pxby import build_windows as torch_windows
from pixeltok.tokenization.palettes import get_palette
from pixeltok.tokenization.pixelbytes import PixelBytesTokenizer, build_windows, pixelize

NES = get_palette("nes55")
C0 = 101  # first colour id


@pytest.fixture(scope="module")
def tok():
    return PixelBytesTokenizer()


def col(i):
    return C0 + i


# --- vocabulary --------------------------------------------------------------------------------------------------------
def test_vocabulary_layout(tok):
    assert tok.vocab_size == len(tok) == 4 + 97 + 56 == 157
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    v = tok.get_vocab()
    assert v["\t"] == 4 and v["\n"] == 5 and v[" "] == 6 and v["~"] == 100 and v["A"] == 6 + ord("A") - 32
    assert v["<nes00>"] == 101 and v["<transparent>"] == 156
    assert [v[f"<{n}>"] for n in NES.all_names] == list(range(101, 157))


def test_text_round_trip_and_colour_tokens(tok):
    ids = tok("Hi!\t<nes2a>x")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id  # bos/eos added like transformers tokenizers
    assert ids[1:-1] == [tok.get_vocab()[c] for c in "Hi!\t"] + [tok.get_vocab()["<nes2a>"], tok.get_vocab()["x"]]
    assert tok.decode(ids, skip_special_tokens=True) == "Hi!\t<nes2a>x"


def test_caption_normalisation(tok):
    ids = tok.caption_ids("Pokémon\tline\nbreak 日")
    assert tok.decode(ids.tolist()) == "Pokemon line break <unk>"
    with pytest.raises(TypeError):
        tok.caption_ids(b"bytes")


# --- pixelize ----------------------------------------------------------------------------------------------------------
def _sprite():
    """50x50 transparent canvas, a 20x40 opaque block: left half nes16, right half nes2a, one see-through pixel."""
    a = np.zeros((50, 50, 4), np.uint8)
    a[10:30, 5:25, :3] = NES.colors[NES.index_of("nes16")]
    a[10:30, 25:45, :3] = NES.colors[NES.index_of("nes2a")]
    a[10:30, 5:45, 3] = 255
    a[10:14, 5:9, 3] = 0  # a transparent corner (one downscaled cell) inside the crop box
    return a


def test_pixelize_crop_downscale_quantize():
    idx = pixelize(_sprite(), long_side=10)
    assert idx.shape == (5, 10) and idx.dtype == np.int16
    white = NES.quantize_indices(np.array([[[255, 255, 255, 255]]], np.uint8))[0, 0]
    assert idx[0, 0] == white  # composited on white
    assert (idx[1:, :5] == NES.index_of("nes16")).all() and (idx[:, 5:] == NES.index_of("nes2a")).all()
    tok_idx = pixelize(_sprite(), long_side=10, transparency="token")
    assert tok_idx[0, 0] == 55 and (tok_idx[1:] == idx[1:]).all() and (tok_idx[0, 1:] == idx[0, 1:]).all()
    # no crop keeps the canvas; never upscale
    assert pixelize(_sprite(), long_side=25, crop=False).shape == (25, 25)
    assert pixelize(_sprite(), long_side=100).shape == (20, 40)


def test_pixelize_accepts_pil_and_rejects_bad_input():
    img = Image.fromarray(_sprite(), "RGBA")
    assert np.array_equal(pixelize(img, long_side=10), pixelize(_sprite(), long_side=10))
    empty = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(ImageInputError, match="fully transparent"):
        pixelize(empty)
    with pytest.raises(ValueError, match="transparency"):
        pixelize(_sprite(), transparency="black")
    with pytest.raises(ValueError, match="long_side"):
        pixelize(_sprite(), long_side=0)


# --- samples -----------------------------------------------------------------------------------------------------------
def test_encode_sample_layout(tok):
    grid = np.array([[0, 1, 2], [3, 4, 55]], np.int16)
    v = tok.get_vocab()
    img = [v["3"], v["x"], v["2"], 4, col(0), col(1), col(2), 4, col(3), col(4), col(55), 4, 5]
    cap = [v["a"], v[" "], v["b"], 5]
    assert tok.encode_sample(grid, "a b") == [1] + img + cap + [2]
    assert tok.encode_sample(grid, "a b", order="caption_first") == [1] + cap + img + [2]
    assert tok.encode_sample(grid, "a b", add_special_tokens=False) == img + cap
    with pytest.raises(ValueError, match="order"):
        tok.encode_sample(grid, "a", order="random")
    with pytest.raises(ValueError, match="out of range"):
        tok.encode_sample(np.array([[0, 56]], np.int64), "a")


def test_decode_sample_round_trip(tok):
    grid = np.random.default_rng(0).integers(0, 56, (6, 9)).astype(np.int16)
    for order in ("image_first", "caption_first"):
        ids = tok.encode_sample(grid, "A tiny sprite.", order=order)
        caption, image = tok.decode_sample(ids + [7, 8, 9], strict=True)  # anything after <eos> is ignored
        assert caption == "A tiny sprite."
        assert image.mode == "RGBA" and image.size == (9, 6)
        assert np.array_equal(np.asarray(image), NES.indices_to_rgba(grid))
    caption, image = tok.decode_sample(torch.tensor(tok.encode_sample(grid, "x")))
    assert caption == "x" and image.size == (9, 6)


def test_decode_sample_repairs_unequal_rows_and_strict_refuses(tok):
    ids = [1, *tok.caption_ids("cap"), 5, *tok.caption_ids("3x2"), 4, col(1), col(2), col(3), 4, col(4), 4, 5]
    caption, image = tok.decode_sample(ids)  # generated rows of unequal length: padded with transparent
    a = np.asarray(image)
    assert caption == "cap" and image.size == (3, 2)
    assert np.array_equal(a[1, 0], NES.rgba[4]) and (a[1, 1:, 3] == 0).all()
    with pytest.raises(ValueError, match="strict"):
        tok.decode_sample(ids, strict=True)
    assert tok.decode_sample(tok.caption_ids("only text").tolist()) == ("only text", None)
    with pytest.raises(ValueError, match="outside"):
        tok.decode_sample([1, 999])



@pytest.mark.parametrize("ids, match", [
    ([1, 2**64], "too large"), ([2**70], "too large"), (["a"], "integers"), ([[1, 2], [3]], "flat sequence"),
    ([1.0, 105.7], "float64"), (torch.tensor([1.0, 2.0]), "float32"), ([True], "bool"), ([1, None], "NoneType"),
    ([1, -1], "outside"), (np.array([2**63], np.uint64), "too large"),
])
def test_decode_sample_refuses_bad_ids(tok, ids, match):
    """Huge, float, string, ragged and negative ids raise ValueError naming the problem (no OverflowError, no
    silent truncation of 105.7 to a colour)."""
    with pytest.raises(ValueError, match=match):
        tok.decode_sample(ids)


def test_decode_sample_accepts_integer_containers(tok):
    ids = tok.encode_sample(np.arange(6, dtype=np.int16).reshape(2, 3), "x")
    ref = tok.decode_sample(ids)
    for form in (np.array(ids, np.int32), np.array(ids, np.uint8), torch.tensor(ids), torch.tensor([ids])):
        caption, image = tok.decode_sample(form)
        assert caption == ref[0] and np.array_equal(np.asarray(image), np.asarray(ref[1]))

def test_save_load_and_auto_tokenizer(tok, tmp_path):
    from transformers import AutoTokenizer

    from pixeltok.models.pxby import PxByConfig

    t = PixelBytesTokenizer(long_side=12, transparency="token")
    t.save_pretrained(tmp_path)
    PxByConfig().save_pretrained(tmp_path)
    for loaded in (PixelBytesTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert type(loaded) is PixelBytesTokenizer
        assert (loaded.long_side, loaded.transparency) == (12, "token")
        assert loaded.get_vocab() == t.get_vocab()
        assert loaded.encode_sample(_sprite(), "x") == t.encode_sample(_sprite(), "x")
    # a vocabulary file that does not match the layout is refused
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    vocab["!"], vocab["?"] = vocab["?"], vocab["!"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match="does not match"):
        PixelBytesTokenizer.from_pretrained(tmp_path)


# --- windows -----------------------------------------------------------------------------------------------------------
def test_windows_by_hand(tok):
    # "ab\n" then a 3-wide row, a 2-wide row, a 3-wide row (rows of unequal length)
    a, b = tok.get_vocab()["a"], tok.get_vocab()["b"]
    p = [col(i) for i in range(8)]
    ids = [a, b, 5, p[0], p[1], p[2], 4, p[3], p[4], 4, p[5], p[6], p[7], 4]
    w = build_windows(ids)
    assert w.shape == (14, 3, 3) and w.dtype == np.int64
    assert (w[:, 1:, 2] == 0).all() and (w[:, 2] == 0).all()  # nothing right of / below the centre
    assert w[0].tolist() == [[0, 0, 0], [0, a, 0], [0, 0, 0]]  # text: previous token + itself
    assert w[1].tolist() == [[0, 0, 0], [a, b, 0], [0, 0, 0]]
    assert w[3].tolist() == [[0, 0, 0], [0, p[0], 0], [0, 0, 0]]  # first row: nothing above; first pixel: no left
    assert w[4].tolist() == [[0, 0, 0], [p[0], p[1], 0], [0, 0, 0]]
    assert w[6].tolist() == [[0, 0, 0], [p[2], 4, 0], [0, 0, 0]]  # row separator: text rule
    assert w[7].tolist() == [[0, p[0], p[1]], [0, p[3], 0], [0, 0, 0]]  # first pixel of a row
    assert w[8].tolist() == [[p[0], p[1], p[2]], [p[3], p[4], 0], [0, 0, 0]]
    assert w[10].tolist() == [[0, p[3], p[4]], [0, p[5], 0], [0, 0, 0]]
    assert w[11].tolist() == [[p[3], p[4], 0], [p[5], p[6], 0], [0, 0, 0]]  # the row above is shorter
    assert w[12].tolist() == [[p[4], 0, 0], [p[6], p[7], 0], [0, 0, 0]]
    # two separators (or a segment break) between rows: not the same image, nothing above
    w2 = build_windows([p[0], 4, 4, p[1]])
    assert w2[3, 0].tolist() == [0, 0, 0]
    assert np.array_equal(tok.build_windows(ids), w)


def _random_sequences(rng, n, length):
    """Mixtures of text bytes, row/segment separators and colour runs of varying length."""
    out = []
    for _ in range(n):
        seq = []
        while len(seq) < length:
            r = rng.random()
            if r < 0.6:
                seq += list(rng.integers(C0, C0 + 56, rng.integers(1, 7)))
            elif r < 0.8:
                seq.append(4)
            elif r < 0.85:
                seq.append(5)
            else:
                seq += list(rng.integers(0, C0, rng.integers(1, 4)))
        out.append(seq[:length])
    return np.array(out, np.int64)


def test_windows_are_causal_and_match_the_torch_builder():
    rng = np.random.default_rng(1)
    seqs = _random_sequences(rng, 6, 80)
    w = build_windows(seqs)
    assert w.shape == (6, 80, 3, 3)
    assert np.array_equal(w, torch_windows(torch.from_numpy(seqs), C0, 56, 4).numpy())
    for i in range(0, 80, 7):  # the window of position i depends on ids[: i + 1] only
        assert np.array_equal(build_windows(seqs[:, : i + 1])[:, i], w[:, i])


def test_incremental_windows_equal_offline_windows():
    rng = np.random.default_rng(2)
    seqs = torch.from_numpy(_random_sequences(rng, 4, 120))
    offline = torch_windows(seqs, C0, 56, 4)
    for split in (0, 1, 17, 60, 119):  # a prompt (any cut: mid-row, after a separator...) then token by token
        st = WindowState.from_prefix(seqs[:, :split], C0, 56, 4)
        steps = torch.stack([st.step(seqs[:, t]) for t in range(split, 120)], 1)
        assert torch.equal(steps, offline[:, split:]), split
