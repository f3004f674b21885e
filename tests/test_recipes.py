"""End-to-end: ``accelerate launch`` the PxBy recipe on 2 CPU ranks, resume it, push to the local Hub, reload.

Two launches (about 20 s each on 2 cores) are shared by every test of this module:

- run A: tiny config, 8 steps, checkpoints at steps 4 and 8, pushed (private) to ``user/tiny-pxby-*``;
- run B: resumed from run A's step-4 checkpoint (mid-epoch) in a fresh folder, pushed to branch ``resumed``.
"""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from launching import accelerate_launch

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


def launch(out: Path, sprites: Path, *extra: str) -> str:
    return accelerate_launch("train_pxby.py", "--config", str(TINY), "--output_dir", str(out),
                             "--data_source", str(sprites), *extra)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, hub_server):
    base = tmp_path_factory.mktemp("recipes")
    sprites = make_sprites(base / "sprites")
    repo_id = f"{hub_server.user}/tiny-pxby-{uuid.uuid4().hex[:8]}"
    dataset_id = f"{hub_server.user}/tiny-sprites-{uuid.uuid4().hex[:8]}"
    a, b = base / "run_a", base / "run_b"
    log_a = launch(a, sprites, "--push_to_hub", "--hub_model_id", repo_id, "--private",
                   "--hub_dataset_id", dataset_id, "--set", "data.license=cc0-1.0")
    log_b = launch(b, sprites, "--resume_from_checkpoint", str(a / "checkpoints" / "step_4"),
                   "--push_to_hub", "--hub_model_id", repo_id, "--revision", "resumed")
    return {"a": a, "b": b, "log_a": log_a, "log_b": log_b, "repo_id": repo_id, "dataset_id": dataset_id,
            "sprites": sprites, "base": base}


def _load(path_or_id, **kw):
    import pixeltok  # noqa: F401  (registers PxBy with the Auto classes)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(path_or_id, **kw), AutoModelForCausalLM.from_pretrained(path_or_id, **kw).eval()


def test_two_cpu_ranks_really_ran_and_agree(runs):
    lines = re.findall(r"\[pixeltok\] rank=(\d) world_size=(\d+) device=", runs["log_a"])
    assert sorted(lines) == [("0", "2"), ("1", "2")], runs["log_a"][-3000:]
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

    assert re.search(r"rank=0 resumed from .*step_4 at step 4", runs["log_b"])
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
    sprite = Image.open(runs["sprites"] / "images" / "sprite_03.png")
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
    local = load_pokemon(runs["sprites"], long_side=8, val_size=0.2, test_size=0.2, seed=0)
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
    spec = importlib.util.spec_from_file_location("eval_pxby", ROOT / "recipes" / "eval_pxby.py")
    eval_pxby = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eval_pxby)
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
    assert "rank=0 world_size=1" in proc.stdout
    res = json.loads((out / "eval_results.json").read_text())["training"]
    assert res["stopped_early"] is True and res["steps"] == 4 and res["best_step"] == 2
    assert (out / "checkpoints" / "step_4").is_dir()  # a checkpoint is written where training stopped
