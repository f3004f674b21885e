"""recipes/eval_lm.py: the model rows of the reading table (GPT-2, Llama, Mamba, PxBy) as real train_lm.py runs on the
toy config, a table with every row, the curves, and a rerun that reuses the finished rows."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_model_rows_run_and_the_table_lists_them(tmp_path):
    cmd = [sys.executable, str(ROOT / "recipes" / "eval_lm.py"), "--output_dir", str(tmp_path), "--rows", "model",
           "--base", str(ROOT / "recipes" / "configs" / "lm_tiny.yaml"), "--budget_minutes", "1",
           "--set", "training.max_steps=3", "--set", "training.eval_every=3", "--set", "processor.max_side=32"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-4000:]
    table = (tmp_path / "table.md").read_text()
    for row in ("model=gpt2", "model=llama", "model=mamba", "model=pxby"):
        assert f"| {row} |" in table
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model=pxby"]["model_type"] == "pxby" and results["model=pxby"]["processor"]["pack"] == 1
    assert results["model=gpt2"]["model_type"] == "gpt2"
    # PxBy's windows know the processor's colour and row-end ids
    cfg = json.loads((tmp_path / "model-pxby" / "config.json").read_text())
    vocab = json.loads((tmp_path / "model-pxby" / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    names = {int(i): t["content"] for i, t in vocab.items()}
    assert names[cfg["row_token_id"]] == "<px_nl>" and names[cfg["first_color_id"]].startswith("<px_c_")
    assert (tmp_path / "curves.png").stat().st_size > 0
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)  # every row reused
    assert again.returncode == 0 and "train:" not in again.stderr, again.stderr[-2000:]
