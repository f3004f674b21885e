#!/usr/bin/env python
"""The PixelBytes paper's table for any set of PxBy checkpoints, on the held-out split, plus training curves.

    python recipes/eval_pxby.py --checkpoints runs/bilstm runs/transformer user/pxby-mamba --output_dir runs/table

Each checkpoint is a ``train_pxby.py`` output folder or a Hub repo id. Its held-out test split is rebuilt from the
checkpoint's own ``training_config.yaml`` (same source, long side, split sizes and seed, so no training or
validation sprite leaks in); ``--data_source`` points at a local copy of the data instead. For every checkpoint:
per-token loss / bits per token / accuracy and the paper's generation metrics (Hamming, cosine, BLEU over the 3x3
windows of 16 greedily generated positions after each 64-token context).

Writes ``results.json``, ``results.md`` (the table) and ``training_curves.png`` (train / validation loss against
step, from each checkpoint's ``trainer_state.json``) into ``--output_dir``. A missing folder or file is reported
at once as one line (``not found: PATH``), without asking the Hub.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

import pixeltok  # noqa: E402,F401  (registers PxBy with the Auto classes)
from pixeltok.data import DataSourceError, load_pokemon  # noqa: E402
from pixeltok.evaluation import generation_metrics, reduce_token_stats, token_stats  # noqa: E402
from pixeltok.evaluation.generation import generate_window_pairs  # noqa: E402
from pixeltok.scripts import ArgumentParser, ConfigError, check_exists, exit_with, library_progress_bars_off  # noqa: E402

PROG = "eval_pxby.py"
COLUMNS = (  # key, header
    ("hamming", "Hamming ↓"), ("cosine", "cosine ↑"), ("bleu", "BLEU ↑"), ("token_accuracy", "accuracy ↑"),
    ("bits_per_token", "bits/token ↓"), ("num_windows", "windows"),
)


def parse_args(argv=None):
    p = ArgumentParser(prog="eval_pxby.py", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", nargs="+", required=True, help="train_pxby.py output folders or Hub repo ids")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--data_source", default=None, help="override the data source recorded in each checkpoint")
    p.add_argument("--split", default="test", choices=("test", "validation"))
    p.add_argument("--context_length", type=int, default=None, help="default: the checkpoint's config (64)")
    p.add_argument("--generation_length", type=int, default=None, help="default: the checkpoint's config (16)")
    p.add_argument("--max_points_per_sequence", type=int, default=None,
                   help="generation points per sequence; default: the checkpoint's config (null = all)")
    p.add_argument("--max_sequences", type=int, default=None,
                   help="sequences used for generation (per-token metrics use them all); default: the checkpoint's "
                        "config (null = all)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--revision", default=None, help="Hub revision for repo ids")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    # local paths are checked before anything is loaded: a missing folder must not send us to the Hub
    args.checkpoints = [check_exists(c, "--checkpoints") for c in args.checkpoints]
    for c in args.checkpoints:
        if os.path.exists(c) and not (Path(c) / "config.json").is_file():
            raise ConfigError(f"{c}: not a train_pxby.py output folder (no config.json)")
    if args.data_source:
        args.data_source = check_exists(args.data_source, "--data_source")
    return args


def fetch(checkpoint: str, name: str, revision: str | None) -> Path | None:
    """A run file from a local folder or a Hub repo (None when absent)."""
    local = Path(checkpoint) / name
    if Path(checkpoint).is_dir():
        return local if local.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(checkpoint, name, revision=revision))
    except LocalEntryNotFoundError as e:  # (an EntryNotFoundError too) Hub unreachable and nothing cached
        raise ConfigError(f"{checkpoint}: no such local folder, and the Hub could not be reached "
                          f"({' '.join(str(e).split())[:200]})") from None
    except RepositoryNotFoundError:
        raise ConfigError(f"not found: {checkpoint} (no such local folder or Hub repo)") from None
    except EntryNotFoundError:
        return None


@torch.no_grad()
def token_metrics(model, tokenizer, sequences, batch_size: int, device) -> dict:
    pad = tokenizer.pad_token_id
    stats = []
    for batch in DataLoader(sequences, batch_size=batch_size, collate_fn=lambda rows: rows):
        n = max(map(len, batch))
        ids = torch.full((len(batch), n), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(batch):
            ids[i, : len(s)], mask[i, : len(s)] = torch.as_tensor(s), 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        labels = ids.masked_fill(mask == 0, -100)
        stats.append(torch.stack(token_stats(logits[:, :-1], labels[:, 1:]), 1).cpu())
    s = torch.cat(stats)
    return reduce_token_stats(s[:, 0], s[:, 1], s[:, 2])


def evaluate_checkpoint(ckpt: str, args) -> dict:
    cfg_path = fetch(ckpt, "training_config.yaml", args.revision)
    cfg = yaml.safe_load(cfg_path.read_text()) if cfg_path else {}
    dc, ec = cfg.get("data", {}), cfg.get("evaluation", {})
    if not cfg:
        print(f"warning: {ckpt} has no training_config.yaml: the loader's default split (seed 0, 10% test) is used, "
              "which need not be the split this model was trained with", file=sys.stderr, flush=True)
    source = args.data_source or dc.get("source")
    if not source:
        raise ConfigError(f"{ckpt}: no training_config.yaml with data.source; pass --data_source")
    source = check_exists(str(source), f"the data.source {ckpt} was trained on; pass --data_source")
    data = load_pokemon(source, cache_dir=dc.get("cache_dir"), num_proc=dc.get("num_proc"),
                        **{k: dc[k] for k in ("long_side", "transparency", "crop", "lowercase", "order", "val_size",
                                              "test_size", "seed") if k in dc})
    if args.split not in data:
        raise ConfigError(f"{ckpt}: data source {source} has no {args.split!r} split")
    max_len = int(dc.get("max_length") or 10**9)
    seqs = [list(x)[:max_len] for x in data[args.split]["input_ids"]]

    kw = {"revision": args.revision} if not Path(ckpt).is_dir() and args.revision else {}
    tokenizer = AutoTokenizer.from_pretrained(ckpt, **kw)
    model = AutoModelForCausalLM.from_pretrained(ckpt, **kw).to(args.device).eval()
    row = token_metrics(model, tokenizer, seqs, args.batch_size, args.device)
    # the generation protocol of the training run's own held-out evaluation, unless overridden
    max_seqs = args.max_sequences if args.max_sequences is not None else ec.get("max_sequences")
    max_points = args.max_points_per_sequence if args.max_points_per_sequence is not None \
        else ec.get("max_points_per_sequence")
    seqs = seqs[:max_seqs]
    context = args.context_length or ec.get("context_length", 64)
    gen_len = args.generation_length or ec.get("generation_length", 16)
    preds, refs = generate_window_pairs(model, tokenizer, seqs, context_length=context, generation_length=gen_len,
                                        max_points_per_sequence=max_points, max_context=ec.get("max_context"))
    gen = generation_metrics(preds, refs)
    row.update(hamming=gen["hamming"], cosine=gen["cosine"], bleu=gen["bleu"], num_windows=gen["num_samples"],
               num_sequences=len(seqs), split=args.split, context_length=context, generation_length=gen_len,
               backbone=model.config.backbone, num_parameters=sum(p.numel() for p in model.parameters()),
               data_source=str(source))
    state_path = fetch(ckpt, "trainer_state.json", args.revision)
    row["log_history"] = json.loads(state_path.read_text())["log_history"] if state_path else []
    return row


def markdown_table(results: dict) -> str:
    head = "| checkpoint | backbone | parameters | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for name, r in results.items():
        cells = [f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k, _ in COLUMNS]
        lines.append(f"| {name} | {r['backbone']} | {r['num_parameters']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(results: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, r) in enumerate(results.items()):
        color = f"C{i % 10}"
        tr = [(h["step"], h["train_loss"]) for h in r["log_history"] if "train_loss" in h]
        va = [(h["step"], h["val_loss"]) for h in r["log_history"] if "val_loss" in h]
        if tr:
            ax.plot(*zip(*tr), color=color, alpha=0.6, label=f"{name} train")
        if va:
            ax.plot(*zip(*va), color=color, marker="o", linestyle="--", label=f"{name} validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title("PxBy training curves")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    try:
        args = parse_args(argv)
        results = {}
        with library_progress_bars_off():
            for ckpt in args.checkpoints:
                name = ckpt.rstrip("/").split("/")[-1] if Path(ckpt).is_dir() else ckpt
                if name in results:
                    name = ckpt
                results[name] = evaluate_checkpoint(ckpt, args)
    except (ConfigError, DataSourceError) as e:
        exit_with(e, PROG)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps(
        {k: {kk: vv for kk, vv in v.items() if kk != "log_history"} for k, v in results.items()}, indent=1))
    plot_curves(results, out / "training_curves.png")
    print(table)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'training_curves.png'}")


if __name__ == "__main__":
    main()
