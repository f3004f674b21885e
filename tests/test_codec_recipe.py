"""recipes/train_codec.py end to end: two real CPU ranks, resume, push to the local Hub, reload, compress with it."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

import pixeltok
from launching import accelerate_launch, launch_process
from pixeltok.compression import compress, decompress, load_codec_model, read_header

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "configs" / "codec_tiny.yaml"


@pytest.fixture(scope="module")
def train_codec():
    spec = importlib.util.spec_from_file_location("train_codec", ROOT / "recipes" / "train_codec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def launch(out: Path, *extra: str) -> str:
    return accelerate_launch("train_codec.py", "--config", str(TINY), "--output_dir", str(out), *extra, timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, hub_server):
    base = tmp_path_factory.mktemp("codec_recipe")
    repo_id = f"{hub_server.user}/tiny-codec-{os.getpid()}"
    a, b = base / "run_a", base / "run_b"
    log_a = launch(a, "--push_to_hub", "--hub_model_id", repo_id)
    log_b = launch(b, "--resume_from_checkpoint", str(a / "checkpoint-3"))
    return a, b, log_a, log_b, repo_id


def test_outputs_are_real(runs):
    a, _, log_a, _, _ = runs
    res = json.loads((a / "eval_results.json").read_text())
    assert res["num_processes"] == 2, log_a[-3000:]  # two real CPU ranks, not one process launched twice
    assert res["steps"] == 6 and 0 < res["eval_bits_per_subpixel"] < 9
    assert (a / "model.safetensors").is_file() and (a / "config.json").is_file()
    card = (a / "README.md").read_text()
    assert f"{res['eval_bits_per_subpixel']:.3f}" in card or f"{res['eval_bits_per_subpixel']:.4f}" in card
    assert isinstance(AutoModel.from_pretrained(a), pixeltok.compression.model.PixelContextCodecModel)


def test_resume_reproduces_the_uninterrupted_run(runs):
    a, b, _, log_b, _ = runs
    assert "resumed at step 3" in log_b
    ra, rb = (json.loads((d / "eval_results.json").read_text()) for d in (a, b))
    assert ra["eval_bits_per_subpixel"] == pytest.approx(rb["eval_bits_per_subpixel"], abs=1e-6)


def test_hub_copy_compresses_like_the_local_one(runs):
    a, _, _, _, repo_id = runs
    local, hub = load_codec_model(a), load_codec_model(repo_id)
    for (k, v), (k2, v2) in zip(local.state_dict().items(), hub.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    img = np.random.default_rng(0).integers(0, 256, (19, 40, 3), dtype=np.uint8)
    data, data_local = compress(img, model=hub), compress(img, model=local)
    h, h_local = read_header(data), read_header(data_local)
    assert h.model_sha256 == h_local.model_sha256  # the weights' identity, wherever they were loaded from
    n = sum(h.tile_lengths)  # same coded tiles; only the header's model name (and so the file CRC) differs
    assert h.tile_lengths == h_local.tile_lengths and data[-n - 4:-4] == data_local[-n - 4:-4]
    assert np.array_equal(np.asarray(decompress(data, model=local)), img)  # coded with the Hub copy, decoded locally


def test_init_from_continues_from_saved_weights(runs, tmp_path):
    """--init_from loads a save_pretrained folder; with 0 steps the evaluation is exactly the source run's."""
    a, _, _, _, _ = runs
    out = tmp_path / "cont"
    log = launch(out, "--init_from", str(a), "--max_steps", "0")
    assert f"initialised from {a}" in log
    src, cont = (json.loads((d / "eval_results.json").read_text()) for d in (a, out))
    assert cont["steps"] == 0
    assert cont["eval_bits_per_subpixel"] == pytest.approx(src["eval_bits_per_subpixel"], abs=1e-6)


def test_mirror_random_half_flips_whole_tiles_deterministically(train_codec):
    """train.hflip: each tile is either untouched or mirrored left-right, about half of them, same draw per seed."""
    mod = train_codec
    tiles = torch.randint(0, 256, (400, 4, 5, 3), dtype=torch.uint8)
    out = mod.mirror_random_half(tiles, torch.Generator().manual_seed(7))
    same = (out == tiles).flatten(1).all(1)
    flipped = (out == tiles.flip(2)).flatten(1).all(1)
    assert bool((same ^ flipped).all())  # random tiles are never their own mirror image: exactly one holds
    assert 150 < int(flipped.sum()) < 250
    again = mod.mirror_random_half(tiles, torch.Generator().manual_seed(7))
    assert torch.equal(out, again)
    assert out.dtype == tiles.dtype and out.shape == tiles.shape


def test_stop_step_ends_early_on_the_full_schedule(tmp_path):
    """train.stop_step ends the run at that step, before train.max_steps (which still sets the cosine's length)."""
    import yaml

    cfg = yaml.safe_load(TINY.read_text())
    cfg["train"]["stop_step"] = 2
    path = tmp_path / "stop.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "stop"
    accelerate_launch("train_codec.py", "--config", str(path), "--output_dir", str(out), timeout=120)
    res = json.loads((out / "eval_results.json").read_text())
    assert res["steps"] == 2 < cfg["train"]["max_steps"]
    assert (out / "checkpoint-2").is_dir()


def lr_curve(run: Path) -> list[tuple[int, float]]:
    return [(h["step"], h["lr"]) for h in json.loads((run / "trainer_state.json").read_text())["log_history"]
            if "lr" in h]


def test_lr_schedule_is_the_same_on_one_and_two_processes(runs, tmp_path):
    """Accelerate steps a prepared scheduler once per process per optimizer step: the recipe must count optimizer
    steps, so the 2-rank run (run A) follows the 1-process curve instead of reaching lr 0 halfway (step 3 of 6)."""
    a, b, _, _, _ = runs
    one = tmp_path / "one"
    cmd = [sys.executable, str(ROOT / "recipes" / "train_codec.py"), "--config", str(TINY), "--output_dir", str(one)]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert json.loads((one / "eval_results.json").read_text())["num_processes"] == 1
    assert json.loads((a / "eval_results.json").read_text())["num_processes"] == 2
    curve = lr_curve(one)
    assert [s for s, _ in curve] == [1, 2, 3, 4, 5, 6]
    assert lr_curve(a) == curve  # the same optimizer-step counts in the same formula: exactly equal
    assert all(lr > 0 for _, lr in curve[:-1]) and curve[-1][1] == pytest.approx(0, abs=1e-15)  # cosine ends at 0
    assert lr_curve(b) == lr_curve(a)  # the resumed run continues the same curve (history kept in the checkpoint)
    assert "Writing model shards" not in proc.stderr and "Traceback" not in proc.stderr


def _edited(tmp_path: Path, section: str, key: str, value) -> Path:
    import yaml

    cfg = yaml.safe_load(TINY.read_text())
    if value is None:
        del cfg[section][key]
    else:
        cfg[section][key] = value
    path = tmp_path / f"{section}_{key}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


BAD_CODEC = [  # (config edit or None, extra arguments, what the one line must say)
    (("train", "bogus", 1), [], "unknown key train.bogus"),
    (("data", "scales", None), [], "data.scales is missing"),
    (("train", "batch_size", 0), [], "train.batch_size must be an int >= 1, got 0"),
    (("train", "mixed_precision", "fp8"), [], "train.mixed_precision must be one of"),
    (("data", "scales", [0]), [], "data.scales must be a list of positive ints"),
    (("model", "hidden_size", "big"), [], "model.hidden_size must be an int, got 'big'"),
    (("data", "train_skimage", ["no_such_photo"]), [], "data.train_skimage: 'skimage:no_such_photo': not a scikit-image photo"),
    (("data", "train_wallpapers", ["Path"]), [], "data lists 'Path' (and 0 more) but --wallpaper_dir was not given"),
    (None, ["--config", "{tmp}/missing.yaml"], "not found: {tmp}/missing.yaml (--config)"),
    (None, ["--wallpaper_dir", "{tmp}/wall"], "not found: {tmp}/wall (--wallpaper_dir)"),
    (None, ["--init_from", "./no_such_run"], "not found: ./no_such_run (--init_from)"),
    (None, ["--resume_from_checkpoint", "{tmp}/ckpt-3"], "not found: {tmp}/ckpt-3 (--resume_from_checkpoint)"),
    (None, ["--max_steps", "-1"], "--max_steps must be an int >= 0, got -1"),
    (None, ["--bogus"], "unrecognized arguments: --bogus"),
    (("data", "heldout_skimage", ["chelsea", "astronaut"]), [], "data: 'skimage:astronaut' is both a training and"),
    (("model", "type", "vq"), [], "model.type must be 'context' (the pixel-context network), 'imagegpt' or 'pxby', got 'vq'"),
    (("data", "train_backgrounds", ["../x.jpg"]), ["--backgrounds_dir", "{tmp}"],
     "data.train_backgrounds: 'background:../x.jpg': the path leaves backgrounds_dir"),
]


@pytest.mark.parametrize("edit, extra, message", BAD_CODEC, ids=[m[:40] for _, _, m in BAD_CODEC])
def test_codec_config_errors_are_one_line_before_any_process_group(train_codec, tmp_path, monkeypatch, capsys,
                                                                   edit, extra, message):
    def no_accelerator(*a, **k):
        raise AssertionError("the Accelerator (and its process group) started before the config was checked")

    monkeypatch.setattr(train_codec, "Accelerator", no_accelerator)
    monkeypatch.delenv("PIXELTOK_WALLPAPERS", raising=False)
    config = _edited(tmp_path, *edit) if edit else TINY
    argv = ["--config", str(config), "--output_dir", str(tmp_path / "out")] + [a.format(tmp=tmp_path) for a in extra]
    with pytest.raises(SystemExit) as exc:
        train_codec.main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("train_codec.py: error: ") and message.format(tmp=tmp_path) in err, err


def test_codec_config_error_on_two_ranks_is_reported_once(tmp_path):
    proc = launch_process("train_codec.py", "--config", str(_edited(tmp_path, "train", "bogus", 1)),
                          "--output_dir", str(tmp_path / "out"), timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.count("train_codec.py: error: ") == 1 and proc.stderr.startswith("train_codec.py: error: ")
    assert "recipes/train_codec.py\", line" not in proc.stderr  # no Python traceback from either rank
