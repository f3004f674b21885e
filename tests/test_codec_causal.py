"""compress(image, model=...) with any causal model over sub-pixels: a tiny ImageGPT trained by the codec recipe
(two CPU ranks) codes real photo crops exactly, and the determinism conditions in the header are checked."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import ImageGPTConfig, ImageGPTForCausalImageModeling, LlamaConfig, LlamaForCausalLM

from launching import accelerate_launch
from pixeltok.cli import main as cli_main
from pixeltok.compression import PtkChecksumError, PtkModelMismatchError, compress, decompress, read_header
from pixeltok.compression import causal, format as ptk_format

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "recipes" / "configs" / "codec_imagegpt_tiny.yaml"


@pytest.fixture(scope="module")
def imagegpt_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("codec_imagegpt") / "run"
    accelerate_launch("train_codec.py", "--config", str(CONFIG), "--output_dir", str(out), timeout=300)
    return out


@pytest.fixture(scope="module")
def pxby_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("codec_pxby") / "run"
    accelerate_launch("train_codec.py", "--config", str(CONFIG.parent / "codec_pxby_tiny.yaml"), "--output_dir",
                      str(out), timeout=300)
    return out


def crop(h=16, w=21):
    return np.ascontiguousarray(skimage.data.chelsea()[100:100 + 2 * h:2, 200:200 + 2 * w:2])


def test_integer_softmax_is_machine_independent():
    k = np.arange(len(causal.EXP_TABLE))
    assert causal.EXP_TABLE[0] == 2 ** 30 and causal.EXP_TABLE[1] == round(2 ** 30 * math.exp(-1 / 64))
    assert np.abs(causal.EXP_TABLE - np.round(2.0 ** 30 * np.exp(-k / 64))).max() <= 1
    logits = np.random.default_rng(0).normal(0, 5, (50, 256)).astype(np.float32)
    logits[0] = 0
    logits[1, 7] = 1e4  # one certain level: everything else still >= 1
    f = causal.logits_to_freqs(logits)
    assert (f.sum(1) == 2 ** 24).all() and f.min() >= 1
    assert (np.argsort(f[2:], kind="stable")[:, -1] == np.argmax(logits[2:], 1)).all()
    assert len(set(f[0])) == 1 or f[0].max() - f[0].min() <= 255  # flat logits: (almost) flat frequencies


def test_the_recipe_trains_an_imagegpt_that_codes_photos_exactly(imagegpt_dir):
    card = (imagegpt_dir / "README.md").read_text()
    assert "ImageGPTForCausalImageModeling" in card and "8x8 crops" in card
    img = crop()
    data, stats = compress(img, model=str(imagegpt_dir), return_stats=True, batch_size=4)
    h = read_header(data)
    assert (h.coder_id, h.token_order, h.tile_size, h.layout) == (5, "raster-rgb-interleaved", 8, "tiles")
    assert stats["payload"] == "coded" and len(h.tile_lengths) == 2 * 3  # 16x21 in 8x8 tiles, edge tiles smaller
    assert stats["payload_bytes"] * 8 < 0.85 * img.size * 8  # it learned something: well below raw
    assert stats["ideal_bits"] <= stats["payload_bytes"] * 8 <= stats["ideal_bits"] + 32 * 6 + 64
    cond = causal.conditions_from_bytes(h.coder_params)
    assert cond["batch"] == 4 and cond["torch"] == torch.__version__ and cond["threads"] == torch.get_num_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(2 if before == 1 else 1)  # the decoder runs under the recorded thread count itself
    try:
        assert np.array_equal(np.asarray(decompress(data, model=str(imagegpt_dir))), img)
    finally:
        torch.set_num_threads(before)
    gray = np.ascontiguousarray(img[..., 1])
    back = decompress(compress(gray, model=str(imagegpt_dir)), model=str(imagegpt_dir))
    assert back.mode == "L" and np.array_equal(np.asarray(back), gray)


def test_the_recipe_trains_a_pxby_that_codes_photos_exactly(pxby_dir):
    """PxBy (the package's PixelBytes model, transformer backbone), the 256 levels as its colours: same path."""
    assert "PxByForCausalLM" in (pxby_dir / "README.md").read_text()
    img = crop(9, 11)
    data = compress(img, model=str(pxby_dir))
    assert read_header(data).model_name == pxby_dir.name
    assert np.array_equal(np.asarray(decompress(data, model=str(pxby_dir))), img)
    m = causal.load_causal_model(pxby_dir)  # the coded streams themselves, whether or not the file stored raw pixels
    units = np.stack([img[:8, :8], img[1:9, 3:11]])
    streams, _ = causal.encode_units(m, units)
    assert np.array_equal(causal.decode_units(m, streams, 8, 8), units)


def _with_params(data: bytes, params: bytes) -> bytes:
    header, streams = ptk_format.parse(data)
    header.coder_params = params
    return ptk_format.write(header, streams)


def test_other_conditions_models_and_damage_are_refused(imagegpt_dir):
    m = causal.load_causal_model(imagegpt_dir)
    data = compress(crop(8, 8), model=m)
    cond = causal.conditions_from_bytes(read_header(data).coder_params)
    for key, value in (("torch", "2.0.0+cpu"), ("cpu", "NO AVX"), ("attention", "flash_attention_2")):
        forged = _with_params(data, causal.conditions_to_bytes({**cond, key: value}))
        with pytest.raises(PtkModelMismatchError, match=re.escape(f"{key} '{value}'")):
            decompress(forged, model=m)
    with pytest.raises(PtkChecksumError, match="corrupted coder parameters"):
        decompress(_with_params(data, b"\x09junk"), model=m)
    with pytest.raises(PtkModelMismatchError, match="pass it as model="):
        decompress(data)
    other = ImageGPTForCausalImageModeling(m.config).eval()
    with pytest.raises(PtkModelMismatchError, match="sha256"):
        decompress(data, model=other)
    header, streams = ptk_format.parse(data)
    bad = bytearray(streams[0])
    bad[1] ^= 0x40
    with pytest.raises(PtkChecksumError):
        decompress(ptk_format.write(header, [bytes(bad)]), model=m)


def test_any_causal_lm_with_a_start_token_codes_exactly():
    """The coder itself, whatever the model predicts: a random tiny Llama (bos 256) through encode/decode."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=258, bos_token_id=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=200)
    m = LlamaForCausalLM(cfg).eval()
    assert causal.max_tile(m) == 8
    units = np.random.default_rng(1).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    streams, bits = causal.encode_units(m, units)
    assert np.array_equal(causal.decode_units(m, streams, 5, 7), units)
    assert all(len(s) % 4 == 0 for s in streams) and all(b > 0 for b in bits)


@pytest.mark.parametrize("model, message", [
    (lambda: ImageGPTForCausalImageModeling(ImageGPTConfig(vocab_size=513, n_positions=64, n_embd=8, n_layer=1,
                                                           n_head=1)), "vocab_size 257"),
    (lambda: LlamaForCausalLM(LlamaConfig(vocab_size=300, bos_token_id=1, hidden_size=8, intermediate_size=8,
                                          num_hidden_layers=1, num_attention_heads=1)), "bos_token_id >= 256"),
])
def test_models_that_cannot_code_sub_pixels_are_refused(model, message):
    with pytest.raises(ValueError, match=message):
        compress(crop(4, 4), model=model())


def test_tiles_must_fit_the_model(imagegpt_dir):
    with pytest.raises(ValueError, match="room for tiles up to 8"):
        compress(crop(), model=str(imagegpt_dir), tile_size=16)


def test_cli_demo_reports_the_table_for_the_model(imagegpt_dir, tmp_path, capsys):
    assert cli_main(["demo", "--model", str(imagegpt_dir), "--skip-tokenizer", "--n", "2",
                     "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {imagegpt_dir.name}" in out and "all 2 round trips exact" in out
    assert (tmp_path / "demo" / "results.csv").is_file()
