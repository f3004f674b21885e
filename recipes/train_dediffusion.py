#!/usr/bin/env python
"""Train a De-Diffusion encoder (image -> K text tokens) through a FROZEN pixel-token decoder; evaluate; push.

    accelerate launch --config_file recipes/accelerate/cpu1.yaml recipes/train_lm.py \
        --config recipes/configs/lm_draw_tiny.yaml --output_dir runs/draw_tiny            # the decoder first
    accelerate launch --config_file recipes/accelerate/cpu2.yaml recipes/train_dediffusion.py \
        --config recipes/configs/dediffusion_tiny.yaml --output_dir runs/dediffusion_tiny

The decoder is a caption-first causal LM from ``recipes/train_lm.py`` (``data.task: draw``), loaded with
``from_pretrained`` and frozen: it never changes. Each step the encoder writes K tokens of the decoder's text
vocabulary per image (hard Gumbel-softmax, straight-through, temperature annealed as the encoder config says), the
one-hot rows multiply the decoder's input embedding matrix, and the decoder's loss on the image's pixel tokens given
that text is the only loss. The images come from the same ``pixeltok.data`` builder the decoder was trained on.

Evaluation every ``eval_every`` steps: bits per image token of validation images given the encoder's argmax text.
At the end: the same on the held-out test split, with example texts. ``output_dir`` gets the encoder
(``AutoModel.from_pretrained`` after ``import pixeltok``; ``describe(images)``) with the decoder's processor (its
tokenizer decodes the text), ``eval_results.json``, ``trainer_state.json``, ``training_config.yaml``, ``README.md``
(model card) and ``checkpoints/`` (``--resume_from_checkpoint latest``).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate.utils import gather_object, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import pixeltok
from pixeltok.data import DATA_KEYS, DataSourceError, load_source
from pixeltok.drawing import image_bits, image_span_ids
from pixeltok.hub_cards import render_dediffusion_model_card
from pixeltok.models.dediffusion import (DeDiffusionConfig, DeDiffusionEncoder, batch_collapse, text_repetition,
                                        text_token_ids)
from pixeltok.scripts import (ConfigError, check_exists, check_recipe_args, load_yaml_config, lr_factor,
                              load_recipe_data, make_accelerator, push_run, recipe_parser, resume, run_recipe,
                              save_checkpoint)
from pixeltok.tokenization.pixel_codec import pad_rows

PROG = "train_dediffusion.py"

DEFAULTS = {
    "decoder": {"path": None},  # a recipes/train_lm.py output folder (data.task: draw), or a Hub id
    # config: DeDiffusionConfig fields (image size and text ids are filled in from the data); text_tokens: "seen" =
    # the decoder's text tokens that its training texts use (the others have untrained embeddings: text the decoder
    # cannot read, where a Gumbel encoder collapses), "all" = every text token of its tokenizer
    "encoder": {"config": {}, "text_tokens": "seen"},
    "data": {"source": "scenes", "n_train": 20000, "n_val": 200, "n_test": 500, "options": {}, "tier": "mixed",
             "fonts": "matplotlib", "words": "wamerican", "seed": 0, "cache_dir": None},
    "training": {"seed": 0, "per_device_batch_size": 32, "gradient_accumulation_steps": 1, "learning_rate": 1e-3,
                 "min_lr_ratio": 0.1, "weight_decay": 0.01, "adam_beta1": 0.9, "adam_beta2": 0.98, "warmup_steps": 100,
                 "max_steps": 5000, "time_budget_minutes": None, "max_grad_norm": 1.0, "log_every": 10,
                 "eval_every": 250, "save_every": 250, "save_total_limit": 2, "mixed_precision": "auto",
                 "num_threads": None, "diversity_weight": 0.0, "repetition_weight": 0.0},
    "evaluation": {"val_samples": 128, "test_samples": None, "batch_size": 64},
    "hub": {"license": "apache-2.0", "tags": []},
}
CHOICES = {("data", "source"): ("scenes", "text_images", "sprites"), ("encoder", "text_tokens"): ("seen", "all"),
           ("data", "tier"): ("clean", "hard", "mixed"),
           ("training", "mixed_precision"): ("auto", "no", "bf16", "fp16")}
OPTIONAL = {("decoder", "path"), ("data", "cache_dir"), ("training", "time_budget_minutes"),
            ("training", "num_threads"), ("evaluation", "test_samples")}


def parse_args(argv=None):
    p = recipe_parser(PROG, __doc__.split("\n")[0], "YAML config (recipes/configs/dediffusion_*.yaml)")
    return p.parse_args(argv)


def load_config(path: str, overrides: list[str]) -> dict:
    cfg = load_yaml_config(path, overrides, DEFAULTS, CHOICES, OPTIONAL)  # --set encoder.config.X=... included
    if not isinstance(cfg["encoder"]["config"], dict):
        raise ConfigError(f"{path}: encoder.config must be a mapping of DeDiffusionConfig fields")
    known = set(inspect.signature(DeDiffusionConfig.__init__).parameters) - {"self", "kwargs", "text_token_ids",
                                                                             "decoder_vocab_size"}
    for k in cfg["encoder"]["config"]:
        if k not in known:
            raise ConfigError(f"{path}: encoder.config.{k} is not a DeDiffusionConfig field you can set")
    if not cfg["decoder"]["path"]:
        raise ConfigError(f"{path}: decoder.path is required (a recipes/train_lm.py output with data.task: draw)")
    if not isinstance(cfg["data"]["options"], dict):
        raise ConfigError(f"{path}: data.options must be a mapping of builder options")
    return cfg


def check_args(args, cfg) -> None:
    check_exists(cfg["decoder"]["path"], "decoder.path")
    check_recipe_args(args)


def seen_text_tokens(decoder_path: str, processor, allowed: list[int]) -> list[int]:
    """The ids of ``allowed`` that occur in the decoder's training texts (its ``training_config.yaml`` data, rebuilt
    through the same builder: up to 20,000 rows of its caption columns)."""
    local = Path(decoder_path) / "training_config.yaml"
    if not local.is_file():
        from huggingface_hub import hf_hub_download

        local = Path(hf_hub_download(decoder_path, "training_config.yaml"))
    ddc = yaml.safe_load(local.read_text())["data"]
    rows = load_source(**{k: ddc[k] for k in DATA_KEYS}, n_train=min(ddc["n_train"], 20000))["train"]
    seen = set()
    for column in ddc.get("captions") or ["caption"]:
        for ids in processor.tokenizer(list(rows[column]), add_special_tokens=False)["input_ids"]:
            seen.update(ids)
    keep = [i for i in allowed if i in seen]
    if not keep:
        raise ConfigError(f"decoder.path {decoder_path}: none of its text tokens occurs in its training texts")
    return keep


def encoder_config(cfg: dict, processor, sample_image) -> DeDiffusionConfig:
    """The encoder's config: the user's fields over defaults that fit the data (its size) and the decoder (ids)."""
    fields = dict(cfg["encoder"]["config"])
    if cfg["data"]["source"] == "text_images":  # one line of text: the reader's height, the processor's width
        h = processor.image_height or 16
        fields.setdefault("image_height", h + (-h) % fields.get("patch_size", 4))
        fields.setdefault("image_width", processor.max_side + (-processor.max_side) % fields.get("patch_size", 4))
        fields.setdefault("fit", "line")
    else:  # the data's own size, rounded up to whole patches
        w, h = sample_image.size
        p = fields.get("patch_size", 4)
        fields.setdefault("image_height", h + (-h) % p)
        fields.setdefault("image_width", w + (-w) % p)
    ids = text_token_ids(processor)
    if cfg["encoder"]["text_tokens"] == "seen":
        ids = seen_text_tokens(cfg["decoder"]["path"], processor, ids)
    try:
        return DeDiffusionConfig(**fields, text_token_ids=ids, decoder_vocab_size=len(processor.tokenizer))
    except ValueError as e:
        raise ConfigError(f"encoder.config: {e}") from None


def main(argv=None):
    run_recipe(PROG, argv, parse_args, load_config, check_args, train, errors=(DataSourceError,))


def train(args, cfg):
    from transformers import AutoModelForCausalLM, AutoProcessor

    tc, dc, ec = cfg["training"], cfg["data"], cfg["evaluation"]
    output_dir = Path(args.output_dir)
    accelerator, mp = make_accelerator(args, tc, output_dir)
    world, rank, main_proc = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    set_seed(tc["seed"])

    # ---- the frozen decoder, its processor, the data -------------------------------------------------------------
    try:
        processor = AutoProcessor.from_pretrained(cfg["decoder"]["path"])
        decoder = AutoModelForCausalLM.from_pretrained(cfg["decoder"]["path"])
    except (OSError, ValueError) as e:
        raise ConfigError(f"decoder.path {cfg['decoder']['path']}: cannot load a model and processor ({e})") from None
    decoder.requires_grad_(False).eval().to(accelerator.device)
    with accelerator.main_process_first():
        data = load_recipe_data(dc)
    enc_config = encoder_config(cfg, processor, data["train"][0]["image"])
    encoder = DeDiffusionEncoder(enc_config)
    n_params = sum(p.numel() for p in encoder.parameters())
    bos = processor.tokenizer.bos_token_id
    preprocess = encoder.preprocess  # bound before accelerate wraps the encoder (DDP has no preprocess)

    def collate(rows):
        images = [r["image"] for r in rows]
        spans = image_span_ids(processor, images)  # <boi> pixels <eoi>
        L = max(len(s) for s in spans)
        labels = [np.concatenate([[-100], s[1:]]) for s in spans]  # the loss covers the pixels and <eoi>
        return {"pixel_values": preprocess(images),
                "span_ids": torch.from_numpy(pad_rows(spans, processor.tokenizer.pad_token_id, L)),
                "span_labels": torch.from_numpy(pad_rows(labels, -100, L))}

    train_dl = DataLoader(data["train"], batch_size=tc["per_device_batch_size"], shuffle=True, collate_fn=collate)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=tc["learning_rate"], weight_decay=tc["weight_decay"],
                                  betas=(tc["adam_beta1"], tc["adam_beta2"]))
    encoder, optimizer, train_dl = accelerator.prepare(encoder, optimizer, train_dl)
    unwrapped = accelerator.unwrap_model(encoder)
    embedding = decoder.get_input_embeddings().weight  # (V, d), frozen
    ranks = gather_object([rank])
    if main_proc:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "training_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        print(f"[pixeltok] world_size={world} ranks={ranks} encoder parameters={n_params:,} "
              f"K={enc_config.num_queries} text tokens={len(enc_config.text_token_ids)} "
              f"decoder={cfg['decoder']['path']}", flush=True)

    def reconstruction_loss(batch, step):
        """Mean NLL (nats) of the pixel tokens given the encoder's text, through the frozen decoder; how far the
        batch's texts have collapsed to one (:func:`batch_collapse`) and repeat a token (:func:`text_repetition`)."""
        out = encoder(batch["pixel_values"], tau=enc_config.gumbel_temperature(step))
        collapse = batch_collapse(out.logits)
        extra = tc["diversity_weight"] * collapse + tc["repetition_weight"] * text_repetition(out.logits)
        text = unwrapped.embed_tokens(out.tokens, embedding)  # (B, K, d): gradients reach the encoder here
        parts = [embedding[torch.full((text.shape[0], 1), bos, device=text.device)]] if bos is not None else []
        inputs = torch.cat(parts + [text, embedding[batch["span_ids"]]], 1)  # (B, [1] + K + T, d)
        logits = decoder(inputs_embeds=inputs).logits  # right padding under a causal mask: no mask needed
        n_text = inputs.shape[1] - batch["span_ids"].shape[1]
        labels = batch["span_labels"][:, 1:]  # position n_text + t predicts span token t + 1
        pred = logits[:, n_text:-1].float()
        return torch.nn.functional.cross_entropy(pred.transpose(1, 2), labels, ignore_index=-100), collapse, extra

    def text_bits(split: str, n: int | None) -> tuple[float, list[str], np.ndarray]:
        rows = [data[split][i] for i in range(len(data[split]) if n is None else min(n, len(data[split])))]
        with accelerator.split_between_processes(rows) as mine:
            ids = unwrapped.describe([r["image"] for r in mine], return_ids=True) if mine else []
            prefixes = [np.concatenate([[bos] if bos is not None else [], i]).astype(np.int64) for i in ids]
            bits = image_bits(decoder, processor, [r["image"] for r in mine], prefixes=prefixes,
                              batch_size=ec["batch_size"]).tolist() if mine else []
            texts = [processor.tokenizer.decode(i.tolist()) for i in ids]
        bits = np.asarray(gather_object(bits)).reshape(-1, 2)
        return float(bits[:, 0].sum() / bits[:, 1].sum()), gather_object(texts), bits

    state = {"step": 0, "micro_step": 0, "epoch": 0, "train_time_s": 0.0, "best_val_bits": None, "log_history": []}
    state = resume(accelerator, args, output_dir, state)

    # ---- train ----------------------------------------------------------------------------------------------------
    budget_s = tc["time_budget_minutes"] * 60 if tc["time_budget_minutes"] else None
    progress_bar = tqdm(total=tc["max_steps"], initial=state["step"], desc="train", disable=not main_proc)
    encoder.train()
    t0, running, running_n, running_collapse, done = time.perf_counter(), 0.0, 0, 0.0, False
    while not done:
        skip = state["micro_step"] - state["epoch"] * len(train_dl)
        epoch_dl = accelerator.skip_first_batches(train_dl, skip) if skip > 0 else train_dl
        for batch in epoch_dl:
            elapsed = state["train_time_s"] + time.perf_counter() - t0
            if budget_s:
                elapsed = float(accelerator.reduce(torch.tensor(elapsed, device=accelerator.device), "max"))
            progress = max(state["step"] / tc["max_steps"], elapsed / budget_s if budget_s else 0.0)
            for g in optimizer.param_groups:
                g["lr"] = tc["learning_rate"] * lr_factor(progress, state["step"], tc)
            with accelerator.accumulate(encoder), accelerator.autocast():
                loss, collapse, extra = reconstruction_loss(batch, state["step"])
                accelerator.backward(loss + extra)
                if accelerator.sync_gradients and tc["max_grad_norm"]:
                    accelerator.clip_grad_norm_(encoder.parameters(), tc["max_grad_norm"])
                optimizer.step()
                optimizer.zero_grad()
            state["micro_step"] += 1
            running, running_n = running + float(loss.detach()), running_n + 1
            running_collapse += float(collapse.detach())
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            progress_bar.update(1)
            done = state["step"] >= tc["max_steps"] or (budget_s is not None and elapsed >= budget_s)
            if state["step"] % tc["log_every"] == 0 or done:
                rec = {"step": state["step"], "train_bits": running / running_n / math.log(2),
                       "collapse": running_collapse / running_n,
                       "tau": enc_config.gumbel_temperature(state["step"]), "lr": optimizer.param_groups[0]["lr"],
                       "train_minutes": elapsed / 60}
                state["log_history"].append(rec)
                progress_bar.set_postfix(bits=f"{rec['train_bits']:.3f}", tau=f"{rec['tau']:.2f}")
                running, running_n, running_collapse = 0.0, 0, 0.0
            if state["step"] % tc["eval_every"] == 0 or done:
                t_eval = time.perf_counter()
                val_bits, texts, _ = text_bits("validation", ec["val_samples"])
                encoder.train()
                t0 += time.perf_counter() - t_eval  # the budget counts training time only
                state["log_history"].append({"step": state["step"], "val_bits": val_bits, "example": texts[0],
                                             "train_minutes": elapsed / 60})
                progress_bar.set_postfix(bits=f"{state['log_history'][-2]['train_bits']:.3f}",
                                         val_bits=f"{val_bits:.3f}")
                if state["best_val_bits"] is None or val_bits < state["best_val_bits"]:
                    state["best_val_bits"] = val_bits
            if state["step"] % tc["save_every"] == 0 or done:
                state["train_time_s"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                save_checkpoint(accelerator, output_dir, state, tc["save_total_limit"])
            if done:
                break
        else:
            state["epoch"] += 1
    progress_bar.close()

    # ---- held-out test ----------------------------------------------------------------------------------------------
    test_bits, texts, bits = text_bits("test", ec["test_samples"])
    rows = [data["test"][i] for i in range(min(8, len(data["test"])))]
    caption_col = "text" if dc["source"] == "text_images" else "caption"
    test = {"bits_per_image_token": test_bits, "bits_per_image": float(bits[:, 0].mean()), "num_images": len(bits),
            "examples": [{"truth": r[caption_col], "text": t} for r, t in zip(rows, texts)]}
    with torch.no_grad():
        checksum = float(sum(p.double().sum() for p in unwrapped.parameters()))
    agree = len(set(gather_object([checksum]))) == 1
    if main_proc:
        results = {"model_name": args.hub_model_id.split("/")[-1] if args.hub_model_id else output_dir.name,
                   "hub_model_id": args.hub_model_id, "pixeltok_version": pixeltok.__version__,
                   "num_parameters": n_params, "encoder_config": {k: v for k, v in enc_config.to_dict().items()
                                                                  if k != "text_token_ids"},
                   "num_text_tokens": len(enc_config.text_token_ids), "decoder": cfg["decoder"]["path"],
                   "dataset": {**{k: dc[k] for k in ("source", "n_train", "n_val", "n_test", "seed", "options")},
                               "splits": {k: len(v) for k, v in data.items()}},
                   "training": {"world_size": world, "steps": state["step"], "device": accelerator.device.type,
                                "mixed_precision": mp, "train_minutes": state["train_time_s"] / 60,
                                "hyperparameters": tc},
                   "test": test, "hub": cfg["hub"]}
        unwrapped.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)  # its tokenizer turns the tokens into text (describe)
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=1))
        (output_dir / "trainer_state.json").write_text(json.dumps(state, indent=1))
        card = render_dediffusion_model_card(results, repo_id=args.hub_model_id)
        card.save(output_dir / "README.md")
        print(f"[pixeltok] world_size={world} replicas_agree={agree} steps={state['step']} "
              f"test_bits_per_image_token={test_bits:.4f} example={texts[0]!r}", flush=True)
        if args.push_to_hub:  # the processor carries the tokenizer that turns the tokens into text
            push_run(args, unwrapped, processor, output_dir, card, "De-Diffusion encoder")
    accelerator.wait_for_everyone()
    if world > 1:  # gloo's teardown can deadlock under the GIL (see train_pxby.py): leave once every rank is done
        os._exit(0)
    accelerator.end_training()


if __name__ == "__main__":
    main()
