"""benchmarks/bench_codec_models.py: every variant trains and scores, the channel-major model is causal in its order,
the SDPA attention swapped into ImageGPT computes what the library's eager attention does, and the PxBy sub-pixel
model gets PxBy's own 3x3 windows over the 96-wide sub-pixel grid and is causal."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pixeltok.compression.model import PixelContextCodecConfig

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_codec_models", ROOT / "benchmarks" / "bench_codec_models.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

TINY_CONTEXT = dict(context_rows=2, context_left=2, context_right=2, context_left_current=2, hidden_size=16,
                    num_hidden_layers=1, head_hidden_size=8, num_mixtures=2)
TINY_PXBY = dict(hidden_size=18, state_size=8, num_hidden_layers=1, batch_size=2, eval_batch_size=4)
TINY_DATA = ["data.max_tiles_per_image=16", "data.scales=[1]"]


def _sets(sets):
    return [a for s in sets for a in ("--set", s)]


def test_every_variant_trains_and_scores(tmp_path):
    out = tmp_path / "res.json"
    sets = [f"context.{k}={v}" for k, v in TINY_CONTEXT.items()] + [
        "channel_major.window_radius=1", "imagegpt.n_embd=16", "imagegpt.n_layer=1", "imagegpt.n_head=2",
        "imagegpt.batch_size=2", "train.batch_size=4", *TINY_DATA] + [f"pxby.{k}={v}" for k, v in TINY_PXBY.items()]
    res = bench.main(["--minutes", "0.02", "--threads", "1", "--eval_tiles", "4", "--out", str(out), *_sets(sets)])
    assert json.loads(out.read_text())["variants"].keys() == set(bench.VARIANTS)
    for name, r in res["variants"].items():
        assert r["steps"] >= 1, name
        assert math.isfinite(r["heldout_bpsp"]) and 0 < r["heldout_bpsp"] < 12, (name, r)
        assert r["vs_context_interleaved"] == pytest.approx(r["heldout_bpsp"] / res["variants"]["context-interleaved"]["heldout_bpsp"])
    assert res["variants"]["imagegpt-interleaved"]["sequential_steps"] == 32 * 32 * 3
    assert res["variants"]["context-interleaved"]["sequential_steps"] == 3 * (31 + 3 * 31 + 1)  # slope context_right+1
    assert res["variants"]["pxby-interleaved"]["sequential_steps"] == 32 * 97 - 1  # BOS + sub-pixels + 31 ROW - last


def test_pxby_variant_alone_learns(tmp_path):
    """``--variants pxby-interleaved`` runs just that variant; 12 s of training beat the uniform 8 bpsp (3 s gave
    too few steps on a loaded CPU)."""
    out = tmp_path / "res.json"
    sets = [f"pxby.{k}={v}" for k, v in TINY_PXBY.items()] + ["pxby.learning_rate=0.01", *TINY_DATA]
    res = bench.main(["--variants", "pxby-interleaved", "--minutes", "0.2", "--threads", "1", "--eval_tiles", "8",
                      "--out", str(out), *_sets(sets)])
    assert list(res["variants"]) == ["pxby-interleaved"]
    r = res["variants"]["pxby-interleaved"]
    assert r["steps"] >= 2 and r["batch_size"] == 2 and r["learning_rate"] == 0.01
    assert math.isfinite(r["heldout_bpsp"]) and r["heldout_bpsp"] < 7.9, r
    assert r["vs_context_interleaved"] is None  # no baseline in this run
    assert r["pxby_config"]["state_size"] == 8 and r["pxby_config"]["backbone"] == "lstm"
    assert json.loads(out.read_text())["variants"]["pxby-interleaved"]["params"] == r["params"]


def test_bad_override_is_named():
    with pytest.raises(ValueError, match="unknown key 'nope'"):
        bench.apply_overrides(bench.default_config(bench.DEFAULT_CONFIG), ["imagegpt.nope=1"])
    with pytest.raises(ValueError, match="unknown key 'nope'"):
        bench.apply_overrides(bench.default_config(bench.DEFAULT_CONFIG), ["pxby.nope=1"])
    with pytest.raises(ValueError, match="'first_color_id' is fixed by the sub-pixel sequence format"):
        bench.apply_overrides(bench.default_config(bench.DEFAULT_CONFIG), ["pxby.first_color_id=3"])
    cfg = bench.apply_overrides(bench.default_config(bench.DEFAULT_CONFIG), ["pxby.mamba_expand=3"])  # any PxByConfig field
    assert cfg["pxby"]["mamba_expand"] == 3


def test_pxby_default_size_is_comparable():
    """Defaults: a unidirectional LSTM PxBy of ~0.5-1M parameters, like the other variants."""
    model, opts = bench.build("pxby-interleaved", bench.default_config(bench.DEFAULT_CONFIG))
    assert model.config.backbone == "lstm" and not model.config.bidirectional
    assert 500_000 <= sum(p.numel() for p in model.parameters()) <= 1_000_000
    assert opts["batch_size"] == 8


@pytest.mark.parametrize("channel_ids", [True, False])
def test_pxby_windows_are_the_subpixel_neighbourhood(channel_ids):
    """PxBy's ``build_windows`` over the sequence sees each tile row as a 3W-wide pixel row: above-left / above /
    above-right = the row above at columns j-1, j, j+1, left = column j-1, self = the sub-pixel; 0 elsewhere."""
    h, w = 3, 4
    model = bench.PxBySubpixelModel(channel_ids=channel_ids, hidden_size=18, state_size=4, num_hidden_layers=1)
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, h, w, 3)))
    win = model.windows(img)  # (B, h (3w + 1), 3, 3)
    assert win.shape == (2, h * (3 * w + 1), 3, 3)
    ids = img.reshape(2, h, 3 * w) + model.FIRST + (256 * torch.arange(3).repeat(w) if channel_ids else 0)
    padded = torch.nn.functional.pad(ids, (1, 1, 1, 0))  # (B, h + 1, 3w + 2): a row above and a column each side
    expected = torch.zeros(2, h, 3 * w, 3, 3, dtype=torch.long)
    for dx in range(3):
        expected[..., 0, dx] = padded[:, :h, dx:dx + 3 * w]
    expected[..., 1, 0] = padded[:, 1:, :3 * w]
    expected[..., 1, 1] = ids
    pos = 1 + torch.arange(h)[:, None] * (3 * w + 1) + torch.arange(3 * w)  # sub-pixel (y, j) in the sequence
    assert torch.equal(win[:, pos], expected)
    seq = model.input_ids(img)
    assert torch.equal(seq[:, pos], ids) and (seq[:, 0] == model.config.bos_token_id).all()
    assert (seq[:, pos[1:, 0] - 1] == model.config.row_token_id).all()
    assert torch.equal(model.output_index(h, w), (pos - 1).reshape(-1))  # each sub-pixel predicted from the token before


@pytest.mark.parametrize("backbone", [dict(backbone="lstm"), dict(backbone="lstm", bidirectional=True),
                                      dict(backbone="transformer", num_attention_heads=2, intermediate_size=16)])
def test_pxby_is_causal(backbone):
    """Changing sub-pixel t changes no prediction at positions <= t (logit t predicts sub-pixel t), and does change
    later ones."""
    torch.manual_seed(0)
    h, w = 4, 4
    model = bench.PxBySubpixelModel(hidden_size=18, state_size=8, num_hidden_layers=2, **backbone).eval()
    with torch.no_grad():  # larger random weights than the init, so every input visibly moves the outputs
        for p in model.parameters():
            p.normal_(0, 0.3)
    img = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, h, w, 3)))
    with torch.no_grad():
        before = model(img, reduction="none")
        assert before.logits.shape == (2, h * w * 3, 256) and before.loss.shape == (2,)
        for y, x, c in [(0, 0, 0), (1, 3, 2), (2, 0, 0), (2, 1, 1), (3, 3, 1)]:
            changed = img.clone()
            changed[0, y, x, c] = (changed[0, y, x, c] + 97) % 256
            after = model(changed, reduction="none").logits
            t = (y * w + x) * 3 + c
            assert torch.equal(after[0, : t + 1], before.logits[0, : t + 1]), (y, x, c)
            assert not torch.equal(after[0, t + 1:], before.logits[0, t + 1:]), (y, x, c)
            assert torch.equal(after[1], before.logits[1])  # tiles of a batch are independent


@pytest.mark.parametrize("share_trunk", [True, False])
def test_channel_major_is_causal_in_plane_order(share_trunk):
    torch.manual_seed(0)
    model = bench.ChannelMajorContextModel(PixelContextCodecConfig(**TINY_CONTEXT), window_radius=1, share_trunk=share_trunk)
    with torch.no_grad():  # larger random weights than the init, so every input visibly moves the outputs
        for p in model.parameters():
            p.normal_(0, 0.3)
    h = w = 8
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.integers(0, 256, (1, h, w, 3)))
    with torch.no_grad():
        before = model(img).params[0]  # (HW, 3 planes, 3, K)
        for c in range(3):
            for y, x in [(3, 4), (0, 0), (7, 7), (5, 0)]:
                changed = img.clone()
                changed[0, y, x, c] = (changed[0, y, x, c] + 97) % 256
                after = model(changed).params[0]
                p = y * w + x
                assert torch.equal(after[: p + 1, c], before[: p + 1, c]), (c, y, x)  # own plane, up to and at p
                assert torch.equal(after[:, :c], before[:, :c]), (c, y, x)  # every earlier plane
                if p + 1 < h * w:  # the test can fail: the change does reach later positions of the plane
                    assert not torch.equal(after[p + 1:, c], before[p + 1:, c]), (c, y, x)
                if c < 2:  # ... and the later planes, at the pixel itself (the non-causal window)
                    assert not torch.equal(after[p, c + 1], before[p, c + 1]), (c, y, x)


def test_imagegpt_sdpa_swap_matches_eager():
    torch.manual_seed(0)
    sdpa = bench.ImageGPTSubpixelModel(n_embd=32, n_layer=2, n_head=4, tile_size=8, attention="sdpa")
    eager = bench.ImageGPTSubpixelModel(n_embd=32, n_layer=2, n_head=4, tile_size=8, attention="eager")
    eager.load_state_dict(sdpa.state_dict())
    assert "sdpa" in sdpa.attention and eager.attention == "eager"
    img = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)))
    a, b = sdpa(img, reduction="none"), eager(img, reduction="none")
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.loss, b.loss)
    # causal: changing sub-pixel t changes no logit at positions <= t (logit t predicts sub-pixel t)
    changed = img.clone()
    changed[0, 2, 3, 1] = (changed[0, 2, 3, 1] + 50) % 256
    t = (2 * 8 + 3) * 3 + 1
    c = sdpa(changed, reduction="none")
    assert torch.equal(c.logits[0, : t + 1], a.logits[0, : t + 1])
    assert not torch.equal(c.logits[0, t + 1:], a.logits[0, t + 1:])
