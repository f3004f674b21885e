#!/usr/bin/env python
"""Train a PxBy model (PixelBytes) on sprites + captions with Accelerate; evaluate on the held-out split; push.

    accelerate launch --config_file recipes/accelerate/cpu2.yaml recipes/train_pxby.py \
        --config recipes/configs/tiny.yaml --output_dir runs/tiny

Runs unchanged on 1 CPU process, 2 CPU processes (gloo) and GPUs. Every hyper-parameter is in the YAML config
(``--set section.key=value`` overrides one). The loop is plain Accelerate: ``prepare``, ``accumulate``,
grad clipping, an LR schedule, evaluation every ``eval_every`` steps with ``gather_for_metrics``, early stopping
on validation loss, ``save_state``/``load_state`` checkpoints (``--resume_from_checkpoint``).

``output_dir`` ends up holding the ``save_pretrained`` model + tokenizer (``AutoModelForCausalLM`` /
``AutoTokenizer`` load it after ``import pixeltok``), ``eval_results.json`` (held-out test metrics: per-token
loss / bits / accuracy and the paper's Hamming / cosine / BLEU over generated windows), ``README.md`` (model
card filled from those results), ``trainer_state.json`` (curves), ``training_config.yaml`` and ``checkpoints/``.
``--push_to_hub --hub_model_id user/name [--private] [--revision branch]`` uploads model, tokenizer, card and
results with the libraries' own ``push_to_hub``.

A bad config, argument or path is reported as one line on stderr (exit status 2) before any process group starts.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, gather_object, set_seed
from accelerate.utils.environment import parse_flag_from_env
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import SchedulerType, get_scheduler

import pixeltok
from pixeltok.data import DataSourceError, load_pokemon, push_dataset_to_hub
from pixeltok.evaluation import generation_metrics, reduce_token_stats, token_stats
from pixeltok.evaluation.generation import generate_window_pairs
from pixeltok.hub_cards import render_pxby_model_card
from pixeltok.models.pxby import PxByConfig, PxByForCausalLM
from pixeltok.scripts import (ArgumentParser, ConfigError, check_exists, checkpoint_dirs, exit_with,
                              library_progress_bars_off, push_run, read_yaml_config)
from pixeltok.tokenization.pixelbytes import PixelBytesTokenizer

logger = get_logger("pixeltok.train_pxby", log_level="INFO")

# Defaults of every config field; a YAML config overrides any subset (unknown keys are an error).
DEFAULTS = {
    "model": {},  # PxByConfig fields (vocabulary layout comes from the tokenizer)
    "data": {
        "source": None,            # Hub dataset id, parquet file/folder, raw sprite folder, "synthetic" (built-in)
        "name": "pixelbytes-sprites",
        "license": None,           # of the training data, stated in the model card
        "provenance": "",
        "long_side": 25, "transparency": "white", "crop": True, "lowercase": True, "order": "image_first",
        "val_size": 0.1, "test_size": 0.1, "seed": 0,
        "max_length": 1024,        # truncate longer sequences (ids)
        "num_proc": None,          # processes for datasets.map / the builder
        "cache_dir": None,
    },
    "training": {
        "seed": 0,
        "per_device_batch_size": 8, "per_device_eval_batch_size": 16, "gradient_accumulation_steps": 1,
        "learning_rate": 2e-3, "weight_decay": 0.01, "adam_beta1": 0.9, "adam_beta2": 0.99,
        "lr_scheduler": "cosine", "warmup_steps": 50, "max_steps": 1000, "max_grad_norm": 1.0,
        "eval_every": 100, "save_every": 100, "save_total_limit": 2, "log_every": 10,
        "early_stopping_patience": 5, "early_stopping_min_delta": 0.0, "load_best_model_at_end": True,
        "mixed_precision": "auto",  # "auto" = bf16 on a bf16-capable GPU, else "no"
        "num_workers": 0,
        "torch_compile": False,    # via Accelerate's dynamo_backend; measured gain: recipes/README.md (Speed)
        "log_with": None,
    },
    "evaluation": {
        "context_length": 64, "generation_length": 16,   # the paper's protocol
        "max_points_per_sequence": None, "max_sequences": None, "max_context": None,
    },
    "hub": {"license": "apache-2.0", "tags": [], "limitations": ""},
}


# Values a type alone does not pin down.
CHOICES = {("data", "transparency"): ("white", "token"), ("data", "order"): ("image_first", "caption_first"),
           ("training", "mixed_precision"): ("auto", "no", "fp16", "bf16"),
           ("training", "lr_scheduler"): tuple(t.value for t in SchedulerType)}
POSITIVE = {"long_side", "max_length", "per_device_batch_size", "per_device_eval_batch_size", "max_steps",
            "gradient_accumulation_steps", "eval_every", "save_every", "log_every", "context_length",
            "generation_length", "num_proc", "max_points_per_sequence", "max_sequences", "max_context"}
OPTIONAL_INT = {"num_proc", "max_points_per_sequence", "max_sequences", "max_context"}  # default None: off/auto
PROG = "train_pxby.py"


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="YAML config (recipes/configs/*.yaml)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--data_source", default=None, help="overrides data.source")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (YAML-parsed), e.g. --set training.max_steps=20")
    p.add_argument("--resume_from_checkpoint", default=None,
                   help="a checkpoint folder (output_dir/checkpoints/step_N) or 'latest' (in output_dir)")
    p.add_argument("--cpu", action="store_true", help="force CPU (also implied by a config with use_cpu: true)")
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", default=None, help="user/name on the Hub")
    p.add_argument("--private", action="store_true", help="create the Hub repo private")
    p.add_argument("--revision", default=None, help="Hub branch to push to (created if missing)")
    p.add_argument("--hub_dataset_id", default=None,
                   help="with --push_to_hub: also push the prepared dataset (parquet + card) to this dataset repo")
    p.add_argument("--hub_token", default=None, help="default: HF_TOKEN / the saved login")
    args = p.parse_args(argv)
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push_to_hub needs --hub_model_id user/name")
    if args.hub_dataset_id and not args.push_to_hub:
        p.error("--hub_dataset_id only makes sense with --push_to_hub")
    return args


def check_value(name: str, value, default, choices=None) -> None:
    """``value`` has the type of ``default`` (ints for floats too); None-default keys are free or optional ints."""
    key = name.rsplit(".", 1)[-1]

    def bad(want):
        hint = ""
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value):
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)"
        raise ConfigError(f"{name} must be {want}, got {value!r}{hint}")

    if choices is not None:
        if value not in choices:
            bad(f"one of {list(choices)}")
    elif key in OPTIONAL_INT or (isinstance(default, int) and not isinstance(default, bool)):
        if value is None and key in OPTIONAL_INT:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key in POSITIVE else 0):
            bad("a positive int" if key in POSITIVE else "an int >= 0")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            bad("true or false")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            bad("a number >= 0")
    elif isinstance(default, (str, list)):
        if not isinstance(value, type(default)):
            bad("a list" if isinstance(default, list) else "a string")


def load_config(path: str, overrides: list[str], data_source: str | None) -> dict:
    """YAML config merged over DEFAULTS; ``--set`` overrides applied last. Any problem is a ConfigError."""
    user = read_yaml_config(path)
    cfg = copy.deepcopy(DEFAULTS)
    for section, values in user.items():
        if section not in cfg:
            raise ConfigError(f"{path}: unknown section {section!r} (known: {sorted(cfg)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping, got {type(values).__name__}")
        for k, v in values.items():
            if section not in ("model",) and k not in cfg[section]:
                raise ConfigError(f"{path}: unknown key {section}.{k} (known: {sorted(cfg[section])})")
            cfg[section][k] = v
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, _, k = key.partition(".")
        if not sep or not k or section not in cfg or (section != "model" and k not in cfg[section]):
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE with a known key")
        cfg[section][k] = yaml.safe_load(raw)
    if data_source is not None:
        cfg["data"]["source"] = data_source
    for section in ("data", "training", "evaluation", "hub"):
        for k, v in cfg[section].items():
            default = DEFAULTS[section][k]
            if default is None and k not in OPTIONAL_INT:  # source, license, cache_dir, log_with: text or null
                if v is not None and k != "log_with" and not isinstance(v, str):
                    raise ConfigError(f"{section}.{k} must be a string or null, got {v!r}")
                continue
            check_value(f"{section}.{k}", v, default, CHOICES.get((section, k)))
    check_model_section(cfg["model"], path)
    if not cfg["data"]["source"]:
        raise ConfigError(f"{path}: data.source is empty; pass --data_source (a Hub dataset id, a parquet file or "
                          "folder, a sprite folder, or 'synthetic' for the built-in sprites)")
    what = "data.source" if data_source is None else "--data_source"
    cfg["data"]["source"] = check_exists(cfg["data"]["source"], what)
    return cfg


VOCAB_LAYOUT = ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "row_token_id", "segment_token_id",
                "first_color_id", "num_colors")


def check_model_section(model_cfg: dict, path: str) -> None:
    """``model:`` keys must be PxByConfig fields (a typo would otherwise become a silent extra attribute) with valid
    values; the vocabulary layout comes from the tokenizer, not the config."""
    defaults = PxByConfig()
    for k, v in model_cfg.items():
        if k in VOCAB_LAYOUT:
            raise ConfigError(f"{path}: model.{k} is set from the tokenizer's vocabulary; remove it from the config")
        if not hasattr(defaults, k):
            raise ConfigError(f"{path}: model.{k} is not a PxByConfig field")
        if v is not None and getattr(defaults, k) is not None:  # None: the field's own default (e.g. embed_dim)
            check_value(f"model.{k}", v, getattr(defaults, k))
    try:
        PxByConfig(**model_cfg)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: model: {e}") from None


def check_args(args, cfg) -> None:
    """The arguments that name things which must already exist, checked before anything starts."""
    if args.hub_dataset_id and not cfg["data"]["license"]:
        raise ConfigError("--hub_dataset_id: set data.license (the training data's licence) before publishing it")
    ckpt = args.resume_from_checkpoint
    if ckpt == "latest":
        if not checkpoint_dirs(Path(args.output_dir)):
            raise ConfigError(f"--resume_from_checkpoint latest: no checkpoint in {args.output_dir}/checkpoints")
    elif ckpt:
        if not os.path.exists(ckpt):
            raise ConfigError(f"not found: {ckpt} (--resume_from_checkpoint)")
        if not (Path(ckpt) / "trainer_state.json").is_file():
            raise ConfigError(f"--resume_from_checkpoint {ckpt}: not a checkpoint (no trainer_state.json)")


def make_collator(pad_id: int):
    """Right-pad to the longest sequence; labels are input_ids with padding = -100 (the model shifts them)."""

    def collate(rows):
        n = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for i, r in enumerate(rows):
            x = torch.as_tensor(r["input_ids"], dtype=torch.long)
            ids[i, : len(x)], mask[i, : len(x)] = x, 1
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}

    return collate


@torch.no_grad()
def evaluate_tokens(model, dataloader, accelerator) -> dict:
    """Token-weighted loss / bits per token / accuracy over a (sharded) split, gathered across processes."""
    model.eval()
    stats = []
    for batch in dataloader:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        nll, correct, n = token_stats(logits[:, :-1], batch["labels"][:, 1:])
        # per-sequence rows, so gather_for_metrics can drop the samples duplicated to even out the last batch
        stats.append(accelerator.gather_for_metrics(torch.stack([nll, correct, n], 1).to(logits.device)))
    model.train()
    s = torch.cat(stats).double().cpu()
    return reduce_token_stats(s[:, 0], s[:, 1], s[:, 2])


def main(argv=None):
    # everything the run needs is checked first, so a typo costs one line, not a process group and two tracebacks
    try:
        args = parse_args(argv)
        cfg = load_config(args.config, args.set, args.data_source)
        check_args(args, cfg)
    except ConfigError as e:
        exit_with(e, PROG)
    try:
        with library_progress_bars_off():
            train(args, cfg)
    except (ConfigError, DataSourceError) as e:  # found in the data itself: still one line, from the main process
        exit_with(e, PROG)


def train(args, cfg):
    tc, dc, ec = cfg["training"], cfg["data"], cfg["evaluation"]
    output_dir = Path(args.output_dir)

    # ---- tokenizer + model ---------------------------------------------------------------------------------------
    set_seed(tc["seed"])
    tokenizer = PixelBytesTokenizer(long_side=dc["long_side"], transparency=dc["transparency"], crop=dc["crop"])
    config = PxByConfig(
        vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, row_token_id=tokenizer.row_token_id,
        segment_token_id=tokenizer.segment_token_id, first_color_id=tokenizer.first_color_id,
        num_colors=tokenizer.num_colors, **cfg["model"])
    model = PxByForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    collate = make_collator(tokenizer.pad_token_id)

    # CPU ranks need cpu=True in the script: the MULTI_GPU launcher (cpu2.yaml) does not forward use_cpu, and without
    # it each CPU process would train alone (world size 1). No CUDA -> CPU; --cpu forces it on a GPU machine.
    cpu = args.cpu or parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    mp = tc["mixed_precision"]
    if mp == "auto":
        mp = "bf16" if (not cpu and torch.cuda.is_bf16_supported()) else "no"
    # DDP runs with its default find_unused_parameters=False: every PxBy parameter reaches the loss (tested in
    # tests/test_pxby.py::test_every_parameter_gets_a_gradient), so no extra graph traversal per step.
    accelerator = Accelerator(
        cpu=cpu, mixed_precision=mp, gradient_accumulation_steps=tc["gradient_accumulation_steps"],
        log_with=tc["log_with"], project_config=ProjectConfiguration(project_dir=str(output_dir)),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        # torch.compile through Accelerate (prepare compiles); None keeps the launch config's dynamo setting
        dynamo_backend="inductor" if tc["torch_compile"] else None,
    )
    world = accelerator.num_processes
    # the real world size: every rank answers through the process group, the main process reports (one line)
    ranks = gather_object([accelerator.process_index])
    accelerator.print(f"[pixeltok] world_size={world} ranks={ranks} device={accelerator.device} "
                      f"distributed_type={accelerator.distributed_type.value}", flush=True)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(output_dir / "training_config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)

    # ---- data: built once by the main process (cached), then read by the others ------------------------------
    with accelerator.main_process_first():
        raw = load_pokemon(dc["source"], cache_dir=dc["cache_dir"], num_proc=dc["num_proc"],
                           long_side=dc["long_side"], transparency=dc["transparency"], crop=dc["crop"],
                           lowercase=dc["lowercase"], order=dc["order"], val_size=dc["val_size"],
                           test_size=dc["test_size"], seed=dc["seed"])
        max_len = int(dc["max_length"])
        extra = [c for c in raw["train"].column_names if c != "input_ids"]
        data = raw.map(lambda b: {"input_ids": [x[:max_len] for x in b["input_ids"]]}, batched=True,
                       num_proc=dc["num_proc"], remove_columns=extra, desc="truncate")
    for split in ("train", "validation", "test"):
        if split not in data or len(data[split]) == 0:
            raise ConfigError(f"data source {dc['source']}: split {split!r} is empty; adjust data.val_size/test_size")
    splits = {k: len(v) for k, v in data.items()}
    logger.info(f"data {dc['source']}: {splits}", main_process_only=True)
    logger.info(f"PxBy {config.backbone}: {n_params:,} parameters", main_process_only=True)

    dl_kw = {"collate_fn": collate, "num_workers": tc["num_workers"], "pin_memory": accelerator.device.type == "cuda"}
    train_dl = DataLoader(data["train"], batch_size=tc["per_device_batch_size"], shuffle=True, drop_last=False, **dl_kw)
    val_dl = DataLoader(data["validation"], batch_size=tc["per_device_eval_batch_size"], **dl_kw)
    test_dl = DataLoader(data["test"], batch_size=tc["per_device_eval_batch_size"], **dl_kw)

    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": tc["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=tc["learning_rate"], betas=(tc["adam_beta1"], tc["adam_beta2"]))
    # the prepared scheduler steps once per process per optimizer step: scale its horizon by the world size
    scheduler = get_scheduler(tc["lr_scheduler"], optimizer, num_warmup_steps=tc["warmup_steps"] * world,
                              num_training_steps=tc["max_steps"] * world)
    model, optimizer, train_dl, val_dl, test_dl, scheduler = accelerator.prepare(
        model, optimizer, train_dl, val_dl, test_dl, scheduler)
    accelerator.init_trackers("pxby", config={k: v for s in ("training", "data") for k, v in cfg[s].items()
                                               if isinstance(v, (int, float, str, bool))})

    # ---- state (saved with every checkpoint; restored on resume) ------------------------------------------------
    state = {"step": 0, "micro_step": 0, "epoch": 0, "best_val_loss": math.inf, "best_step": 0, "bad_evals": 0,
             "stopped_early": False, "train_tokens": 0, "train_time_s": 0.0, "log_history": []}
    if args.resume_from_checkpoint:
        ckpt = Path(args.resume_from_checkpoint)  # checked by check_args
        if args.resume_from_checkpoint == "latest":
            ckpt = checkpoint_dirs(output_dir)[-1]
        accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / "trainer_state.json").read_text())
        state["best_val_loss"] = math.inf if state["best_val_loss"] is None else state["best_val_loss"]
        accelerator.print(f"[pixeltok] resumed from {ckpt} at step {state['step']}", flush=True)

    def save_checkpoint():
        path = output_dir / "checkpoints" / f"step_{state['step']}"
        accelerator.save_state(str(path))  # model, optimizer, scheduler, RNG states, dataloader/sampler state
        if accelerator.is_main_process:
            s = dict(state, best_val_loss=None if math.isinf(state["best_val_loss"]) else state["best_val_loss"])
            (path / "trainer_state.json").write_text(json.dumps(s, indent=1))
            for old in checkpoint_dirs(output_dir)[: -tc["save_total_limit"]] if tc["save_total_limit"] else []:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def save_best():
        if accelerator.is_main_process:
            accelerator.unwrap_model(model, keep_torch_compile=False).save_pretrained(output_dir / "best_model")
        accelerator.wait_for_everyone()

    # ---- train ------------------------------------------------------------------------------------------------
    progress = tqdm(total=tc["max_steps"], initial=state["step"], desc="train",
                    disable=not accelerator.is_local_main_process)
    model.train()
    running, running_n = 0.0, 0
    t0, tokens = time.perf_counter(), 0
    while state["step"] < tc["max_steps"] and not state["stopped_early"]:
        train_dl.set_epoch(state["epoch"])
        skip = state["micro_step"] - state["epoch"] * len(train_dl)
        epoch_dl = train_dl
        if skip > 0:  # resume mid-epoch: same shuffled order, first `skip` batches left out
            epoch_dl = accelerator.skip_first_batches(train_dl, skip)
            epoch_dl.set_epoch(state["epoch"])  # the new loader would otherwise reseed its sampler as epoch 0
        for batch in epoch_dl:
            with accelerator.accumulate(model):
                out = model(**batch)
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and tc["max_grad_norm"]:
                    accelerator.clip_grad_norm_(model.parameters(), tc["max_grad_norm"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state["micro_step"] += 1
            tokens += int(batch["attention_mask"].sum())
            running += float(out.loss.detach())
            running_n += 1
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            progress.update(1)
            if state["step"] % tc["log_every"] == 0 or state["step"] == tc["max_steps"]:
                loss = accelerator.reduce(torch.tensor(running / running_n, device=accelerator.device), "mean").item()
                rec = {"step": state["step"], "train_loss": loss, "lr": scheduler.get_last_lr()[0]}
                state["log_history"].append(rec)
                accelerator.log(rec, step=state["step"])
                progress.set_postfix(loss=f"{loss:.4f}")
                running, running_n = 0.0, 0
            if state["step"] % tc["eval_every"] == 0 or state["step"] == tc["max_steps"]:
                t_eval = time.perf_counter()
                val = evaluate_tokens(model, val_dl, accelerator)
                t0 += time.perf_counter() - t_eval  # throughput counts training time only
                rec = {"step": state["step"], "val_loss": val["loss"], "val_bits_per_token": val["bits_per_token"],
                       "val_token_accuracy": val["token_accuracy"]}
                state["log_history"].append(rec)
                accelerator.log(rec, step=state["step"])
                logger.info(f"step {state['step']}: {rec}", main_process_only=True)
                if val["loss"] < state["best_val_loss"] - tc["early_stopping_min_delta"]:
                    state.update(best_val_loss=val["loss"], best_step=state["step"], bad_evals=0)
                    save_best()
                else:
                    state["bad_evals"] += 1
                    if tc["early_stopping_patience"] and state["bad_evals"] >= tc["early_stopping_patience"]:
                        state["stopped_early"] = True
                        logger.info(f"early stopping at step {state['step']} (best {state['best_step']})",
                                    main_process_only=True)
            if state["step"] % tc["save_every"] == 0 or state["step"] == tc["max_steps"] or state["stopped_early"]:
                state["train_time_s"] += time.perf_counter() - t0
                state["train_tokens"] += int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), "sum"))
                t0, tokens = time.perf_counter(), 0
                save_checkpoint()
            if state["step"] >= tc["max_steps"] or state["stopped_early"]:
                break
        else:
            state["epoch"] += 1
    progress.close()

    # ---- final model: the best validation checkpoint --------------------------------------------------------------
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    if tc["load_best_model_at_end"] and (output_dir / "best_model").is_dir():
        best = PxByForCausalLM.from_pretrained(output_dir / "best_model")
        unwrapped.load_state_dict(best.state_dict())

    # ---- held-out test: per-token metrics + the paper's generation metrics ------------------------------------------
    test = evaluate_tokens(model, test_dl, accelerator)
    seqs = [list(x) for x in data["test"]["input_ids"]][: ec["max_sequences"]]
    with accelerator.split_between_processes(seqs) as mine:
        preds, refs = generate_window_pairs(
            unwrapped, tokenizer, mine, context_length=ec["context_length"], generation_length=ec["generation_length"],
            max_points_per_sequence=ec["max_points_per_sequence"], max_context=ec["max_context"],
            show_progress=accelerator.is_local_main_process) if mine else ([], [])
    preds, refs = gather_object(preds), gather_object(refs)
    gen = generation_metrics(preds, refs)
    test.update(hamming=gen["hamming"], cosine=gen["cosine"], bleu=gen["bleu"], num_windows=gen["num_samples"],
                num_sequences=len(seqs), split="test", context_length=ec["context_length"],
                generation_length=ec["generation_length"])

    # every rank reports what it holds; the test checks that they agree
    with torch.no_grad():
        checksum = float(sum(p.double().sum() for p in unwrapped.parameters()))
    report = {"rank": accelerator.process_index, "world_size": world, "step": state["step"],
              "param_checksum": checksum, "test": test}
    reports_dir = output_dir / "rank_reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / f"rank{accelerator.process_index}.json").write_text(json.dumps(report, indent=1))
    checksums = gather_object([checksum])
    accelerator.print(f"[pixeltok] world_size={world} step={state['step']} param_checksum={checksum:.10e} "
                      f"replicas_agree={len(set(checksums)) == 1} test_loss={test['loss']:.6f}", flush=True)

    if accelerator.is_main_process:
        train_time = state["train_time_s"]
        results = {
            "model_name": output_dir.name if not args.hub_model_id else args.hub_model_id.split("/")[-1],
            "hub_model_id": args.hub_model_id, "num_parameters": n_params, "pixeltok_version": pixeltok.__version__,
            "seed": tc["seed"], "model_config": {k: v for k, v in unwrapped.config.to_dict().items()
                                                  if isinstance(v, (int, float, str, bool, type(None)))},
            "dataset": {"name": dc["name"], "source": str(dc["source"]), "license": dc["license"],
                        "provenance": dc["provenance"], "hub_id": args.hub_dataset_id, "splits": splits,
                        "long_side": dc["long_side"],
                        "lowercase": dc["lowercase"], "seed": dc["seed"], "order": dc["order"]},
            "training": {"world_size": world, "steps": state["step"], "device": str(accelerator.device.type),
                         "mixed_precision": mp, "wall_time_s": train_time,
                         "tokens_per_second": state["train_tokens"] / train_time if train_time else 0.0,
                         "train_tokens": state["train_tokens"], "stopped_early": state["stopped_early"],
                         "best_step": state["best_step"],
                         "best_val_loss": None if math.isinf(state["best_val_loss"]) else state["best_val_loss"],
                         "hyperparameters": {k: v for k, v in tc.items() if k not in ("log_with",)}
                         | {"total_batch_size": tc["per_device_batch_size"] * world
                            * tc["gradient_accumulation_steps"]}},
            "test": test, "hub": cfg["hub"],
        }
        unwrapped.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=1))
        (output_dir / "trainer_state.json").write_text(json.dumps(
            dict(state, best_val_loss=results["training"]["best_val_loss"]), indent=1))
        card = render_pxby_model_card(results, repo_id=args.hub_model_id, revision=args.revision)
        card.save(output_dir / "README.md")
        logger.info(f"test: {json.dumps(test)}", main_process_only=True)

        if args.push_to_hub:
            if args.hub_dataset_id:  # the prepared splits as parquet, with a dataset card (pixeltok.data)
                push_dataset_to_hub(raw, args.hub_dataset_id, "pokemon", token=args.hub_token, private=args.private,
                                    license=dc["license"], source=str(dc["source"]), pretty_name=dc["name"],
                                    notes=dc["provenance"] or "")
            push_run(args, unwrapped, tokenizer, output_dir, card, "PxBy model",
                     processor_message="PixelBytes tokenizer",
                     files_message="Held-out evaluation results, config and training curves",
                     card_message="Model card with held-out metrics")
            logger.info(f"pushed to {args.hub_model_id}" + (f"@{args.revision}" if args.revision else ""),
                        main_process_only=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if world > 1:
        # Every file is written and every rank is here: leave now. Returning would free the DDP model, whose gloo
        # process group is then destroyed while holding the GIL, and gloo's worker thread, still releasing the
        # tensors of a finished gather, waits for that GIL: a deadlock seen in 2 of 3 two-rank CPU runs here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
