"""PixelTextProcessor: text + pixel tokens over any HF text tokenizer (ByT5 and a byte-level BPE trained here)."""

import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image
from transformers import AutoProcessor, ByT5Tokenizer, PreTrainedTokenizerFast

import pixeltok
from pixeltok import PixelTextProcessor, PixelTokenizer
from pixeltok.tokenization import TokenFormatError
from pixeltok.tokenization.processing_pixel_text import pixel_embedding_init, resize_embeddings_for_pixels


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on real text (the standard library's own sources), as a user's own tokenizer."""
    from tokenizers import ByteLevelBPETokenizer

    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:40]
    bpe = ByteLevelBPETokenizer()
    bpe.train(files, vocab_size=600, min_frequency=2, special_tokens=["<s>", "</s>", "<pad>"], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


TOKENIZERS = {"byt5": ByT5Tokenizer, "bpe": bpe_tokenizer}


def image(seed: int, h: int = 11, w: int = 17, alpha: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 4 if alpha else 3), dtype=np.uint8)
    if alpha:
        a[..., 3] = np.where(rng.random((h, w)) < 0.3, 0, 255)
    return a


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def text_tokenizer(request):
    return request.param, TOKENIZERS[request.param]


@pytest.mark.parametrize("layout,scan", [("raster", "rows"), ("grouped", "rows"), ("runs", "rows"),
                                         ("raster", "columns"), ("runs", "columns")])
def test_call_expands_each_placeholder_and_round_trips(text_tokenizer, layout, scan):
    name, make = text_tokenizer
    proc = PixelTextProcessor(make(), palette="nes55", layout=layout, max_side=32, scan=scan)
    imgs = [image(1), image(2, 5, 30, alpha=True), image(3, 20, 3)]
    texts = ["<image> reads: hello", "two <image> and <image> here"]
    batch = proc(text=texts, images=imgs, return_tensors="pt", padding=True)
    assert set(batch) == {"input_ids", "attention_mask", "image_mask"}
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == batch["image_mask"].shape
    q = PixelTokenizer(palette="nes55", layout=layout, max_side=32)
    for row, text, row_imgs in zip(range(2), texts, [imgs[:1], imgs[1:]]):
        ids = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        assert proc.decode(ids, skip_special_tokens=True) == text.replace("<image>", "<image>")
        back = proc.decode_images(ids)
        assert len(back) == len(row_imgs)
        for got, orig in zip(back, row_imgs):
            assert np.array_equal(np.asarray(got), np.asarray(q.quantize(orig)))
        # the mask covers exactly the image spans: <boi> + pixel ids + <eoi> per image
        mask = batch["image_mask"][row][batch["attention_mask"][row].bool()]
        assert int(mask.sum()) == sum(proc.num_image_tokens(im) for im in row_imgs)
        # pixel ids equal the PixelTokenizer's own encoding, mapped into the text vocabulary
        inner = ids[mask.bool()].numpy()
        inner = inner[(inner != proc.boi_token_id) & (inner != proc.eoi_token_id)]
        expected = np.concatenate([q.encode_image(im if scan == "rows" else np.ascontiguousarray(
            np.asarray(q.quantize(im)).swapaxes(0, 1)), add_special_tokens=False) for im in row_imgs])
        assert np.array_equal(proc._to_pixel[inner], expected)


def test_text_ids_are_the_tokenizers_own(text_tokenizer):
    name, make = text_tokenizer
    plain = make()
    proc = PixelTextProcessor(make(), palette="named128", layout="runs", max_side=16)
    text = "no image, just text 12345"
    assert proc(text=text)["input_ids"][0] == plain(text)["input_ids"]  # adding pixel tokens changes no text id
    assert proc.tokenizer.image_token_id == proc.image_token_id and proc.tokenizer.image_token == "<image>"


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.text(alphabet="abcxyz 019.,!?", max_size=12), min_size=1, max_size=4),
       sizes=st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=0, max_size=3),
       seed=st.integers(0, 2**16), layout=st.sampled_from(["raster", "grouped", "runs"]))
def test_property_text_and_images_round_trip_exactly(words, sizes, seed, layout):
    proc = _PROCS[layout]
    imgs = [image(seed + i, h, w, alpha=i % 2 == 1) for i, (h, w) in enumerate(sizes)]
    parts = [words[i % len(words)] for i in range(len(imgs) + 1)]
    text = "".join(p + "<image>" for p in parts[:-1]) + parts[-1]
    ids = proc(text=text, images=imgs, add_special_tokens=False)["input_ids"][0]
    assert proc.decode(ids) == proc.tokenizer.decode(proc.tokenizer(text, add_special_tokens=False)["input_ids"])
    back = proc.decode_images(ids)
    q = proc.pixel_tokenizer
    assert len(back) == len(imgs)
    for got, orig in zip(back, imgs):
        assert np.array_equal(np.asarray(got), np.asarray(q.quantize(orig)))


_PROCS = {lay: PixelTextProcessor(ByT5Tokenizer(), palette="nes55", layout=lay, max_side=12)
          for lay in ("raster", "grouped", "runs")}


def test_save_load_keeps_every_id_and_auto_processor_returns_it(tmp_path, text_tokenizer):
    name, make = text_tokenizer
    pal = PixelTokenizer.train_palette([image(9, 16, 16)], 12).color_palette  # 12 learned colours, k0..k11
    proc = PixelTextProcessor(make(), palette=pal, layout="grouped", max_side=24)
    proc.save_pretrained(tmp_path / "p")
    again = AutoProcessor.from_pretrained(tmp_path / "p")
    assert type(again) is PixelTextProcessor and again.layout == "grouped" and again.max_side == 24
    assert again.tokenizer.get_vocab() == proc.tokenizer.get_vocab()
    assert (again.image_token_id, again.boi_token_id, again.eoi_token_id) == \
        (proc.image_token_id, proc.boi_token_id, proc.eoi_token_id)
    imgs = [image(4), image(5, 3, 9)]
    a = proc(text=["<image> a", "b <image>"], images=imgs)["input_ids"]
    assert again(text=["<image> a", "b <image>"], images=imgs)["input_ids"] == a


def test_trust_remote_code_loads_in_a_process_without_pixeltok(tmp_path):
    proc = PixelTextProcessor(ByT5Tokenizer(), palette="nes55", layout="runs", max_side=20)
    proc.save_pretrained(tmp_path / "p")
    img = image(7)
    np.save(tmp_path / "img.npy", img)
    expected = proc(text="<image>!", images=[img])["input_ids"][0]
    code = textwrap.dedent(f"""
        import importlib.abc, sys, numpy as np

        class NoPixeltok(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "pixeltok" or name.startswith("pixeltok."):
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, NoPixeltok())
        from transformers import AutoProcessor
        p = AutoProcessor.from_pretrained({str(tmp_path / 'p')!r}, trust_remote_code=True)
        print(p(text="<image>!", images=[np.load({str(tmp_path / 'img.npy')!r})])["input_ids"][0])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == str(expected)


def test_hub_round_trip(hub_repo_id):
    proc = PixelTextProcessor(ByT5Tokenizer(), palette="named128", layout="raster", max_side=16)
    proc.push_to_hub(hub_repo_id)
    again = AutoProcessor.from_pretrained(hub_repo_id)
    img = image(11, 6, 6)
    assert again(text="<image>", images=[img])["input_ids"] == proc(text="<image>", images=[img])["input_ids"]


def test_bad_calls_raise_clear_errors():
    proc = _PROCS["runs"]
    with pytest.raises(ValueError, match="1 <image> placeholder.*2 image"):
        proc(text="<image>", images=[image(0, 3, 3), image(1, 3, 3)])
    with pytest.raises(ValueError, match="does not truncate"):
        proc(text="<image>", images=[image(0, 3, 3)], truncation=True, max_length=4)
    with pytest.raises(pixeltok.ImageInputError, match="larger than max_side"):
        proc(images=[image(0, 13, 3)])
    ids = proc(text="<image>", images=[image(0, 3, 3)], add_special_tokens=False)["input_ids"][0]
    with pytest.raises(TokenFormatError, match="no <eoi>"):
        proc.decode_images(ids[:-1])
    with pytest.raises(TokenFormatError, match="not a runs pixel token"):
        proc.decode_images(ids[:2] + [ord("a")] + ids[2:])


def test_batch_is_not_slower_per_image_than_single_calls():
    """Correctness of the batched path over many images (its speed is measured in benchmarks/bench_processor.py)."""
    proc = _PROCS["raster"]
    imgs = [image(i, 8, 8) for i in range(50)]
    batch = proc(images=imgs, return_tensors="np", padding=True)
    singles = [proc(images=[im])["input_ids"][0] for im in imgs]
    for row, mask, single in zip(batch["input_ids"], batch["attention_mask"], singles):
        assert row[mask.astype(bool)].tolist() == single


@pytest.mark.parametrize("init", ["mean", "structured"])
def test_resize_embeddings_for_pixels(init):
    from transformers import GPT2Config, GPT2LMHeadModel

    proc = PixelTextProcessor(ByT5Tokenizer(), palette="nes55", layout="runs", max_side=16)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=384, n_embd=32, n_layer=1, n_head=2, n_positions=256))
    n = resize_embeddings_for_pixels(model, proc, init=init)
    assert n == len(proc.tokenizer) == model.get_input_embeddings().weight.shape[0]
    batch = proc(text=["<image> ok"], images=[image(0, 4, 5)], return_tensors="pt", return_image_mask=False)
    out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)
    if init == "structured":  # neighbouring coordinates start closer than distant ones
        e = model.get_input_embeddings().weight
        tid = proc.tokenizer.convert_tokens_to_ids
        d_near = torch.dist(e[tid("<px_3_>")], e[tid("<px_4_>")])
        d_far = torch.dist(e[tid("<px_3_>")], e[tid("<px_15_>")])
        assert d_near < d_far
        vecs = pixel_embedding_init(proc, 32)
        assert all(np.isfinite(v).all() for v in vecs.values())


def test_reader_preparation_fits_height_and_greys_and_survives_save(tmp_path):
    """image_height fits any image to one height (aspect kept, width capped at max_side); grayscale quantizes luma:
    decode_images gives back exactly processor.quantize(image), also after a save/load."""
    proc = PixelTextProcessor(ByT5Tokenizer(), palette="named128", layout="raster", max_side=40, scan="columns",
                              image_height=12, grayscale=True)
    imgs = [image(1, 30, 20), image(2, 10, 80), image(3, 12, 12, alpha=True)]
    ids = proc(text="<image><image><image>", images=imgs, add_special_tokens=False)["input_ids"][0]
    back = proc.decode_images(ids)
    assert [im.size[1] for im in back] == [12, 12, 12] and max(im.size[0] for im in back) <= 40
    for got, orig in zip(back, imgs):
        a = np.asarray(got)
        assert np.array_equal(a, np.asarray(proc.quantize(orig)))
        g = np.asarray(proc.prepare(orig))  # what gets quantized: grey
        assert g.shape[0] == 12 and (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    proc.save_pretrained(tmp_path / "p")
    again = AutoProcessor.from_pretrained(tmp_path / "p")
    assert (again.image_height, again.grayscale, again.scan) == (12, True, "columns")
    assert again(text="<image><image><image>", images=imgs, add_special_tokens=False)["input_ids"][0] == ids
    with pytest.raises(ValueError, match="image_height"):
        PixelTextProcessor(ByT5Tokenizer(), max_side=40, image_height=41)
