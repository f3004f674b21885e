#!/usr/bin/env python
"""Regenerate the De-Diffusion table: how well each kind of text lets a frozen decoder rebuild held-out images.

    python recipes/eval_dediffusion.py --output_dir runs/dediffusion [--tasks scenes,words] [--ks 5,15,75]

For each task (``scenes``: the procedural scenes with complete and short captions; ``words``: the reading task's word
renders, caption = the word; ``sprites``: sprites with their descriptions, ``load_pokemon("synthetic")`` by default
or Wesnoth's real ones with ``--decoder_config`` / ``--encoder_config`` naming ``data.options.path``) it runs, each in its own process and reused when its ``eval_results.json`` exists (an
interrupted table resumes):
1. decoder A: ``recipes/train_lm.py`` on the task's draw config (``data.task: draw``);
2. decoder B: the same data and tokenizer, another seed and another backbone (GPT-NeoX for a Llama A: parallel
   attention and MLP, LayerNorm, rotary on a quarter of each head), never seen by the encoders (the paper's transfer
   claim);
3. one De-Diffusion encoder per K: ``recipes/train_dediffusion.py`` through the frozen decoder A.
Then, on the held-out test split, for every text (De-Diffusion K=..., complete caption, short caption, no text) and
both decoders: bits per image token and the pixel accuracy of a greedy drawing. For the words, also the character
error rate of the De-Diffusion text against the true word (reading learnt with no labels). Writes ``table.md``,
``results.json`` and ``grid.png`` (original | drawn from the De-Diffusion text | drawn from the short caption).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from pixeltok.scripts import ArgumentParser, ConfigError, check_exists, exit_with, run_once

PROG = "eval_dediffusion.py"
HERE = Path(__file__).resolve().parent
TASKS = {"scenes": ("lm_draw_scenes.yaml", "dediffusion_scenes.yaml"),
         "words": ("lm_draw_words.yaml", "dediffusion_words.yaml"),
         "sprites": ("lm_draw_sprites.yaml", "dediffusion_sprites.yaml")}
TRUTH = {"scenes": ("caption", "complete caption"), "words": ("text", "the word"), "sprites": ("caption", "caption")}
NEOX_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings")


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--output_dir", required=True)
    p.add_argument("--tasks", default="scenes,words,sprites", help="comma-separated: " + ",".join(TASKS))
    p.add_argument("--ks", default="5,15,75", help="text lengths K of the encoders (default 5,15,75)")
    p.add_argument("--decoder_config", default=None, help="one task only: the decoders' train_lm.py config")
    p.add_argument("--encoder_config", default=None, help="one task only: the encoders' train_dediffusion.py config")
    p.add_argument("--decoder_minutes", type=float, default=None, help="training budget per decoder (default: config)")
    p.add_argument("--encoder_minutes", type=float, default=None, help="training budget per encoder (default: config)")
    p.add_argument("--draw_samples", type=int, default=64, help="test images drawn greedily per row (default 64)")
    p.add_argument("--test_samples", type=int, default=None, help="test images scored (default: the whole split)")
    args = p.parse_args(argv)
    args.tasks = args.tasks.split(",")
    for t in args.tasks:
        if t not in TASKS:
            raise ConfigError(f"--tasks: unknown task {t!r} (known: {', '.join(TASKS)})")
    try:
        args.ks = [int(k) for k in args.ks.split(",")]
    except ValueError:
        raise ConfigError(f"--ks: expected comma-separated integers, got {args.ks!r}") from None
    if not args.ks or min(args.ks) < 1:
        raise ConfigError("--ks: every K must be >= 1")
    if (args.decoder_config or args.encoder_config) and len(args.tasks) != 1:
        raise ConfigError("--decoder_config / --encoder_config need exactly one task in --tasks")
    for path in (args.decoder_config, args.encoder_config):
        if path:
            check_exists(path, "config")
    return args


def run(script: str, out: Path, config: Path, sets: list[str]) -> dict:
    return run_once(HERE / script, config, out, sets, "eval_dediffusion", out.name)


def second_backbone(decoder_config: Path) -> list[str]:
    """``--set`` overrides for decoder B: another seed and, for a Llama A, a GPT-NeoX of the same shape (a GPT-2 of
    that shape, with learned absolute positions, drew the scenes at 0.50 bits per token against the Llama's 0.15 in
    the same 25 minutes and hardly used the text: a transfer test needs a decoder that reads)."""
    cfg = yaml.safe_load(decoder_config.read_text())
    model = cfg.get("model", {})
    sets = ["training.seed=1"]
    if model.get("type", "llama") == "llama":
        fields = {k: v for k, v in (model.get("config") or {}).items() if k in NEOX_FIELDS}
        sets += ["model.type=gpt_neox", "model.config=" + json.dumps(fields)]
    else:
        sets += ["model.type=llama"]
    return sets


def train_all(task: str, args, out: Path) -> tuple[Path, Path, dict[int, Path]]:
    dec_cfg = Path(args.decoder_config or HERE / "configs" / TASKS[task][0])
    enc_cfg = Path(args.encoder_config or HERE / "configs" / TASKS[task][1])
    budget = [f"training.time_budget_minutes={args.decoder_minutes}"] if args.decoder_minutes else []
    a, b = out / "decoder_a", out / "decoder_b"
    run("train_lm.py", a, dec_cfg, budget)
    tok = yaml.safe_load(dec_cfg.read_text()).get("tokenizer", {}).get("name")
    same_tokenizer = [f"tokenizer.name={a / 'bpe_tokenizer'}"] if tok == "bpe" else []
    run("train_lm.py", b, dec_cfg, budget + second_backbone(dec_cfg) + same_tokenizer)
    enc_budget = [f"training.time_budget_minutes={args.encoder_minutes}"] if args.encoder_minutes else []
    encoders = {}
    for k in args.ks:
        encoders[k] = out / f"encoder_k{k}"
        run("train_dediffusion.py", encoders[k], enc_cfg,
            enc_budget + [f"decoder.path={a}", f"encoder.config.num_queries={k}"])
    return a, b, encoders


def evaluate(task: str, a: Path, b: Path, encoders: dict[int, Path], args, out: Path) -> dict:
    import pixeltok  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModel, AutoModelForCausalLM, AutoProcessor

    from pixeltok.data import DATA_KEYS, load_source
    from pixeltok.drawing import greedy_draw, image_bits, pixel_accuracy
    from pixeltok.evaluation import character_error_rate

    proc = AutoProcessor.from_pretrained(a)
    proc_b = AutoProcessor.from_pretrained(b)
    if proc.tokenizer.get_vocab() != proc_b.tokenizer.get_vocab():
        raise ConfigError(f"{b}: decoder B's tokenizer differs from decoder A's: the texts would mean other tokens")
    decoders = {"A": AutoModelForCausalLM.from_pretrained(a).eval(), "B": AutoModelForCausalLM.from_pretrained(b).eval()}
    dc = yaml.safe_load((a / "training_config.yaml").read_text())["data"]
    test = load_source(**{k: dc[k] for k in DATA_KEYS}, n_train=min(dc["n_train"], 16))["test"]
    rows = [test[i] for i in range(len(test) if args.test_samples is None else min(args.test_samples, len(test)))]
    images = [r["image"] for r in rows]
    truth_col, truth_name = TRUTH[task]
    bos = [proc.tokenizer.bos_token_id] if proc.tokenizer.bos_token_id is not None else []

    def ids_of(texts):
        return [np.asarray(bos + proc.tokenizer(t, add_special_tokens=False)["input_ids"], np.int64) for t in texts]

    prefixes, described = {}, {}
    for k, path in encoders.items():
        enc = AutoModel.from_pretrained(path).eval()
        ids = enc.describe(images, return_ids=True)
        prefixes[f"De-Diffusion K={k}"] = [np.concatenate([bos, i]).astype(np.int64) for i in ids]
        described[k] = [proc.tokenizer.decode(i.tolist()) for i in ids]
    prefixes[truth_name] = ids_of([r[truth_col] for r in rows])
    if task == "scenes":
        prefixes["short caption"] = ids_of([r["short_caption"] for r in rows])
    prefixes["no text"] = ids_of([""] * len(rows))

    table, drawn = {}, {}
    targets = [proc.quantize(im) for im in images[:args.draw_samples]]
    sizes = [t.size for t in targets]
    for name, pre in prefixes.items():
        rec = {"text_tokens": float(np.mean([len(p) - len(bos) for p in pre]))}
        for dname, model in decoders.items():
            bits = image_bits(model, proc, images, prefixes=pre)
            rec[f"bits_{dname}"] = float(bits[:, 0].sum() / bits[:, 1].sum())
            if proc.pack > 1 and args.draw_samples:
                pics = greedy_draw(model, proc, sizes=sizes, prefixes=pre[:args.draw_samples])
                rec[f"pixel_accuracy_{dname}"] = pixel_accuracy(pics, targets)
                if dname == "A":
                    drawn[name] = pics
        table[name] = rec
    result = {"task": task, "num_images": len(rows), "rows": table,
              "examples": [{"truth": r[truth_col], **{f"K={k}": described[k][i] for k in described}}
                           for i, r in enumerate(rows[:8])],
              "decoders": {"A": str(a), "B": str(b)}, "encoders": {str(k): str(p) for k, p in encoders.items()}}
    if task == "words":
        result["emergent_cer"] = {f"K={k}": character_error_rate([t.strip() for t in texts],
                                                                 [r["text"] for r in rows])
                                  for k, texts in described.items()}
    if drawn:
        grid(out / "grid.png", targets, drawn, [k for k in drawn if k.startswith("De-Diffusion")],
             "short caption" if task == "scenes" else truth_name)
    return result


def grid(path: Path, targets, drawn: dict, dd_rows: list[str], caption_row: str, n: int = 8) -> None:
    """original | drawn from the middle De-Diffusion text | drawn from the caption, for ``n`` test images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("original", targets)] + [(dd_rows[len(dd_rows) // 2], drawn[dd_rows[len(dd_rows) // 2]])] * bool(dd_rows) \
        + [(caption_row, drawn[caption_row])]
    n = min(n, len(targets))
    fig, axes = plt.subplots(n, len(cols), figsize=(1.6 * len(cols) * max(1, targets[0].size[0] / targets[0].size[1]),
                                                     1.6 * n), squeeze=False)
    for j, (title, pics) in enumerate(cols):
        for i in range(n):
            ax = axes[i][j]
            ax.imshow(np.asarray(pics[i].convert("RGB")), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(results: dict) -> str:
    lines = []
    for task, res in results.items():
        acc = any("pixel_accuracy_A" in r for r in res["rows"].values())
        lines += [f"## {task} ({res['num_images']} held-out images)", "",
                  "| text given to the frozen decoder | text tokens | bits/image token (A) | bits/image token (B, "
                  "unseen) |" + (" pixel accuracy (A) | pixel accuracy (B) |" if acc else ""),
                  "|---|---|---|---|" + ("---|---|" if acc else "")]
        for name, r in res["rows"].items():
            line = f"| {name} | {r['text_tokens']:.1f} | {r['bits_A']:.4f} | {r['bits_B']:.4f} |"
            if acc:
                line += f" {100 * r['pixel_accuracy_A']:.1f}% | {100 * r['pixel_accuracy_B']:.1f}% |"
            lines.append(line)
        rows = res["rows"]
        ref = "short caption" if "short caption" in rows else None
        for name in [n for n in rows if n.startswith("De-Diffusion")]:
            ratios = [f"{rows[name]['bits_A'] / rows[c]['bits_A']:.3f}x {c} (A)" for c in
                      ("short caption", "complete caption") if c in rows]
            if ref:
                ratios.append(f"{rows[name]['bits_B'] / rows[ref]['bits_B']:.3f}x short caption (B)")
            lines.append(f"\n{name}: " + ", ".join(ratios))
        if "emergent_cer" in res:
            lines.append("\nEmergent reading (CER of the De-Diffusion text against the word): "
                         + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in res["emergent_cer"].items()))
        lines.append("\nExamples: " + "; ".join(" / ".join(f"`{v}`" for v in e.values()) for e in res["examples"][:4]))
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    try:
        args = parse_args(argv)
        root = Path(args.output_dir)
        root.mkdir(parents=True, exist_ok=True)
        results = {}
        for task in args.tasks:
            out = root / task
            a, b, encoders = train_all(task, args, out)
            results[task] = evaluate(task, a, b, encoders, args, out)
    except ConfigError as e:
        exit_with(e, PROG)
    table = markdown(results)
    (root / "table.md").write_text(table)
    (root / "results.json").write_text(json.dumps(results, indent=1))
    print(table)


if __name__ == "__main__":
    main()
