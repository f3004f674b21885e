"""Training throughput of the PxBy recipe's step (forward + backward + AdamW), eager vs ``torch.compile``.

    python benchmarks/bench_train_pxby.py [--configs pokemon_bilstm pokemon_transformer pokemon_mamba]
        [--batch 16 --length 256 --steps 20 --compile]

Uses each recipe config's ``model:`` section (the paper's sizes) on random sprite-like sequences (real PixelBytes
layout: a size header, rows of colour ids ended by ``\\t``, a caption) and prints tokens/s per backbone; with
``--compile`` also the compiled step and its ratio to eager, measured in the same run (first compiled steps,
which include compilation, are excluded and reported separately).
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from pixeltok.models.pxby import PxByConfig, PxByForCausalLM  # noqa: E402
from pixeltok.tokenization.pixelbytes import PixelBytesTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def batch_of_sprites(tok, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(batch):
        h, w = rng.integers(12, 26, 2)
        idx = rng.integers(0, 55, (h, w)).astype(np.int16)
        idx[:, : w // 3] = idx[:, :1]  # some flat runs, like sprites
        ids = tok.encode_sample(idx, "a small creature with a long tail and bright eyes")
        rows.append((ids * (length // len(ids) + 1))[:length])
    return torch.tensor(rows)


def tokens_per_second(model, opt, x, steps: int, warmup: int) -> tuple[float, float]:
    def step():
        loss = model(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t = time.perf_counter()
    for _ in range(warmup):
        step()
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return x.numel() * steps / (time.perf_counter() - t), first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", nargs="+", default=["pokemon_bilstm", "pokemon_transformer", "pokemon_mamba"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = PixelBytesTokenizer()
    x = batch_of_sprites(tok, args.batch, args.length).to(device)
    print(f"device={device} threads={args.threads} batch={args.batch} length={args.length} steps={args.steps}")
    print(f"{'config':22s} {'params':>8s} {'eager tok/s':>12s}" + (f" {'compiled tok/s':>15s} {'ratio':>6s} {'compile s':>9s}" if args.compile else ""))
    for name in args.configs:
        model_cfg = yaml.safe_load((ROOT / "recipes" / "configs" / f"{name}.yaml").read_text())["model"]
        cfg = PxByConfig(vocab_size=tok.vocab_size, first_color_id=tok.first_color_id, num_colors=tok.num_colors,
                         **{**model_cfg, "dropout": 0.0})
        torch.manual_seed(0)
        model = PxByForCausalLM(cfg).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        eager, _ = tokens_per_second(model, opt, x, args.steps, warmup=2)
        line = f"{name:22s} {sum(p.numel() for p in model.parameters()):8,d} {eager:12,.0f}"
        if args.compile:
            compiled = torch.compile(model)
            fast, first = tokens_per_second(compiled, opt, x, args.steps, warmup=2)
            line += f" {fast:15,.0f} {fast / eager:6.2f} {first:9.1f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
