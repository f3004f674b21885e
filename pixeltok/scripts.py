"""Plumbing shared by pixeltok's scripts (the ``recipes/`` and ``pixeltok`` commands): one-line errors that never
reach a process group, telling a local path from a Hub id without asking the Hub, and quiet library progress bars.

Light on purpose (standard library only at import): ``pixeltok --help`` imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import re
import sys
import time
from pathlib import Path

_FILE_SUFFIX = re.compile(r"\.(parquet|arrow|jsonl?|csv|ya?ml|png|gif|jpe?g|bmp|tiff?|webp|txt|ptk|tar|gz|tgz|zip|bin|"
                          r"pt|safetensors)$", re.I)


class ConfigError(ValueError):
    """A bad config value, argument or path: reported as one line, before any process group starts."""


def exit_with(error: Exception, prog: str) -> None:
    """One line on stderr, exit status 2. Under ``accelerate launch`` every rank validates (no process group yet, so
    RANK tells them apart): only rank 0 prints; the others wait for the launcher to stop them, because exiting first
    would get rank 0 killed before its line is out."""
    if os.environ.get("RANK", "0") == "0":
        print(f"{prog}: error: {error}", file=sys.stderr, flush=True)
    else:
        time.sleep(10)
    sys.exit(2)


def looks_like_path(s: str) -> bool:
    """A local path rather than a Hub id: ``./x``, ``/x``, ``~/x``, ``a/b/c`` (a Hub id has one slash), a file
    suffix (``x.parquet``), or ``org/name`` whose ``org`` folder exists here (``runs/bilstm`` when ``runs/`` does)."""
    seps = [c for c in (os.sep, os.altsep) if c]
    if s.startswith((".", "~", *seps)) or sum(s.count(c) for c in seps) > 1 or (os.sep != "/" and os.sep in s):
        return True
    if _FILE_SUFFIX.search(s):
        return True
    return "/" in s and os.path.isdir(s.split("/")[0])


def is_hub_repo_id(s: str) -> bool:
    """``org/name`` as the Hub spells repository ids (and not a local-looking path)."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s)) and not looks_like_path(s)


def check_exists(path: str, what: str) -> str:
    """``path`` with ``~`` expanded; ConfigError ``not found: PATH`` for a missing local path (never asks the Hub)."""
    full = os.path.expanduser(path)
    if looks_like_path(path) and not os.path.exists(full):
        raise ConfigError(f"not found: {path} ({what})")
    return full if looks_like_path(path) else path


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """A recipe's ``output_dir/checkpoints/step_N`` folders that hold a ``trainer_state.json``, oldest step first."""
    found = [(int(m.group(1)), p) for p in (Path(output_dir) / "checkpoints").glob("step_*")
             if (m := re.fullmatch(r"step_(\d+)", p.name)) and (p / "trainer_state.json").is_file()]
    return [p for _, p in sorted(found)]


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are a :class:`ConfigError` (one line, reported like the config errors), instead of
    usage text printed by every rank."""

    def error(self, message):
        raise ConfigError(f"{message} (see --help)")


def _not_cpu_kernel_advice(record) -> bool:
    return "falling back to its reference PyTorch implementation" not in record.getMessage()


def quiet_cpu_kernel_advice() -> None:
    """transformers advises installing CUDA-only kernels (mamba_ssm, causal_conv1d) whenever it runs a reference
    implementation; on a machine without CUDA there is nothing to install, so that advice is dropped there."""
    import logging

    import torch

    if not torch.cuda.is_available():
        log = logging.getLogger("transformers.integrations.hub_kernels")
        if _not_cpu_kernel_advice not in log.filters:
            log.addFilter(_not_cpu_kernel_advice)
    # accelerate's save_state notes that a tied lm_head (GPT-2) is stored once; from_pretrained re-ties it
    log = logging.getLogger("accelerate.utils.other")
    if _not_tied_weights_note not in log.filters:
        log.addFilter(_not_tied_weights_note)


def _not_tied_weights_note(record) -> bool:
    return "Removed shared tensor" not in record.getMessage()


@contextlib.contextmanager
def library_progress_bars_off():
    """The libraries' own bars (datasets' split generation and map, transformers' "Writing model shards" and
    "Loading weights", Hub transfers) would print inside a script's one bar: off while it runs, restored after."""
    from datasets.utils import are_progress_bars_disabled as datasets_off, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    ds_was_on, hf_was_on = not datasets_off(), hf_logging.is_progress_bar_enabled()
    if ds_was_on:
        disable_progress_bars()
    hf_logging.disable_progress_bar()  # transformers' tqdm and huggingface_hub's
    try:
        yield
    finally:
        if ds_was_on:
            enable_progress_bars()
        if hf_was_on:
            hf_logging.enable_progress_bar()


def check_value(where: str, value, default, choices=None, optional=False) -> None:
    """``value`` against the type of its ``default`` (bools, numbers >= 0) and ``choices``; raises ConfigError."""
    if value is None and (optional or default is None):
        return
    if choices and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {list(choices)}")
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) != isinstance(value, bool):
            raise ConfigError(f"{where}: expected {'true/false' if isinstance(default, bool) else 'a number'}, "
                              f"got {value!r}")
    elif isinstance(default, (int, float)) and default is not None:
        if not isinstance(value, (int, float)) or (isinstance(default, int) and not isinstance(value, int)
                                                   and not isinstance(default, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{where}: must be >= 0, got {value!r}")


def read_yaml_config(path: str) -> dict:
    """The mapping of sections in the YAML file ``path`` (``--config``); a missing or unreadable file, bad YAML or
    another shape is a one-line :class:`ConfigError`."""
    import yaml

    full = os.path.expanduser(path)
    if not os.path.exists(full):
        raise ConfigError(f"not found: {path} (--config)")
    try:
        with open(full, encoding="utf-8") as f:
            user = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({type(e).__name__}: {e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(user, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(user).__name__}")
    return user


def load_yaml_config(path: str, overrides: list[str], defaults: dict, choices: dict | None = None,
                     optional: set | None = None) -> dict:
    """A recipe's YAML config merged over ``defaults`` (sections of keys), ``--set SECTION.KEY=VALUE`` overrides
    applied last (``--set SECTION.KEY.ENTRY=VALUE`` sets one entry of a mapping-valued key). Unknown sections or keys, values of the wrong type, values outside ``choices[(section, key)]``
    and negative numbers raise :class:`ConfigError` naming the file (or ``--set``) and the key; keys in
    ``optional`` may be null."""
    import yaml

    user = read_yaml_config(path)
    cfg = copy.deepcopy(defaults)
    items = [(s, k, v, path) for s, vals in user.items() for k, v in (vals.items() if isinstance(vals, dict) else
                                                                      [(None, vals)])]
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, _, k = key.partition(".")
        if not sep or not k:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        items.append((section, k, yaml.safe_load(raw), "--set"))
    for section, k, v, where in items:
        if section not in cfg:
            raise ConfigError(f"{where}: unknown section {section!r} (known: {sorted(cfg)})")
        if k is None:
            raise ConfigError(f"{where}: section {section!r} must be a mapping")
        head, dot, sub = k.partition(".")
        if dot and isinstance(cfg[section].get(head), dict):  # --set model.config.hidden_size=64: one entry of a mapping
            cfg[section][head] = {**cfg[section][head], sub: v}
            continue
        if k not in cfg[section]:
            raise ConfigError(f"{where}: unknown key {section}.{k} (known: {sorted(cfg[section])})")
        check_value(f"{where}: {section}.{k}", v, defaults[section][k], (choices or {}).get((section, k)),
                    (section, k) in (optional or set()))
        cfg[section][k] = v
    return cfg


def lr_factor(progress: float, step: int, tc: dict) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from 1 to ``min_lr_ratio`` as ``progress`` goes 0 -> 1."""
    warm = min(1.0, (step + 1) / tc["warmup_steps"]) if tc["warmup_steps"] else 1.0
    cos = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return warm * (tc["min_lr_ratio"] + (1 - tc["min_lr_ratio"]) * cos)


# -- the shared skeleton of the transformers-model recipes (train_lm.py, train_dediffusion.py) ---------------------
def recipe_parser(prog: str, description: str, config_help: str) -> ArgumentParser:
    """The flags every such recipe takes: --config, --output_dir, --set, --resume_from_checkpoint, --cpu and the Hub
    push (--push_to_hub --hub_model_id [--private] [--revision] [--hub_token])."""
    p = ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", required=True, help=config_help)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (YAML-parsed), e.g. --set training.max_steps=20")
    p.add_argument("--resume_from_checkpoint", default=None, help="output_dir/checkpoints/step_N, or 'latest'")
    p.add_argument("--cpu", action="store_true", help="force CPU")
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", default=None, help="user/name on the Hub")
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", default=None, help="Hub branch to push to")
    p.add_argument("--hub_token", default=None, help="default: HF_TOKEN / the saved login")
    return p


def check_recipe_args(args) -> None:
    """``--push_to_hub`` needs a repo id; ``--resume_from_checkpoint`` must name a checkpoint (or 'latest' one)."""
    if args.push_to_hub and not args.hub_model_id:
        raise ConfigError("--push_to_hub needs --hub_model_id user/name")
    ckpt = args.resume_from_checkpoint
    if ckpt == "latest" and not checkpoint_dirs(Path(args.output_dir)):
        raise ConfigError(f"--resume_from_checkpoint latest: no checkpoint in {args.output_dir}/checkpoints")
    if ckpt and ckpt != "latest" and not (Path(ckpt) / "trainer_state.json").is_file():
        raise ConfigError(f"--resume_from_checkpoint {ckpt}: not a checkpoint (no trainer_state.json)")


def make_accelerator(args, tc: dict, output_dir: Path):
    """``(Accelerator, mixed precision)`` from ``training.mixed_precision`` (``auto``: bf16 on a bf16 GPU, else
    none), ``gradient_accumulation_steps`` and ``num_threads``; CPU when asked, launched so, or without CUDA."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration
    from accelerate.utils.environment import parse_flag_from_env

    if tc["num_threads"]:
        torch.set_num_threads(tc["num_threads"])
    cpu = args.cpu or parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    mp = tc["mixed_precision"]
    if mp == "auto":
        mp = "bf16" if (not cpu and torch.cuda.is_bf16_supported()) else "no"
    accelerator = Accelerator(cpu=cpu, mixed_precision=mp, gradient_accumulation_steps=tc["gradient_accumulation_steps"],
                              project_config=ProjectConfiguration(project_dir=str(output_dir)),
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    return accelerator, mp


def save_checkpoint(accelerator, output_dir: Path, state: dict, keep: int) -> None:
    """``output_dir/checkpoints/step_N``: accelerate's state plus ``trainer_state.json``; keeps the newest ``keep``."""
    import json
    import shutil

    path = output_dir / "checkpoints" / f"step_{state['step']}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / "trainer_state.json").write_text(json.dumps(state, indent=1))
        for old in checkpoint_dirs(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def resume(accelerator, args, output_dir: Path, state: dict) -> dict:
    """Load ``--resume_from_checkpoint`` (a folder or 'latest') into ``accelerator``; returns its trainer state
    (``state`` unchanged when not resuming)."""
    import json

    if not args.resume_from_checkpoint:
        return state
    ckpt = checkpoint_dirs(output_dir)[-1] if args.resume_from_checkpoint == "latest" \
        else Path(args.resume_from_checkpoint)
    accelerator.load_state(str(ckpt))
    return json.loads((ckpt / "trainer_state.json").read_text())


def push_run(args, model, processor, output_dir: Path, card, what: str, *,
             processor_message: str = "Processor and tokenizer",
             files_message: str = "Held-out results, config and curves",
             card_message: str = "Model card with held-out results") -> None:
    """Push a recipe's outputs to ``--hub_model_id``: the model (``what``: e.g. "Reader model") and its processor or
    tokenizer, then ``eval_results.json``, ``training_config.yaml`` and ``trainer_state.json`` in one commit, then
    the card."""
    from huggingface_hub import CommitOperationAdd, HfApi

    kw = {"token": args.hub_token, "revision": args.revision}
    model.push_to_hub(args.hub_model_id, private=args.private, commit_message=f"{what} (pixeltok)", **kw)
    processor.push_to_hub(args.hub_model_id, private=args.private, commit_message=processor_message, **kw)
    files = ("eval_results.json", "training_config.yaml", "trainer_state.json")
    HfApi(token=args.hub_token).create_commit(
        args.hub_model_id, [CommitOperationAdd(f, str(output_dir / f)) for f in files],
        revision=args.revision, commit_message=files_message)
    card.push_to_hub(args.hub_model_id, token=args.hub_token, revision=args.revision, commit_message=card_message)


def run_recipe(prog: str, argv, parse_args, load_config, check_args, train, errors: tuple = ()) -> None:
    """A recipe's ``main``: arguments, config and paths are checked before any process group starts (one line on
    stderr, exit 2), then ``train(args, cfg)`` runs with the libraries' own bars off; a ``ConfigError`` or one of
    ``errors`` raised while training is one line too."""
    try:
        args = parse_args(argv)
        cfg = load_config(args.config, args.set)
        check_args(args, cfg)
    except ConfigError as e:
        exit_with(e, prog)
    quiet_cpu_kernel_advice()
    try:
        with library_progress_bars_off():
            train(args, cfg)
    except (ConfigError, *errors) as e:
        exit_with(e, prog)


def load_recipe_data(dc: dict, n_train: int | None = None, streaming: bool = False):
    """A recipe's ``data`` section -> :func:`pixeltok.data.load_source` (``n_train`` defaults to the section's);
    a bad builder option is a :class:`ConfigError` naming ``data.options``."""
    from pixeltok.data import DATA_KEYS, load_source

    try:
        return load_source(**{k: dc[k] for k in DATA_KEYS}, n_train=dc["n_train"] if n_train is None else n_train,
                           streaming=streaming)
    except (TypeError, ValueError) as e:  # an unknown or bad builder option
        raise ConfigError(f"data.options: {e}") from None


def run_once(script: Path, config, out: Path, sets: list[str], tag: str, label: str) -> dict:
    """``python SCRIPT --config CONFIG --output_dir OUT --set ...`` in its own process, unless ``OUT`` already holds
    its ``eval_results.json`` (an interrupted table resumes); returns those results. The command is printed as
    ``[TAG] LABEL: ...``; a failure is a :class:`ConfigError` naming ``LABEL``."""
    import json
    import subprocess

    if (out / "eval_results.json").is_file():
        return json.loads((out / "eval_results.json").read_text())
    cmd = [sys.executable, str(script), "--config", str(config), "--output_dir", str(out)]
    for s in sets:
        cmd += ["--set", s]
    print(f"[{tag}] {label}: {' '.join(cmd[2:])}", flush=True)
    r = subprocess.run(cmd, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    if r.returncode != 0:
        raise ConfigError(f"{label}: {Path(script).name} exited with {r.returncode}")
    return json.loads((out / "eval_results.json").read_text())
