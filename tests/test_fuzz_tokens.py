"""Bounded, reproducible fuzzing of the token decoders (PixelTokenizer text and ids, PixelBytes samples).

Inputs are real encodings of small random images, in every palette (two built-in, one learned) and layout, then
mutated: tokens deleted, duplicated, swapped, replaced or inserted (vocabulary tokens and junk), characters edited;
plus id sequences with out-of-range, negative, huge, float, bool and None entries. Property: a decode either raises
TokenFormatError (a ValueError) or returns an image that re-encodes to exactly the given tokens (canonical round
trip: nothing is silently reordered, dropped or repaired), which for unchanged-equivalent input is the quantized
original. Any other exception fails. Hypothesis runs derandomized (fixed examples in CI) without a database.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixeltok import Palette, PixelTokenizer
from pixeltok.tokenization import TokenFormatError
from pixeltok.tokenization.pixel_codec import TOKEN_RE, tokens_to_text
from pixeltok.tokenization.pixelbytes import PixelBytesTokenizer

MAX_SIDE = 6
LAYOUTS = ("grouped", "raster", "runs")
_rng = np.random.default_rng(7)
_packed = _rng.choice(1 << 24, 12, replace=False)
LEARNED = Palette("learned", tuple(f"k{i}" for i in range(12)),  # 12 colours: names k10, k11 sort before k2
                  np.stack([(_packed >> 16) & 255, (_packed >> 8) & 255, _packed & 255], -1).astype(np.uint8))
PALETTES = {"named128": "named128", "nes55": "nes55", "learned": LEARNED}
TRIED: Counter = Counter()  # inputs tried per test (reported by the hardening issue)
FUZZ = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
JUNK = ["???", "c_nosuch", "c_", "w0", "h99", "w7", "99_", "6,", "-1", "+0", "+9,", "0_0", "<unk>", "<pad>", "<bos>",
        "<eos>", "\n", "c_red", "c_nes0d", "c_k11", "c_transparent", "x", "_", ","]

_TOKS: dict = {}


def tok(palette: str, layout: str) -> PixelTokenizer:
    if (palette, layout) not in _TOKS:
        _TOKS[palette, layout] = PixelTokenizer(palette=PALETTES[palette], layout=layout, max_side=MAX_SIDE)
    return _TOKS[palette, layout]


def small_image(h: int, w: int, seed: int, kind: str) -> np.ndarray:
    """RGBA noise, or a few flat colours (so runs and long colour lines occur), some pixels transparent."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    colours = rng.integers(0, 256, (3, 4), dtype=np.uint8)
    colours[:, 3] = [0, 255, 255]
    return colours[rng.integers(0, 3, (h, w)) * (rng.random((h, w)) < 0.8)]


images = st.builds(small_image, st.integers(1, MAX_SIDE), st.integers(1, MAX_SIDE), st.integers(0, 2**32 - 1),
                   st.sampled_from(["noise", "flat"]))
settings_of = st.tuples(st.sampled_from(sorted(PALETTES)), st.sampled_from(LAYOUTS))


def _strip_special(ids: list[int], t: PixelTokenizer) -> list[int]:
    """What the decoder is documented to ignore: padding at either end, then one <bos> and one <eos>."""
    keep = [i for i, v in enumerate(ids) if v != t.pad_token_id]
    ids = ids[keep[0]:keep[-1] + 1] if keep else []
    if ids and ids[0] == t.bos_token_id:
        ids = ids[1:]
    if ids and ids[-1] == t.eos_token_id:
        ids = ids[:-1]
    return ids


def _text_tokens(text: str, t: PixelTokenizer) -> list[str]:
    vocab = t.get_vocab()
    ids = [vocab.get(x, -1) for x in TOKEN_RE.findall(text)]
    return [t.convert_ids_to_tokens(i) for i in _strip_special(ids, t)]


def _same(a, b) -> bool:
    return a.mode == b.mode and a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


# -- text ------------------------------------------------------------------------------------------------------------
def _kind(token: str) -> str:
    """Token class, so swaps and replacements can keep the grammar (and reach the order and coverage checks)."""
    return ("c" if token.startswith("c_") else "x" if token.endswith("_") else "p" if token.startswith("+")
            else "y" if token.rstrip(",").isdigit() else token)


@st.composite
def mutated_texts(draw):
    palette, layout = draw(settings_of)
    t = tok(palette, layout)
    img = draw(images)
    text = t.image_to_text(img)
    if draw(st.integers(0, 3)):  # token-level edits, re-joined with the canonical spacing
        toks = TOKEN_RE.findall(text)
        by_kind: dict[str, list[str]] = {}
        for x in t._pixel_vocab.tokens:
            by_kind.setdefault(_kind(x), []).append(x)
        for _ in range(draw(st.integers(1, 3))):
            if not toks:
                break
            i = draw(st.integers(0, len(toks) - 1))
            op = draw(st.sampled_from(["delete", "duplicate", "swap", "swap-kind", "swap-lines", "replace",
                                       "replace-kind", "insert"]))
            if op == "delete":
                del toks[i]
            elif op == "duplicate":
                toks.insert(i, toks[i])
            elif op == "swap":
                j = draw(st.integers(0, len(toks) - 1))
                toks[i], toks[j] = toks[j], toks[i]
            elif op == "swap-kind":  # e.g. two x_ tokens: same grammar, other pixels
                j = draw(st.sampled_from([k for k, x in enumerate(toks) if _kind(x) == _kind(toks[i])]))
                toks[i], toks[j] = toks[j], toks[i]
            elif op == "swap-lines":
                lines = tokens_to_text(toks).split("\n")
                a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
                lines[a], lines[b] = lines[b], lines[a]
                toks = TOKEN_RE.findall("\n".join(lines))
            elif op == "replace":
                toks[i] = draw(st.one_of(st.sampled_from(t._pixel_vocab.tokens), st.sampled_from(JUNK)))
            elif op == "replace-kind":  # e.g. one colour for another: often a valid, different image
                toks[i] = draw(st.sampled_from(by_kind.get(_kind(toks[i]), JUNK)))
            else:
                toks.insert(i, draw(st.one_of(st.sampled_from(t._pixel_vocab.tokens), st.sampled_from(JUNK))))
        out = tokens_to_text(toks)
    else:  # character-level edits on the text itself
        chars = list(text)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(chars)))
            op = draw(st.sampled_from("dic"))
            if op == "d" and i < len(chars):
                del chars[i]
            elif op == "c" and i < len(chars):
                chars.insert(i, chars[i])
            else:
                chars.insert(i, draw(st.sampled_from(list(" \n\t,_+0123456789whc<>"))))
        out = "".join(chars)
    return palette, layout, img, text, out


@settings(max_examples=1500, **FUZZ)
@given(case=mutated_texts())
def test_mutated_text_decodes_canonically_or_raises(case):
    palette, layout, img, original, text = case
    TRIED["text"] += 1
    t = tok(palette, layout)
    try:
        out = t.text_to_image(text)
    except TokenFormatError:
        TRIED["text-refused"] += 1
        return
    # success: the text is exactly (token for token) what the image encodes to: nothing was silently altered
    assert _text_tokens(text, t) == TOKEN_RE.findall(t.image_to_text(out)), (text, t.image_to_text(out))
    if _text_tokens(text, t) == TOKEN_RE.findall(original):
        assert _same(out, t.quantize(img))
    else:
        TRIED["text-mutated-valid"] += 1  # e.g. one colour replaced by another: a different, exactly described image


@settings(max_examples=300, **FUZZ)
@given(s=settings_of, img=images)
def test_unchanged_text_and_ids_decode_to_the_quantized_original(s, img):
    TRIED["unchanged"] += 1
    t = tok(*s)
    q = t.quantize(img)
    assert _same(t.text_to_image(t.image_to_text(img)), q)
    ids = t.encode_image(img)
    for form in (ids, np.array(ids, np.int32), torch.tensor(ids), [t.pad_token_id] * 2 + ids + [t.pad_token_id]):
        assert _same(t.decode_image(form), q)


# -- ids -------------------------------------------------------------------------------------------------------------
HUGE = [2**63 - 1, 2**63, 2**64, 2**64 + 5, -(2**63) - 1, 10**30]
odd_values = st.one_of(st.integers(-3, -1), st.sampled_from(HUGE), st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from([3.0, 0.0, True, False, None, "a", "7"]))


@st.composite
def mutated_ids(draw):
    palette, layout = draw(settings_of)
    t = tok(palette, layout)
    if draw(st.integers(0, 4)) == 0:  # a random sequence, mostly in the vocabulary
        ids = draw(st.lists(st.integers(0, t.vocab_size + 2), max_size=40))
    else:
        ids = list(t.encode_image(draw(images)))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, max(len(ids) - 1, 0)))
        op = draw(st.sampled_from("rrdsio"))
        if op == "r" and ids:
            ids[i] = draw(st.integers(0, t.vocab_size - 1))
        elif op == "d" and ids:
            del ids[i]
        elif op == "s" and ids:
            j = draw(st.integers(0, len(ids) - 1))
            ids[i], ids[j] = ids[j], ids[i]
        elif op == "i":
            ids.insert(i, draw(st.integers(0, t.vocab_size - 1)))
        else:  # an out-of-range, huge, float, bool, None or string entry
            ids.insert(i, draw(odd_values))
    return palette, layout, ids, draw(st.sampled_from(["list", "numpy", "torch"]))


@settings(max_examples=1500, **FUZZ)
@given(case=mutated_ids())
def test_mutated_ids_decode_canonically_or_raise(case):
    palette, layout, ids, container = case
    TRIED["ids"] += 1
    t = tok(palette, layout)
    plain_ints = all(type(v) is int for v in ids)
    form = ids
    if container != "list" and plain_ints and all(-(2**63) <= v < 2**63 for v in ids):
        form = np.array(ids, dtype=np.int64) if container == "numpy" else torch.tensor(ids, dtype=torch.int64)
    try:
        out = t.decode_image(form)
    except TokenFormatError:
        TRIED["ids-refused"] += 1
        return
    assert plain_ints, f"non-integer ids {ids!r} were accepted"
    assert all(0 <= v < t.vocab_size for v in ids), f"out-of-vocabulary ids {ids!r} were accepted"
    assert t.encode_image(out, add_special_tokens=False) == _strip_special(ids, t)


@st.composite
def pixelbytes_ids(draw):
    """Real samples (random grid and caption) with a few edits, or random sequences, including odd entries."""
    t = _pixelbytes()
    if draw(st.integers(0, 2)):
        h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        grid = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, t.num_colors, (h, w))
        ids = t.encode_sample(grid, draw(st.text("ab 1x\t", max_size=6)), order=draw(st.sampled_from(["image_first", "caption_first"])))
    else:
        ids = draw(st.lists(st.one_of(st.integers(0, t.vocab_size - 1), st.sampled_from([4, 5] + list(range(101, 157)))), max_size=60))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(ids)))
        op = draw(st.sampled_from("dirro"))
        if op == "d" and i < len(ids):
            del ids[i]
        elif op == "r" and i < len(ids):
            ids[i] = draw(st.integers(0, t.vocab_size + 3))
        elif op == "o":
            ids.insert(i, draw(odd_values))
        else:
            ids.insert(i, draw(st.sampled_from([0, 1, 2, 3, 4, 5, 101, 156])))
    return ids


@settings(max_examples=600, **FUZZ)
@given(ids=pixelbytes_ids(), strict=st.booleans())
def test_pixelbytes_decode_sample_returns_or_raises_value_error(ids, strict):
    TRIED["pixelbytes"] += 1
    t = _pixelbytes()
    try:
        caption, image = t.decode_sample(ids, strict=strict)
    except ValueError:
        TRIED["pixelbytes-refused"] += 1
        return
    assert all(type(v) is int and 0 <= v < t.vocab_size for v in ids), f"bad ids {ids!r} were accepted"
    assert isinstance(caption, str) and (image is None or (image.mode == "RGBA" and min(image.size) >= 1))


_PB: list = []


def _pixelbytes() -> PixelBytesTokenizer:
    if not _PB:
        _PB.append(PixelBytesTokenizer())
    return _PB[0]


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print(f"\nfuzz inputs tried: {dict(TRIED)} (total {sum(v for k, v in TRIED.items() if '-' not in k)})")
