#!/usr/bin/env python
"""Regenerate the reading table: layouts, palettes and models, every row a real `train_lm.py` run at the same
training-time budget, plus Tesseract on the same held-out images; a markdown table and the training curves (PNG).

    python recipes/eval_lm.py --budget_minutes 20 --output_dir runs/reading_table [--rows layout,palette,model]

Rows (each changes one thing from ``--base``, ``recipes/configs/lm_reader.yaml`` by default):
- layout: grouped, raster, runs (same palette and model);
- palette: named128, nes55, a learned 8-colour palette;
- model: GPT-2, Llama and Mamba from transformers, and PxBy on PixelBytes' byte + palette vocabulary.
Each row runs ``recipes/train_lm.py`` in its own process (1 CPU process, ``--set training.time_budget_minutes=B``)
into ``output_dir/<row>/``; a row whose ``eval_results.json`` exists is reused, so an interrupted table resumes.
``table.md`` lists held-out CER and word accuracy per tier, tokens per image, tokens/s and steps; ``curves.png``
shows validation CER against training minutes for every row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pixeltok.scripts import ArgumentParser, ConfigError, check_exists, exit_with, run_once

PROG = "eval_lm.py"
HERE = Path(__file__).resolve().parent
MODELS = {  # about the same parameter count as the base Llama
    "gpt2": "model.type=gpt2 --set model.config={n_embd: 128, n_layer: 4, n_head: 4, n_positions: 4096}",
    "llama": "",
    "mamba": "model.type=mamba --set model.config={hidden_size: 128, state_size: 16, num_hidden_layers: 4}",
    # PxBy on PixelBytes' own vocabulary: bytes + the nes55 colours one token per pixel, rows ended by a token, so
    # its 3x3 window embedding sees each pixel's neighbours above (about 7x the tokens of the base's strips)
    "pxby": "model.type=pxby --set model.config={hidden_size: 128, backbone: transformer, num_hidden_layers: 4, "
            "num_attention_heads: 4, intermediate_size: 384} --set model.embedding_init=mean "
            "--set processor.palette=nes55 --set processor.learned_colors=null --set processor.pack=1 "
            "--set processor.layout=raster",
}
ROWS = {
    "layout": {f"layout={v}": f"processor.layout={v}" for v in ("grouped", "raster", "runs")},
    "palette": {"palette=named128": "processor.palette=named128 --set processor.learned_colors=null",
                "palette=nes55": "processor.palette=nes55 --set processor.learned_colors=null",
                "palette=learned8": "processor.learned_colors=8"},
    "model": {f"model={k}": v for k, v in MODELS.items()},
}


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--output_dir", required=True)
    p.add_argument("--budget_minutes", type=float, default=20.0, help="training time per row (default 20)")
    p.add_argument("--rows", default="layout,palette,model", help="comma-separated groups: " + ",".join(ROWS))
    p.add_argument("--base", default=str(HERE / "configs" / "lm_reader.yaml"), help="the config every row starts from")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="applied to every row")
    p.add_argument("--tesseract", action="store_true", help="add Tesseract on the same test images")
    args = p.parse_args(argv)
    check_exists(args.base, "--base")
    for g in args.rows.split(","):
        if g not in ROWS:
            raise ConfigError(f"--rows: unknown group {g!r} (known: {', '.join(ROWS)})")
    if args.budget_minutes <= 0:
        raise ConfigError("--budget_minutes must be > 0")
    return args


def run_row(name: str, overrides: str, args) -> dict:
    sets = [f"training.time_budget_minutes={args.budget_minutes}"] + (overrides.split(" --set ") if overrides else [])
    return run_once(HERE / "train_lm.py", args.base, Path(args.output_dir) / name.replace("=", "-"),
                    sets + list(args.set), "eval_lm", f"row {name}")


def markdown(rows: dict, budget: float) -> str:
    head = ("| row | clean CER | hard CER | clean words | hard words | tokens/image | tokens/s | steps |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [f"Each row: {budget:g} training minutes on this machine's CPU (1 process); held-out test split (fonts and "
             "words unseen in training).", "", head]
    for name, res in rows.items():
        t = res["test"]
        c, h = t.get("clean", {}), t.get("hard", {})
        tr = res.get("training", {})

        def pct(d, k):
            return f"{100 * d[k]:.1f}%" if k in d else "—"
        lines.append(f"| {name} | {pct(c, 'cer')} | {pct(h, 'cer')} | {pct(c, 'word_accuracy')} | "
                     f"{pct(h, 'word_accuracy')} | {t.get('tokens_per_image', 0):.0f} | "
                     f"{tr.get('tokens_per_second', 0):.0f} | {tr.get('steps', '—')} |")
    return "\n".join(lines) + "\n"


def plot(rows: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, res in rows.items():
        state = Path(args.output_dir) / name.replace("=", "-") / "trainer_state.json"
        if not state.is_file():
            continue
        hist = [h for h in json.loads(state.read_text())["log_history"] if "val_cer" in h]
        ax.plot([h["train_minutes"] for h in hist], [100 * h["val_cer"] for h in hist], marker="o", label=name)
    ax.set_xlabel("training minutes (CPU)")
    ax.set_ylabel("validation CER (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Reading words written as pixel tokens")
    fig.tight_layout()
    fig.savefig(Path(args.output_dir) / "curves.png", dpi=120)


def main(argv=None):
    try:
        args = parse_args(argv)
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        rows = {}
        for group in args.rows.split(","):
            for name, overrides in ROWS[group].items():
                if name not in rows:
                    rows[name] = run_row(name, overrides, args)
    except ConfigError as e:
        exit_with(e, PROG)
    table = markdown(rows, args.budget_minutes)
    if args.tesseract:
        tess = subprocess.run([sys.executable, str(HERE.parent / "benchmarks" / "bench_read.py"), "--model",
                               str(Path(args.output_dir) / next(iter(rows)).replace("=", "-"))],
                              capture_output=True, text=True)
        table += "\nTesseract on the same test images (benchmarks/bench_read.py):\n\n```\n" + tess.stdout + "```\n"
    (Path(args.output_dir) / "table.md").write_text(table)
    (Path(args.output_dir) / "results.json").write_text(json.dumps(rows, indent=1))
    plot(rows, args)
    print(table)


if __name__ == "__main__":
    main()
