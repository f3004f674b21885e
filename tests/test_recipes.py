"""End-to-end: ``accelerate launch`` the PxBy recipe on 2 CPU ranks, resume it, push to the local Hub, reload.

Two launches (about 20 s each on 2 cores) are shared by every test of this module:

- run A: the tiny config as recipes/README.md writes it (built-in synthetic sprites, no --data_source), 8 steps,
  checkpoints at steps 4 and 8, pushed (private) to ``user/tiny-pxby-*``;
- run B: resumed from run A's step-4 checkpoint (mid-epoch) in a fresh folder, pushed to branch ``resumed``.

Config and path errors are checked in-process (the recipes' ``main``, with ``Accelerator`` replaced by a trap: the
error must come before any process group) and once under a real 2-rank launch.
"""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from launching import accelerate_launch, launch_process
from pixeltok.data.synthetic import make_creature

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "configs" / "tiny.yaml"
CPU2 = ROOT / "recipes" / "accelerate" / "cpu2.yaml"


def make_sprites(root: Path, n: int = 16, size: int = 16, seed: int = 0) -> Path:
    """``n`` RGBA sprites (a coloured blob with an eye on a transparent background) + captions (metadata.jsonl)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 220), "yellow": (240, 220, 40)}
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for i in range(n):
        cname, shape = list(colours)[i % 4], ("round", "square")[(i // 4) % 2]
        c, r = size / 2 - 0.5, size * (0.3 + 0.15 * rng.random())
        inside = ((yy - c) ** 2 + (xx - c) ** 2 <= r * r) if shape == "round" else \
            (np.abs(yy - c) <= r) & (np.abs(xx - c) <= 0.8 * r)
        img = np.zeros((size, size, 4), np.uint8)
        img[inside] = (*colours[cname], 255)
        img[(yy == int(c) - 1) & (xx == int(c) + 1)] = (0, 0, 0, 255)
        fn = f"images/sprite_{i:02d}.png"
        Image.fromarray(img, "RGBA").save(root / fn)
        rows.append({"file_name": fn, "caption": f"A {shape} {cname} creature with one black eye."})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def launch(out: Path, *extra: str) -> str:
    # about 20 s; the timeout only bounds the (retried) gloo teardown hang
    return accelerate_launch("train_pxby.py", "--config", str(TINY), "--output_dir", str(out), *extra, timeout=240)


def load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory, hub_server):
    base = tmp_path_factory.mktemp("recipes")
    sprites = make_sprites(base / "sprites")
    repo_id = f"{hub_server.user}/tiny-pxby-{uuid.uuid4().hex[:8]}"
    dataset_id = f"{hub_server.user}/tiny-sprites-{uuid.uuid4().hex[:8]}"
    a, b = base / "run_a", base / "run_b"
    log_a = launch(a, "--push_to_hub", "--hub_model_id", repo_id, "--private",
                   "--hub_dataset_id", dataset_id, "--set", "data.license=cc0-1.0")
    log_b = launch(b, "--resume_from_checkpoint", str(a / "checkpoints" / "step_4"),
                   "--push_to_hub", "--hub_model_id", repo_id, "--revision", "resumed")
    return {"a": a, "b": b, "log_a": log_a, "log_b": log_b, "repo_id": repo_id, "dataset_id": dataset_id,
            "sprites": sprites, "base": base}


def _load(path_or_id, **kw):
    import pixeltok  # noqa: F401  (registers PxBy with the Auto classes)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(path_or_id, **kw), AutoModelForCausalLM.from_pretrained(path_or_id, **kw).eval()


def test_two_cpu_ranks_really_ran_and_agree(runs):
    # one line, from the main process, listing the ranks that answered through the process group
    assert re.findall(r"\[pixeltok\] world_size=(\d+) ranks=(\[.*?\]) ", runs["log_a"]) == [("2", "[0, 1]")], \
        runs["log_a"][-3000:]
    assert runs["log_a"].count("replicas_agree=True") == 1
    for noise in ("Writing model shards", "Loading weights", "Traceback"):  # neither rank prints library bars
        assert noise not in runs["log_a"] and noise not in runs["log_b"], noise
    reports = [json.loads((runs["a"] / "rank_reports" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert reports[0]["param_checksum"] == reports[1]["param_checksum"]  # DDP kept the replicas identical
    assert reports[0]["test"] == reports[1]["test"]  # gathered metrics: the same numbers on both ranks
    assert json.loads((runs["a"] / "eval_results.json").read_text())["training"]["world_size"] == 2


def test_outputs_are_real(runs):
    from huggingface_hub import ModelCard

    out = runs["a"]
    for f in ("config.json", "model.safetensors", "tokenizer_config.json", "vocab.json", "README.md",
              "eval_results.json", "trainer_state.json", "training_config.yaml"):
        assert (out / f).is_file(), f
    res = json.loads((out / "eval_results.json").read_text())
    test = res["test"]
    assert res["training"]["steps"] == 8 and res["dataset"]["splits"]["train"] >= 8
    assert 0 <= test["hamming"] <= 1 and 0 <= test["bleu"] <= 1 and 0 <= test["token_accuracy"] <= 1
    assert test["num_windows"] >= 1 and test["num_tokens"] > 0
    assert test["bits_per_token"] == pytest.approx(test["loss"] / math.log(2))
    # training lowered the validation loss (a real run, not a stub)
    vals = [h["val_loss"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "val_loss" in h]
    assert len(vals) == 4 and vals[-1] < vals[0]

    # the card's model-index holds exactly the run's numbers
    card = ModelCard.load(out / "README.md")
    got = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert got["hamming"] == test["hamming"] and got["bleu"] == test["bleu"] and got["accuracy"] == test["token_accuracy"]
    assert card.data.eval_results[0].dataset_split == "test"
    assert f"{test['hamming']:.4g}" in card.text and runs["repo_id"] in card.text
    card.validate()  # the Hub's YAML validation (local server)

    # AutoClasses load the saved folder; the model reproduces the reported test loss
    tok, model = _load(out)
    assert type(model).__name__ == "PxByForCausalLM" and type(tok).__name__ == "PixelBytesTokenizer"


def test_resume_mid_epoch_matches_uninterrupted_run(runs):
    from safetensors.torch import load_file

    assert len(re.findall(r"\[pixeltok\] resumed from .*step_4 at step 4", runs["log_b"])) == 1  # main process only
    state = json.loads((runs["a"] / "checkpoints" / "step_4" / "trainer_state.json").read_text())
    batches_per_epoch = math.ceil(json.loads((runs["a"] / "eval_results.json").read_text())["dataset"]["splits"]["train"] / 4)
    assert state["micro_step"] % batches_per_epoch != 0, "the checkpoint should fall mid-epoch to exercise skipping"
    wa, wb = load_file(runs["a"] / "model.safetensors"), load_file(runs["b"] / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ha = json.loads((runs["a"] / "trainer_state.json").read_text())["log_history"]
    hb = json.loads((runs["b"] / "trainer_state.json").read_text())["log_history"]
    assert hb == ha  # the resumed run continues the same curve (history restored from the checkpoint)


def test_push_to_hub_and_reload_identical(runs, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import RepositoryNotFoundError

    repo = runs["repo_id"]
    files = set(HfApi().list_repo_files(repo))
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "vocab.json", "README.md",
            "eval_results.json", "training_config.yaml", "trainer_state.json"} <= files
    with pytest.raises(RepositoryNotFoundError):  # --private
        HfApi(token=False).model_info(repo)
    assert Path(hf_hub_download(repo, "README.md", cache_dir=tmp_path)).read_text() == (runs["a"] / "README.md").read_text()
    assert json.loads(Path(hf_hub_download(repo, "eval_results.json", cache_dir=tmp_path)).read_text()) == \
        json.loads((runs["a"] / "eval_results.json").read_text())

    tok_local, model_local = _load(runs["a"])
    tok_hub, model_hub = _load(repo, cache_dir=tmp_path)
    tok_rev, model_rev = _load(repo, revision="resumed", cache_dir=tmp_path)
    assert tok_hub.get_vocab() == tok_local.get_vocab()
    sprite = Image.fromarray(make_creature(3)[0])
    ids = tok_local.encode_sample(sprite, "A round yellow creature.")
    assert tok_hub.encode_sample(sprite, "A round yellow creature.") == ids
    x = torch.tensor([ids])
    with torch.no_grad():
        ref = model_local(x).logits
        assert torch.equal(model_hub(x).logits, ref)
        assert torch.equal(model_rev(x).logits, ref)  # the resumed run (branch "resumed") is the same model


def test_dataset_pushed_as_parquet_and_loadable(runs, tmp_path):
    from datasets import load_dataset
    from huggingface_hub import HfApi, ModelCard

    from pixeltok.data import load_pokemon

    files = HfApi().list_repo_files(runs["dataset_id"], repo_type="dataset")
    assert "README.md" in files and any(f.endswith(".parquet") for f in files)
    local = load_pokemon("synthetic", long_side=8, val_size=0.2, test_size=0.2, seed=0)  # tiny.yaml's data
    for split in ("train", "validation", "test"):
        hub = load_dataset(runs["dataset_id"], split=split, cache_dir=str(tmp_path))
        assert hub["input_ids"] == local[split]["input_ids"] and hub["caption"] == local[split]["caption"]
    card = ModelCard.load(runs["a"] / "README.md")
    assert card.data.datasets == [runs["dataset_id"]] and f'load_dataset("{runs["dataset_id"]}")' in card.text


def test_model_card_usage_snippet_runs(runs, tmp_path, monkeypatch, capsys):
    text = (runs["a"] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert f'repo = "{runs["repo_id"]}"' in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("max_new_tokens=700", "max_new_tokens=200"), "README.md", "exec"), {})
    assert isinstance(capsys.readouterr().out, str)


def test_eval_pxby_regenerates_the_table(runs):
    eval_pxby = load_recipe("eval_pxby")
    out = runs["base"] / "table"
    eval_pxby.main(["--checkpoints", str(runs["a"]), str(runs["b"]), "--output_dir", str(out), "--device", "cpu"])
    table = (out / "results.md").read_text()
    assert "| run_a | lstm |" in table and "| run_b | lstm |" in table
    res = json.loads((out / "results.json").read_text())
    want = json.loads((runs["a"] / "eval_results.json").read_text())["test"]
    for k in ("hamming", "cosine", "bleu", "num_windows"):  # same held-out split, same greedy generations
        assert res["run_a"][k] == pytest.approx(want[k], abs=1e-12)
    for k in ("loss", "bits_per_token", "token_accuracy"):  # 2-rank gather vs 1 process: summation order only
        assert res["run_a"][k] == pytest.approx(want[k], rel=1e-6)
    with Image.open(out / "training_curves.png") as im:
        assert im.size[0] > 300 and im.size[1] > 200


def test_single_process_early_stopping(runs, tmp_path):
    """Plain ``python recipes/train_pxby.py`` (1 CPU process): with a zero learning rate the validation loss cannot
    improve, so early stopping (patience 1) ends the run at the second evaluation and the best model is kept."""
    out = tmp_path / "es"
    cmd = [sys.executable, str(ROOT / "recipes" / "train_pxby.py"), "--config", str(TINY), "--output_dir", str(out),
           "--data_source", str(runs["sprites"]), "--set", "training.learning_rate=0.0",
           "--set", "training.early_stopping_patience=1", "--set", "training.warmup_steps=0"]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "[pixeltok] world_size=1 ranks=[0] " in proc.stdout
    res = json.loads((out / "eval_results.json").read_text())["training"]
    assert res["stopped_early"] is True and res["steps"] == 4 and res["best_step"] == 2
    assert (out / "checkpoints" / "step_4").is_dir()  # a checkpoint is written where training stopped


def test_clean_single_process_run_prints_only_its_progress_bars(tmp_path):
    """``python recipes/train_pxby.py --config recipes/configs/tiny.yaml --output_dir DIR`` as recipes/README.md
    writes it: no library bars inside the training bar ("Writing model shards" from save_pretrained, "Loading
    weights" from from_pretrained, datasets' "Generating ... split" / map), no warnings, no tracebacks."""
    out = tmp_path / "clean"
    env = {k: v for k, v in os.environ.items() if k != "HF_DATASETS_DISABLE_PROGRESS_BARS"}  # the real default
    cmd = [sys.executable, str(ROOT / "recipes" / "train_pxby.py"), "--config", str(TINY), "--output_dir", str(out),
           "--set", f"data.cache_dir={tmp_path / 'cache'}"]  # a fresh cache: the dataset is really built
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(env, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    for noise in ("Writing model shards", "Loading weights", "Generating", "truncate", "Map", "Traceback"):
        assert noise not in log, noise
    assert not re.search(r"(?i)warn", log), log[-4000:]
    bars = set(re.findall(r"(?:^|\r)([A-Za-z ]+):\s+\d+%\|", proc.stderr, re.M))
    assert bars == {"train", "generate"}, bars  # one bar per long task
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("[pixeltok] world_size=1 ranks=[0] "), proc.stdout
    assert json.loads((out / "eval_results.json").read_text())["dataset"]["source"] == "synthetic"


@pytest.fixture(scope="module")
def train_pxby():
    return load_recipe("train_pxby")


def _expect_one_line_error(capsys, call) -> str:
    with pytest.raises(SystemExit) as exc:
        call()
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    return err


BAD_TRAIN_ARGS = [  # (extra arguments, what the line must say)
    (["--set", "training.nope=1"], "--set 'training.nope=1': expected SECTION.KEY=VALUE with a known key"),
    (["--config", "{tmp}/typo.yaml"], "typo.yaml: unknown key training.nope"),
    (["--config", "{tmp}/missing.yaml"], "not found: {tmp}/missing.yaml (--config)"),
    (["--set", "training.max_steps=0"], "training.max_steps must be a positive int, got 0"),
    (["--set", "training.learning_rate=1e-3"], "write 1.0e-3"),
    (["--set", "data.order=sideways"], "data.order must be one of ['image_first', 'caption_first']"),
    (["--set", "model.backbone=gru"], "PxByConfig.backbone='gru'"),
    (["--set", "model.hidden_size=big"], "model.hidden_size must be an int >= 0, got 'big'"),
    (["--set", "data.source=null"], "data.source is empty"),
    (["--data_source", "{tmp}/no_such_sprites"], "not found: {tmp}/no_such_sprites (--data_source)"),
    (["--resume_from_checkpoint", "latest"], "--resume_from_checkpoint latest: no checkpoint"),
    (["--resume_from_checkpoint", "{tmp}/step_9"], "not found: {tmp}/step_9 (--resume_from_checkpoint)"),
    (["--hub_dataset_id", "u/d"], "--hub_dataset_id only makes sense with --push_to_hub"),
    (["--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("extra, message", BAD_TRAIN_ARGS, ids=[m[:40] for _, m in BAD_TRAIN_ARGS])
def test_train_config_errors_are_one_line_before_any_process_group(train_pxby, tmp_path, monkeypatch, capsys,
                                                                   extra, message):
    (tmp_path / "typo.yaml").write_text(TINY.read_text().replace("training:\n", "training:\n  nope: 1\n"))

    def no_accelerator(*a, **k):
        raise AssertionError("the Accelerator (and its process group) started before the config was checked")

    monkeypatch.setattr(train_pxby, "Accelerator", no_accelerator)
    argv = ["--config", str(TINY), "--output_dir", str(tmp_path / "out")] + [a.format(tmp=tmp_path) for a in extra]
    err = _expect_one_line_error(capsys, lambda: train_pxby.main(argv))
    assert err.startswith("train_pxby.py: error: ") and message.format(tmp=tmp_path) in err, err


def test_config_error_on_two_ranks_is_reported_once(tmp_path):
    """Under ``accelerate launch`` (2 ranks) the line comes once, from rank 0, first, with no rank tracebacks and no
    process group (torch's launcher then adds its own ChildFailedError summary, which a script cannot silence)."""
    proc = launch_process("train_pxby.py", "--config", str(TINY), "--output_dir", str(tmp_path / "out"),
                          "--set", "training.nope=1", timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.count("train_pxby.py: error: ") == 1, proc.stderr
    assert proc.stderr.startswith("train_pxby.py: error: --set 'training.nope=1'"), proc.stderr[:2000]
    assert "recipes/train_pxby.py\", line" not in proc.stderr  # no Python traceback from either rank
    assert "world_size" not in proc.stdout  # stopped before the Accelerator


@pytest.mark.parametrize("checkpoint", ["./no_such_run", "{tmp}/no_such_run", "runs/no_such_run", "model.safetensors"])
def test_eval_missing_checkpoint_fails_at_once_without_the_hub(tmp_path, monkeypatch, capsys, checkpoint):
    """A checkpoint that looks like a local path (``./x``, ``/x``, ``runs/x`` with ``runs/`` present, a file
    suffix) and does not exist is "not found" at once: no Hub download is attempted."""
    import huggingface_hub

    eval_pxby = load_recipe("eval_pxby")
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)

    def no_hub(*a, **k):
        raise AssertionError("asked the Hub for a local path")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    ckpt = checkpoint.format(tmp=tmp_path)
    t0 = time.perf_counter()
    err = _expect_one_line_error(capsys, lambda: eval_pxby.main(["--checkpoints", ckpt, "--output_dir", "table"]))
    assert time.perf_counter() - t0 < 5
    assert err == f"eval_pxby.py: error: not found: {ckpt} (--checkpoints)\n"


def test_eval_missing_data_source_is_named(tmp_path, monkeypatch, capsys):
    """The data source (given, or recorded in the checkpoint's training_config.yaml) must exist too."""
    eval_pxby = load_recipe("eval_pxby")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "training_config.yaml").write_text(f"data:\n  source: {tmp_path / 'moved_away'}\n")
    err = _expect_one_line_error(capsys, lambda: eval_pxby.main(
        ["--checkpoints", str(ckpt), "--output_dir", str(tmp_path / "t")]))
    assert f"not found: {tmp_path / 'moved_away'} (the data.source {ckpt} was trained on; pass --data_source)" in err
    err = _expect_one_line_error(capsys, lambda: eval_pxby.main(
        ["--checkpoints", str(ckpt), "--output_dir", str(tmp_path / "t"), "--data_source", "./gone.parquet"]))
    assert err == "eval_pxby.py: error: not found: ./gone.parquet (--data_source)\n"
    err = _expect_one_line_error(capsys, lambda: eval_pxby.main(
        ["--checkpoints", str(tmp_path), "--output_dir", str(tmp_path / "t")]))
    assert "not a train_pxby.py output folder (no config.json)" in err
