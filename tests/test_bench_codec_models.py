"""benchmarks/bench_codec_models.py: every variant trains and scores, the channel-major model is causal in its order,
and the SDPA attention swapped into ImageGPT computes what the library's eager attention does."""

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


def test_every_variant_trains_and_scores(tmp_path):
    out = tmp_path / "res.json"
    sets = [f"context.{k}={v}" for k, v in TINY_CONTEXT.items()] + [
        "channel_major.window_radius=1", "imagegpt.n_embd=16", "imagegpt.n_layer=1", "imagegpt.n_head=2",
        "imagegpt.batch_size=2", "train.batch_size=4", "data.max_tiles_per_image=16", "data.scales=[1]"]
    res = bench.main(["--minutes", "0.02", "--threads", "1", "--eval_tiles", "4", "--out", str(out),
                      *[a for s in sets for a in ("--set", s)]])
    assert json.loads(out.read_text())["variants"].keys() == set(bench.VARIANTS)
    for name, r in res["variants"].items():
        assert r["steps"] >= 1, name
        assert math.isfinite(r["heldout_bpsp"]) and 0 < r["heldout_bpsp"] < 12, (name, r)
        assert r["vs_context_interleaved"] == pytest.approx(r["heldout_bpsp"] / res["variants"]["context-interleaved"]["heldout_bpsp"])
    assert res["variants"]["imagegpt-interleaved"]["sequential_steps"] == 32 * 32 * 3
    assert res["variants"]["context-interleaved"]["sequential_steps"] == 3 * (31 + 3 * 31 + 1)  # slope context_right+1


def test_bad_override_is_named():
    with pytest.raises(ValueError, match="unknown key 'nope'"):
        bench.apply_overrides(bench.default_config(bench.DEFAULT_CONFIG), ["imagegpt.nope=1"])


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
