"""recipes/train_lm.py: any causal LM reads words written as pixel tokens; 1 process, 2 real CPU ranks on the
streaming path, resume, outputs that load with the Auto classes, `pixeltok read`, and one-line config errors."""

import importlib.util
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from launching import accelerate_launch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "configs" / "lm_tiny.yaml"


def load_recipe():
    spec = importlib.util.spec_from_file_location("train_lm", ROOT / "recipes" / "train_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_one(tmp_path_factory, hub_server):
    """``python recipes/train_lm.py --config recipes/configs/lm_tiny.yaml --output_dir DIR`` exactly as the config's
    comment gives it (no data argument), stopped at step 3, then resumed to the config's 6 steps and pushed to the
    local Hub."""
    out = tmp_path_factory.mktemp("lm") / "run"
    repo_id = f"{hub_server.user}/tiny-reader-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, str(ROOT / "recipes" / "train_lm.py"), "--config", str(TINY), "--output_dir", str(out)]
    first = subprocess.run(cmd + ["--set", "training.max_steps=3"], capture_output=True, text=True, timeout=300,
                           cwd=ROOT)
    assert first.returncode == 0, first.stderr[-4000:]
    resumed = subprocess.run(cmd + ["--resume_from_checkpoint", "latest", "--push_to_hub", "--hub_model_id", repo_id,
                                    "--private"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    return out, first, resumed, repo_id


def test_the_pushed_reader_loads_from_the_hub_with_its_card(run_one):
    import pixeltok
    from huggingface_hub import HfApi, ModelCard
    from transformers import AutoModelForCausalLM, AutoProcessor

    out, _, _, repo_id = run_one
    files = set(HfApi().list_repo_files(repo_id))
    assert {"model.safetensors", "processor_config.json", "tokenizer_config.json", "eval_results.json",
            "trainer_state.json", "training_config.yaml", "README.md"} <= files
    card = ModelCard.load(repo_id)
    assert card.data.pipeline_tag == "image-to-text" and "character error rate" in card.text
    proc, model = AutoProcessor.from_pretrained(repo_id), AutoModelForCausalLM.from_pretrained(repo_id)
    local = AutoModelForCausalLM.from_pretrained(out)
    img = Image.new("RGB", (30, 12), (10, 200, 90))
    assert pixeltok.reader.read(model, proc, [img], max_new_tokens=4) == \
        pixeltok.reader.read(local, AutoProcessor.from_pretrained(out), [img], max_new_tokens=4)


def test_one_process_run_resumes_and_leaves_loadable_outputs(run_one):
    out, first, resumed, _ = run_one
    for r in (first, resumed):
        assert "Traceback" not in r.stderr and "warn" not in r.stderr.lower(), r.stderr[-3000:]
        assert [ln for ln in r.stdout.splitlines() if ln.startswith("[pixeltok]")], r.stdout
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 6 and [h["step"] for h in state["log_history"] if "train_loss" in h] == list(range(1, 7))
    results = json.loads((out / "eval_results.json").read_text())
    test = results["test"]
    assert set(test) >= {"cer", "word_accuracy", "clean", "hard", "tokens_per_image", "images_per_second"}
    assert test["num_images"] == 16 and test["clean"]["num_images"] + test["hard"]["num_images"] == 16
    assert results["training"]["world_size"] == 1 and results["training"]["tokens_per_second"] > 0
    card = (out / "README.md").read_text()
    assert "character error rate" in card and f"{100 * test['cer']:.2f}%" in card

    import pixeltok
    from transformers import AutoModelForCausalLM, AutoProcessor

    model = AutoModelForCausalLM.from_pretrained(out)
    proc = AutoProcessor.from_pretrained(out)
    assert type(proc) is pixeltok.PixelTextProcessor and (proc.scan, proc.image_height) == ("columns", 12)
    word = Image.new("RGB", (40, 14), (240, 240, 240))
    texts = pixeltok.reader.read(model, proc, [word, np.zeros((20, 30, 3), np.uint8)], max_new_tokens=4)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_a_curriculum_stage_starts_from_a_reader_with_its_processor(run_one, tmp_path):
    """``model.init_from`` a reader: the next stage keeps its processor (its pixel tokens mean the same greys) and
    starts from its weights, whatever the stage's own processor section says."""
    import pixeltok  # noqa: F401  (registers PixelTextProcessor with AutoProcessor)
    from transformers import AutoProcessor

    out = tmp_path / "stage2"
    cmd = [sys.executable, str(ROOT / "recipes" / "train_lm.py"), "--config", str(TINY), "--output_dir", str(out),
           "--set", f"model.init_from={run_one[0]}", "--set", "processor.palette=named128",
           "--set", "training.max_steps=1", "--set", "evaluation.test_samples=2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-4000:]
    before, after = AutoProcessor.from_pretrained(run_one[0]), AutoProcessor.from_pretrained(out)
    assert after.palette == before.palette == "nes55" and len(after.tokenizer) == len(before.tokenizer)
    assert json.loads((out / "eval_results.json").read_text())["training"]["init_from"] == str(run_one[0])
    assert f"Started from `{run_one[0]}`" in (out / "README.md").read_text()


def test_pixeltok_read_prints_one_line_per_image(run_one, tmp_path, capsys):
    from pixeltok.cli import main

    out = run_one[0]
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (30, 12), "white").save(a)
    Image.new("L", (50, 20), 30).save(b)
    assert main(["read", str(a), str(b), "--model", str(out), "--max-new-tokens", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [str(a), str(b)]
    assert main(["read", str(a), "--model", str(out), "--json", "--max-new-tokens", "3"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["image"] == str(a) and set(rows[0]) == {"image", "text", "mean_logprob", "tokens"}
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path in (bad, empty):
        assert main(["read", str(a), str(path), "--model", str(out)]) == 2
        err = capsys.readouterr()
        assert err.out == "" and err.err.startswith("pixeltok read: error: ") and len(err.err.splitlines()) == 1


def test_two_cpu_ranks_on_the_streaming_path(tmp_path):
    out = tmp_path / "run2"
    # 65 streamed rows split 32 / 33 between the ranks: 8 batches of 4 on one, 9 on the other. 20 steps run past the
    # end of both shares: each rank cycles its own share and the two still step (and all-reduce) in lock-step
    log = accelerate_launch("train_lm.py", "--config", str(TINY), "--output_dir", str(out),
                            "--set", "data.streaming=true", "--set", "data.n_train=65",
                            "--set", "training.max_steps=20", "--set", "training.group_by_length=2", timeout=300)
    assert re.findall(r"\[pixeltok\] world_size=(\d+) ranks=(\[.*?\]) ", log) == [("2", "[0, 1]")], log[-3000:]
    assert "replicas_agree=True" in log and "Traceback" not in log
    results = json.loads((out / "eval_results.json").read_text())
    assert results["training"]["world_size"] == 2 and results["dataset"]["streaming"] is True
    assert results["test"]["num_images"] == 16  # the test split gathered from both ranks, every image once


@pytest.mark.parametrize("kind", ["llama", "gpt2", "mamba", "pxby"])
def test_answer_loss_is_the_models_own_loss_on_the_answer_tokens(kind):
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, MambaConfig

    from pixeltok.models.pxby import PxByConfig

    torch.manual_seed(0)
    cfg = {"llama": LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2),
           "gpt2": GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2),
           "mamba": MambaConfig(vocab_size=50, hidden_size=16, state_size=4, num_hidden_layers=1),
           "pxby": PxByConfig(hidden_size=18, num_hidden_layers=1)}[kind]
    model = AutoModelForCausalLM.from_config(cfg).eval()  # no dropout: both losses see the same network
    ids = torch.randint(0, cfg.vocab_size, (3, 9))
    labels = torch.full_like(ids, -100)
    labels[0, 4:7], labels[1, 2:9], labels[2, 8] = ids[0, 4:7], ids[1, 2:9], ids[2, 8]  # answers of 3, 7 and 1
    loss, n = load_recipe().answer_loss(model, model.get_output_embeddings(), ids, labels)
    assert int(n) == 3 + 7 + 1  # each answer token, the first one predicted from the last prompt position
    assert torch.allclose(loss, model(input_ids=ids, labels=labels).loss, atol=1e-5)
    loss.backward()  # gradients flow through the selected positions only
    assert all(p.grad is not None for p in model.get_output_embeddings().parameters())
    assert not model.get_output_embeddings()._forward_pre_hooks  # the hook is gone after the call


def test_streaming_batches_are_grouped_by_length():
    import torch

    recipe = load_recipe()

    class Stream:
        def set_epoch(self, epoch):
            self.epoch = epoch

    lengths = torch.tensor([7, 2, 5, 3, 9, 4, 6, 8])
    mask = (torch.arange(9)[None] < lengths[:, None]).long()
    big = {"input_ids": torch.arange(8)[:, None] * mask, "attention_mask": mask}
    gen = recipe.endless([big], Stream(), 0, groups=4)
    batches = [next(gen) for _ in range(4)]
    assert sorted(int(b["input_ids"][0, 0]) for b in batches) == [1, 5, 6, 7]  # each pair: the shorter's row id
    for b in batches:  # 2 rows of neighbouring lengths, trimmed to the longer
        assert b["input_ids"].shape[0] == 2 and b["attention_mask"].shape[1] == int(b["attention_mask"].sum(1).max())
    rows = sorted(int(r) for b in batches for r in b["input_ids"][:, 0])
    assert rows == list(range(8))


@pytest.mark.parametrize("setting,needle", [
    ("model.type=vit", "not a transformers causal LM type"),
    ("model.config={hidden_sise: 8}", "model.config.hidden_sise is not a field"),
    ("model.config={vocab_size: 8}", "set from the tokenizer"),
    ("processor.layout=spiral", "processor.layout"),
    ("training.learning_rate=fast", "expected a number"),
    ("training.max_stepz=3", "unknown key training.max_stepz"),
    ("data.tier=medium", "data.tier"),
    ("model.init_from=./no/such/model", "not found: ./no/such/model"),
    ("training.group_by_length=4", "only with data.streaming: true"),
])
def test_config_errors_are_one_line_before_any_process_group(tmp_path, capsys, monkeypatch, setting, needle):
    recipe = load_recipe()

    def trap(*a, **k):
        raise AssertionError("an Accelerator was created before the config was checked")

    import accelerate

    monkeypatch.setattr(accelerate, "Accelerator", trap)  # pixeltok.scripts.make_accelerator imports it from there
    with pytest.raises(SystemExit) as e:
        recipe.main(["--config", str(TINY), "--output_dir", str(tmp_path / "o"), "--set", setting])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("train_lm.py: error: ") and needle in err, err


def test_caption_picker_shuffles_clauses_and_keeps_each_once():
    recipe = load_recipe()
    dc = dict(recipe.DEFAULTS["data"], captions=["caption"], caption_dropout=0.0, clause_dropout=0.0,
              clause_shuffle=1.0)
    pick = recipe.CaptionPicker(dc, seed=0)
    row = {"caption": "a large red circle top left, a small blue square bottom right, a ring centre, on white"}
    texts = {pick(row) for _ in range(40)}
    clauses = sorted(row["caption"].split(", "))
    assert all(sorted(t.split(", ")) == clauses for t in texts)  # the same clauses, each once
    assert len(texts) > 5 and row["caption"] in texts  # many orders, the grammar's among them
    dc["clause_shuffle"] = 0.0
    assert {recipe.CaptionPicker(dc, seed=0)(row) for _ in range(5)} == {row["caption"]}
