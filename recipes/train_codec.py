"""Train the pixeltok lossless-codec model on 32x32 tiles of real photographs (Accelerate recipe).

    accelerate launch --cpu --num_processes 1 recipes/train_codec.py --config recipes/configs/codec_default.yaml \
        --wallpaper_dir /tmp/wall/x/usr/share/wallpapers --output_dir runs/codec_default [--resume_from_checkpoint DIR]
        [--push_to_hub --hub_model_id org/name [--private] [--revision main]]

Data: Debian's ``plasma-workspace-wallpapers`` photos (``apt-get download`` + ``dpkg -x``, no install) and
scikit-image's bundled photos, read through the package's data path, ``pixeltok.data.photos.load_photos`` (config
``crops``): box-downscaled by each factor in ``data.scales``, then cut into full 32x32 crops, kept as Arrow files in
the ``datasets`` cache (``--cache_dir``) so a second run starts at once. Photos listed under ``heldout_*`` are never
trained on; ``eval_results.json`` reports bits per sub-pixel on tiles of them (the ideal code length -sum log2 p;
the real coded size is measured by ``benchmarks/bench_codec.py``). ``model.type: imagegpt`` (or ``pxby``) trains a
transformers ``ImageGPTForCausalImageModeling`` (or a PxBy) over the crops' sub-pixels instead, for
``compress(image, model=...)``'s generic path (``configs/codec_imagegpt_tiny.yaml``, ``codec_pxby_tiny.yaml``).
Output: ``save_pretrained`` checkpoints (safetensors), ``eval_results.json``, a filled ``README.md`` model card,
``trainer_state.json`` (``log_history``: lr and training loss every ``train.log_every`` steps, held-out bpsp every
``eval_every``) and ``checkpoint-*/`` Accelerate states for ``--resume_from_checkpoint``. The LR schedule is in
optimizer steps, whatever the number of processes. A bad config, argument or path is reported as one line on stderr
(exit status 2) before any process group starts.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import os
import sys
import time

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pixeltok.compression.causal import start_token  # noqa: E402
from pixeltok.compression.model import PixelContextCodecConfig, PixelContextCodecModel  # noqa: E402
from pixeltok.data import DataSourceError  # noqa: E402
from pixeltok.data.photos import load_photos, photo_path  # noqa: E402
from pixeltok.scripts import (ArgumentParser, ConfigError, exit_with, library_progress_bars_off,  # noqa: E402
                              looks_like_path, read_yaml_config)


# ---- data -------------------------------------------------------------------------------------------------------
def photo_refs(dc: dict) -> tuple[list[str], list[str]]:
    """The config's photos as ``pixeltok.data.photos`` references: (training photos, held-out photos)."""
    train = ([f"wallpaper:{n}" for n in dc["train_wallpapers"]] + [f"background:{n}" for n in dc["train_backgrounds"]]
             + [f"skimage:{n}" for n in dc["train_skimage"]])
    return train, [f"wallpaper:{n}" for n in dc["heldout_wallpapers"]] + [f"skimage:{n}" for n in dc["heldout_skimage"]]


def load_crops(dc: dict, seed: int, wallpaper_dir: str | None, backgrounds_dir: str | None,
               cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out crops ``(N, tile_size, tile_size, 3)`` uint8 through the package's data path
    (:func:`pixeltok.data.photos.load_photos`, config ``crops``: every full crop of every photo at every scale,
    at most ``max_tiles_per_image`` per photo and scale, seeded)."""
    train_refs, held_refs = photo_refs(dc)
    ds = load_photos(train_refs, held_refs, config="crops", wallpaper_dir=wallpaper_dir,
                     backgrounds_dir=backgrounds_dir, cache_dir=cache_dir, scales=dc["scales"],
                     crop_size=dc["tile_size"], max_crops_per_photo=dc["max_tiles_per_image"], seed=seed)
    size = dc["tile_size"]

    def stack(split: str) -> np.ndarray:
        if split not in ds or ds[split].num_rows == 0:
            return np.zeros((0, size, size, 3), np.uint8)
        return np.stack(list(ds[split].with_format("numpy")["image"])).astype(np.uint8, copy=False)

    return stack("train"), stack("test")


def mirror_random_half(tiles: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(B, H, W, 3)`` -> the same tiles, each mirrored left-right with probability 1/2 (one draw per tile).

    A photo's statistics are left-right symmetric but the codec's causal order is not, so a mirrored tile is a
    new training example for free."""
    m = (torch.rand(tiles.shape[0], generator=generator) < 0.5).to(tiles.device).view(-1, 1, 1, 1)
    return torch.where(m, tiles.flip(2), tiles)


# ---- config: every key a config may hold, with its type and default (REQUIRED: must be given) ---------------------
REQUIRED = object()
CONFIG_KEYS = {
    "data": {"train_wallpapers": (list, REQUIRED), "train_backgrounds": (list, []), "train_skimage": (list, REQUIRED),
             "heldout_wallpapers": (list, REQUIRED), "heldout_skimage": (list, REQUIRED), "scales": (list, REQUIRED),
             "tile_size": (int, REQUIRED), "max_tiles_per_image": (int, REQUIRED), "eval_tiles": (int, REQUIRED)},
    "train": {"seed": (int, REQUIRED), "batch_size": (int, REQUIRED), "gradient_accumulation_steps": (int, 1),
              "learning_rate": (float, REQUIRED), "weight_decay": (float, 0.0), "warmup_steps": (int, REQUIRED),
              "max_steps": (int, REQUIRED), "stop_step": (int, None), "max_train_minutes": (float, REQUIRED),
              "eval_every": (int, REQUIRED), "save_every": (int, REQUIRED), "log_every": (int, 10),
              "mixed_precision": (str, "no"), "num_threads": (int, 2), "hflip": (bool, False)},
}
# model.type imagegpt / pxby: a causal model over a crop's 3 * T * T sub-pixels (raster order, RGB interleaved, after
# a start token), which compress(image, model=...) codes with through its generic path (pixeltok.compression.causal):
# transformers' ImageGPTForCausalImageModeling (256 levels + start token 256), or PxBy with levels 0..255 as its
# colours (its 3x3 window embedding then sees the previous sub-pixels) and the start token 257
CAUSAL_KEYS = {"imagegpt": {"n_embd": 128, "n_layer": 2, "n_head": 4},
               "pxby": {"hidden_size": 81, "backbone": "lstm", "num_hidden_layers": 2, "state_size": 32,
                        "intermediate_size": 128, "num_attention_heads": 3}}
PXBY_LAYOUT = dict(vocab_size=261, first_color_id=0, num_colors=256, pad_token_id=256, bos_token_id=257,
                   eos_token_id=258, row_token_id=259, segment_token_id=260)
MAY_BE_ZERO = {"seed", "warmup_steps", "max_steps"}  # the other ints must be >= 1, the floats >= 0
PROG = "train_codec.py"


def check_type(name: str, value, kind: type, low: int | None = None) -> None:
    """``value`` is a ``kind`` (an int is a float too; a bool is neither), at least ``low`` when given."""
    if kind in (int, float):
        ok = not isinstance(value, bool) and isinstance(value, int if kind is int else (int, float))
        ok = ok and (low is None or value >= low)
    else:
        ok = isinstance(value, kind)
    if not ok:
        num = "an int" if kind is int else "a number"
        want = {bool: "true or false", str: "a string", list: "a list"}.get(kind) or \
            (num if low is None else f"{num} >= {low}")
        raise ConfigError(f"{name} must be {want}, got {value!r}")


def load_config(path: str) -> dict:
    """The YAML config, checked key by key and completed with the defaults. Any problem is a ConfigError."""
    cfg = read_yaml_config(path)
    model_keys = {n: p.default for n, p in inspect.signature(PixelContextCodecConfig.__init__).parameters.items()
                  if p.kind is p.POSITIONAL_OR_KEYWORD and n != "self"}
    for section in cfg:
        if section not in ("model", "data", "train"):
            raise ConfigError(f"{path}: unknown section {section!r} (known: ['data', 'model', 'train'])")
        if not isinstance(cfg[section], dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping, got {type(cfg[section]).__name__}")
    cfg.setdefault("model", {})
    kind = cfg["model"].get("type", "context")
    if kind not in ("context", *CAUSAL_KEYS):
        raise ConfigError(f"{path}: model.type must be 'context' (the pixel-context network), 'imagegpt' or "
                          f"'pxby', got {kind!r}")
    if kind in CAUSAL_KEYS:
        model_keys = CAUSAL_KEYS[kind]
    for k, v in cfg["model"].items():
        if k == "type":
            continue
        if k not in model_keys:
            raise ConfigError(f"{path}: unknown key model.{k} (known: {sorted(model_keys)})")
        check_type(f"model.{k}", v, type(model_keys[k]), low=1 if kind in CAUSAL_KEYS else None)
    for section, keys in CONFIG_KEYS.items():
        given = cfg.setdefault(section, {})
        for k in given:
            if k not in keys:
                raise ConfigError(f"{path}: unknown key {section}.{k} (known: {sorted(keys)})")
        for k, (kind, default) in keys.items():
            if k not in given:
                if default is REQUIRED:
                    raise ConfigError(f"{path}: {section}.{k} is missing")
                given[k] = copy.deepcopy(default)
            elif not (default is None and given[k] is None):
                check_type(f"{section}.{k}", given[k], kind, low=0 if k in MAY_BE_ZERO or kind is float else 1)
    dc, tc = cfg["data"], cfg["train"]
    for k in ("train_wallpapers", "train_backgrounds", "train_skimage", "heldout_wallpapers", "heldout_skimage"):
        if not all(isinstance(n, str) for n in dc[k]):
            raise ConfigError(f"data.{k} must be a list of names, got {dc[k]!r}")
    if not dc["scales"] or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in dc["scales"]):
        raise ConfigError(f"data.scales must be a list of positive ints, got {dc['scales']!r}")
    if tc["mixed_precision"] not in ("no", "fp16", "bf16"):
        raise ConfigError(f"train.mixed_precision must be one of ['no', 'fp16', 'bf16'], got {tc['mixed_precision']!r}")
    return cfg


def check_data(cfg: dict, args) -> None:
    """Every photo the config names must be at hand (cheap: file lookups and names, nothing is decoded)."""
    dc = cfg["data"]
    wallpapers = dc["train_wallpapers"] + dc["heldout_wallpapers"]
    for flag, folder, names in (("--wallpaper_dir", args.wallpaper_dir, wallpapers),
                                ("--backgrounds_dir", args.backgrounds_dir, dc["train_backgrounds"])):
        if folder and not os.path.isdir(folder):
            raise ConfigError(f"not found: {folder} ({flag})")
        if names and not folder:
            raise ConfigError(f"data lists {names[0]!r} (and {len(names) - 1} more) but {flag} was not given")
    train_refs, held_refs = photo_refs(dc)
    both = sorted(set(train_refs) & set(held_refs))
    if both:
        raise ConfigError(f"data: {both[0]!r} is both a training and a held-out photo")
    fields = (("train_wallpapers", "wallpaper"), ("train_backgrounds", "background"), ("train_skimage", "skimage"),
              ("heldout_wallpapers", "wallpaper"), ("heldout_skimage", "skimage"))
    for key, kind in fields:
        for name in dc[key]:
            try:
                photo_path(f"{kind}:{name}", args.wallpaper_dir, args.backgrounds_dir)
            except DataSourceError as e:
                raise ConfigError(f"data.{key}: {e}") from None
    if args.init_from and looks_like_path(args.init_from) and not os.path.exists(os.path.expanduser(args.init_from)):
        raise ConfigError(f"not found: {args.init_from} (--init_from)")  # else a Hub id: from_pretrained explains
    ckpt = args.resume_from_checkpoint
    if ckpt and not os.path.exists(ckpt):
        raise ConfigError(f"not found: {ckpt} (--resume_from_checkpoint)")
    if ckpt and not os.path.isfile(os.path.join(ckpt, "trainer_state.json")):
        raise ConfigError(f"--resume_from_checkpoint {ckpt}: not a checkpoint of this script (no trainer_state.json)")


# ---- card ---------------------------------------------------------------------------------------------------------
CARD = """---
library_name: transformers
tags: [pixeltok, lossless-image-compression, arithmetic-coding]
---
# pixeltok lossless codec model ({name})

{model_line}, used by `pixeltok.compression` with a range coder (constriction) to compress images losslessly
(`.ptk` files).

- Training data: {tile}x{tile} crops of real photographs (`pixeltok.data.load_photos(config="crops")`),
  box-downscaled by {scales} first: wallpapers {train_w}
  (Debian `plasma-workspace-wallpapers`), photos {train_b} (Debian `lomiri-wallpapers-16.04`,
  `lomiri-wallpapers-20.04`, `mate-backgrounds`) and scikit-image photos {train_s}; {n_train:,} training tiles.
- Held out (never trained on): wallpapers {held_w}; scikit-image {held_s}.
- Training: {steps} steps x {batch} tiles (x{accum} accumulation, {procs} process(es)), AdamW lr {lr}, cosine,
  seed {seed}, {minutes:.1f} min on {hardware}{init}; tiles mirrored at random: {hflip}.
- Held-out ideal code length: **{bpsp:.4f} bits per sub-pixel** on {n_eval} held-out tiles (-sum log2 p; real
  coded sizes, with PNG / WebP / JPEG-XL on the same tiles: `benchmarks/bench_codec.py`).

Reproduce: `accelerate launch --cpu --num_processes 1 recipes/train_codec.py --config {config}`
`--wallpaper_dir DIR --backgrounds_dir DIR2 --output_dir OUT`.
"""


def write_card(out_dir: str, info: dict) -> None:
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(CARD.format(**info))


# ---- training -------------------------------------------------------------------------------------------------------
def model_class(kind: str):
    """The model class of ``model.type``."""
    if kind == "imagegpt":
        from transformers import ImageGPTForCausalImageModeling

        return ImageGPTForCausalImageModeling
    if kind == "pxby":
        from pixeltok.models.pxby import PxByForCausalLM

        return PxByForCausalLM
    return PixelContextCodecModel


def build_model(mc: dict, tile_size: int):
    """The configured model: the pixel-context network, or a causal model (ImageGPT, PxBy) over a crop's sub-pixels."""
    kind = mc.get("type", "context")
    n = 3 * tile_size * tile_size + 1  # a crop's sub-pixels + the start token
    fixed = {"context": {}, "imagegpt": {"vocab_size": 257, "n_positions": n},
             "pxby": {**PXBY_LAYOUT, "max_position_embeddings": n}}[kind]
    kw = {**CAUSAL_KEYS.get(kind, {}), **{k: v for k, v in mc.items() if k != "type"}, **fixed}
    cls = model_class(kind)
    return cls(cls.config_class(**kw))


def tile_bits(model, tiles: torch.Tensor) -> torch.Tensor:
    """``(B, T, T, 3)`` uint8 crops -> ``(B,)`` bits per sub-pixel under ``model`` (either kind; DDP-wrapped too)."""
    bare = getattr(model, "module", model)
    if isinstance(bare, PixelContextCodecModel):
        return model(tiles.long(), reduction="none").loss
    ids = tiles.reshape(tiles.shape[0], -1).long()
    sos = torch.full((ids.shape[0], 1), start_token(bare), dtype=torch.long, device=ids.device)
    logits = model(input_ids=torch.cat([sos, ids[:, :-1]], 1)).logits[..., :256].float()  # (B, L, 256)
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
    return nll.mean(1) / math.log(2.0)


@torch.no_grad()
def evaluate(model, loader, accelerator) -> float:
    """Mean bits per sub-pixel over the eval tiles (every process's share gathered)."""
    model.eval()
    per_tile = []
    for (batch,) in loader:
        # per-tile losses, so gather_for_metrics can drop the tiles duplicated to even out the last batch
        losses = tile_bits(accelerator.unwrap_model(model), batch)
        per_tile.append(accelerator.gather_for_metrics(losses))
    model.train()
    return torch.cat(per_tile).mean().item()


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--wallpaper_dir", default=os.environ.get("PIXELTOK_WALLPAPERS"))
    p.add_argument("--backgrounds_dir", default=os.environ.get("PIXELTOK_BACKGROUNDS"),
                   help="usr/share/backgrounds of the extracted lomiri/mate packages (for data.train_backgrounds)")
    p.add_argument("--cache_dir", default=None, help="where the photos' Arrow files go (default: the datasets cache)")
    p.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint-*/ folder written by this script")
    p.add_argument("--max_steps", type=int, default=None, help="override train.max_steps")
    p.add_argument("--init_from", default=None,
                   help="start from the weights of a save_pretrained folder or Hub id (e.g. the shipped checkpoint, "
                        "to train it further with a new schedule); its model config replaces the config file's")
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", default=None)
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", default=None)
    args = p.parse_args(argv)
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push_to_hub needs --hub_model_id")
    return args


def main(argv=None):
    # everything the run needs is checked first, so a typo costs one line, not a process group and two tracebacks
    try:
        args = parse_args(argv)
        cfg = load_config(args.config)
        if args.max_steps is not None:
            check_type("--max_steps", args.max_steps, int, low=0)
            cfg["train"]["max_steps"] = args.max_steps
        check_data(cfg, args)
    except ConfigError as e:
        exit_with(e, PROG)
    with library_progress_bars_off():
        train(args, cfg)


def train(args, cfg):
    tc, dc = cfg["train"], cfg["data"]
    torch.set_num_threads(tc["num_threads"])
    accelerator = Accelerator(gradient_accumulation_steps=tc["gradient_accumulation_steps"],
                              mixed_precision=tc["mixed_precision"], cpu=not torch.cuda.is_available())
    set_seed(tc["seed"])
    os.makedirs(args.output_dir, exist_ok=True)

    with accelerator.main_process_first():  # the main process builds the Arrow cache; the others read it
        train, held = load_crops(dc, tc["seed"], args.wallpaper_dir, args.backgrounds_dir, args.cache_dir)
        held = held[np.random.default_rng(tc["seed"] + 2).permutation(len(held))[: dc["eval_tiles"]]]
    accelerator.print(f"train tiles {len(train):,} from {len(photo_refs(dc)[0])} photos; eval tiles {len(held)}")

    if args.init_from:
        model = model_class(cfg["model"].get("type", "context")).from_pretrained(args.init_from)
        # what was really trained, for the record
        cfg["model"] = {k: (v if k == "type" else getattr(model.config, k)) for k, v in cfg["model"].items()}
        accelerator.print(f"initialised from {args.init_from}")
    else:
        model = build_model(cfg["model"], dc["tile_size"])
    opt = torch.optim.AdamW(model.parameters(), lr=tc["learning_rate"], weight_decay=tc["weight_decay"])
    warm, total, world = tc["warmup_steps"], tc["max_steps"], accelerator.num_processes

    def lr_factor(s: int) -> float:  # linear warm-up, then cosine to 0 at `total`; s counts optimizer steps
        return min(1.0, (s + 1) / max(warm, 1)) * 0.5 * (1 + math.cos(math.pi * min(s, total) / max(total, 1)))

    # the prepared scheduler steps `world` times per optimizer step (Accelerate assumes a schedule counted in
    # per-process batches): divide, so that 2 processes follow the 1-process curve instead of running it twice as fast
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s // world))
    g = torch.Generator().manual_seed(tc["seed"])
    train_dl = DataLoader(TensorDataset(torch.from_numpy(train)), batch_size=tc["batch_size"], shuffle=True,
                          drop_last=True, generator=g)
    eval_dl = DataLoader(TensorDataset(torch.from_numpy(held)), batch_size=64)
    model, opt, train_dl, eval_dl, sched = accelerator.prepare(model, opt, train_dl, eval_dl, sched)

    step, epoch, skip, log_history = 0, 0, 0, []
    if args.resume_from_checkpoint:
        accelerator.load_state(args.resume_from_checkpoint)
        with open(os.path.join(args.resume_from_checkpoint, "trainer_state.json")) as f:
            st = json.load(f)
        step, epoch, log_history = st["step"], st["epoch"], st.get("log_history", [])
        skip = step * tc["gradient_accumulation_steps"] - st["batches_before_epoch"]
        accelerator.print(f"resumed at step {step} (epoch {epoch}, skipping {skip} batches)")

    def save(tag: str, bpsp: float | None = None):
        accelerator.wait_for_everyone()
        d = os.path.join(args.output_dir, tag)
        accelerator.save_state(d)
        if accelerator.is_main_process:
            state = {"step": step, "epoch": epoch, "batches_before_epoch": batches_before_epoch,
                     "log_history": log_history}
            for folder in (d, args.output_dir):  # the checkpoint's (for resuming) and the latest, at the top level
                with open(os.path.join(folder, "trainer_state.json"), "w") as f:
                    json.dump(state, f, indent=1)
            accelerator.unwrap_model(model).save_pretrained(args.output_dir)  # latest weights at the top level

    t0 = time.time()
    batches_before_epoch = step * tc["gradient_accumulation_steps"] - skip
    end = min(total, tc["stop_step"] or total)  # stop_step: end early without changing the schedule's length
    bar = tqdm(total=end, initial=step, disable=not accelerator.is_local_main_process, desc="train")
    ema, done = None, step >= end
    hflip = tc["hflip"]  # not resumed bit-exactly: the flips have their own generator
    flip_g = torch.Generator().manual_seed(tc["seed"] + 3 + accelerator.process_index)
    model.train()
    while not done:
        train_dl.set_epoch(epoch) if hasattr(train_dl, "set_epoch") else None
        loader = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
        skip = 0
        for (batch,) in loader:
            if hflip:
                batch = mirror_random_half(batch, flip_g)
            with accelerator.accumulate(model):
                loss = tile_bits(model, batch).mean()
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad()
            if not accelerator.sync_gradients:
                continue
            step += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            bar.update(1)
            lr = sched.get_last_lr()[0]  # for the next step, as the bar shows it
            bar.set_postfix(bpsp=f"{ema:.3f}", lr=f"{lr:.1e}")
            minutes = (time.time() - t0) / 60
            if step % tc["log_every"] == 0 or step == end:
                mean_loss = accelerator.reduce(loss.detach().float(), "mean").item()  # over the processes
                log_history.append({"step": step, "lr": lr, "train_bpsp": mean_loss})
            if step % tc["eval_every"] == 0:
                eval_bpsp = evaluate(model, eval_dl, accelerator)
                log_history.append({"step": step, "eval_bpsp": eval_bpsp})
                accelerator.print(f"step {step} train_bpsp_ema {ema:.4f} eval_bpsp {eval_bpsp:.4f} "
                                  f"minutes {minutes:.1f}", flush=True)
            if step % tc["save_every"] == 0:
                save(f"checkpoint-{step}")
            if step >= end or minutes >= tc["max_train_minutes"]:
                done = True
                break
        else:
            epoch += 1
            batches_before_epoch = step * tc["gradient_accumulation_steps"]
    bar.close()
    minutes = (time.time() - t0) / 60
    save(f"checkpoint-{step}")

    bpsp = evaluate(model, eval_dl, accelerator)
    if accelerator.is_main_process:
        results = {"eval_bits_per_subpixel": bpsp, "eval_tiles": int(len(held)), "steps": step,
                   "train_minutes": minutes, "train_tiles": int(len(train)),
                   "num_processes": accelerator.num_processes, "config": cfg}
        with open(os.path.join(args.output_dir, "eval_results.json"), "w") as f:
            json.dump(results, f, indent=2)
        unwrapped = accelerator.unwrap_model(model)
        hardware = (torch.cuda.get_device_name() if torch.cuda.is_available()
                    else f"CPU ({torch.get_num_threads()} threads)")
        n_params = sum(t.numel() for t in unwrapped.parameters())
        write_card(args.output_dir, dict(
            name=os.path.basename(os.path.normpath(args.output_dir)), n_params=n_params,
            model_line=(f"Causal-neighbourhood pixel model (`PixelContextCodecModel`, {n_params:,} parameters) that "
                        "predicts each 8-bit sub-pixel of a 32x32 tile as a mixture of "
                        f"{unwrapped.config.num_mixtures} discretized logistics"
                        if isinstance(unwrapped, PixelContextCodecModel) else
                        f"`{type(unwrapped).__name__}` ({n_params:,} parameters) predicting the "
                        f"{3 * dc['tile_size'] ** 2} sub-pixels of a {dc['tile_size']}x{dc['tile_size']} crop one by "
                        "one (256 levels + start token, raster order, RGB interleaved; `compress(image, model=...)`'s "
                        "generic path)"),
            scales=dc["scales"], tile=dc["tile_size"], train_w=dc["train_wallpapers"], train_s=dc["train_skimage"],
            train_b=[os.path.splitext(os.path.basename(b))[0] for b in dc["train_backgrounds"]] or "none",
            n_train=len(train), held_w=dc["heldout_wallpapers"], held_s=dc["heldout_skimage"], steps=step,
            batch=tc["batch_size"], accum=tc["gradient_accumulation_steps"], procs=accelerator.num_processes,
            lr=tc["learning_rate"], seed=tc["seed"], minutes=minutes, hardware=hardware, bpsp=bpsp, n_eval=len(held),
            config=args.config, hflip="yes" if hflip else "no",
            init=f", starting from the weights of `{args.init_from}`" if args.init_from else ""))
        accelerator.print(json.dumps({k: v for k, v in results.items() if k != "config"}))
        if args.push_to_hub:
            from huggingface_hub import ModelCard

            unwrapped.push_to_hub(args.hub_model_id, private=args.private, revision=args.revision,
                                  commit_message=f"codec model, {step} steps, {bpsp:.4f} bpsp held-out")
            ModelCard.load(os.path.join(args.output_dir, "README.md")).push_to_hub(
                args.hub_model_id, revision=args.revision, commit_message="model card")
    # every rank leaves together: gloo's process-group teardown can hang when one rank exits while another
    # is still writing files or pushing (seen with 2 CPU ranks)
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
