#!/usr/bin/env python
"""Train ANY transformers causal LM to read the word in a small image given as pixel tokens; evaluate; push.

    accelerate launch --config_file recipes/accelerate/cpu2.yaml recipes/train_lm.py \
        --config recipes/configs/lm_tiny.yaml --output_dir runs/lm_tiny

The model is built from the YAML (``model.type``: any ``model_type`` transformers has a causal LM for, e.g. gpt2,
llama, mamba; ``model.config``: that config's fields), the text tokenizer is ByT5's byte tokenizer or any saved
one, and a :class:`pixeltok.PixelTextProcessor` adds the pixel vocabulary (palette, layout, scan order) to it.
Samples are ``<image> -> word`` (:mod:`pixeltok.reader`), loss on the answer only, from the
``pixeltok.data.load_text_images`` builder (``data.streaming: true`` renders on the fly, sharded across ranks with
``datasets.distributed.split_dataset_by_node``). The learning rate follows warm-up + cosine over the run, whose end
is ``training.max_steps`` or ``training.time_budget_minutes`` of training time, whichever comes first (the same
compute budget per row of ``recipes/eval_lm.py``'s table).

Evaluation every ``eval_every`` steps: loss on the validation answers and greedy reading of ``val_samples``
validation images (character error rate). At the end, the held-out test split (fonts and words never seen in
training) is read with ``generate()``: CER and word accuracy per tier (clean / hard), tokens per image, tokens/s.

``output_dir`` gets the ``save_pretrained`` model and processor (``AutoModelForCausalLM`` / ``AutoProcessor``
after ``import pixeltok``; ``pixeltok read IMAGE --model output_dir``), ``eval_results.json``,
``trainer_state.json`` (curves), ``training_config.yaml``, ``README.md`` (model card) and ``checkpoints/``
(``--resume_from_checkpoint latest``). A bad config, argument or path is one line on stderr before any process
group starts.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate.utils import DistributedType, gather_object, set_seed
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import pixeltok
from pixeltok import PixelTextProcessor, PixelTokenizer
from pixeltok.tokenization.palettes import Palette, get_palette
from pixeltok.tokenization.text_bpe import train_bpe_tokenizer
from pixeltok.data import DataSourceError
from pixeltok.data.scenes import scene_palette
from pixeltok.drawing import draw_batch, greedy_draw, image_bits, pixel_accuracy
from pixeltok.evaluation import character_error_rate, word_accuracy
from pixeltok.hub_cards import render_drawer_model_card, render_reader_model_card
from pixeltok.reader import read, training_batch
from pixeltok.scripts import (ConfigError, check_exists, check_recipe_args, load_recipe_data, load_yaml_config,
                              lr_factor, make_accelerator, push_run, recipe_parser, resume, run_recipe, save_checkpoint)
from pixeltok.tokenization.processing_pixel_text import (init_pixel_embeddings, prepare_image,
                                                          resize_embeddings_for_pixels)

PROG = "train_lm.py"

# Defaults of every config field; a YAML config overrides any subset (unknown keys are an error).
DEFAULTS = {
    "model": {"type": "llama", "config": {}, "init_from": None, "embedding_init": "mean"},
    # name: "byt5" (transformers.ByT5Tokenizer, no files), "bpe" (a byte-level BPE of vocab_size trained on the
    # first train_rows training texts; phrases: tokens may span words within a ", " clause) or a folder / Hub id
    "tokenizer": {"name": "byt5", "vocab_size": 512, "phrases": True, "train_rows": 5000},
    "processor": {"palette": "named128", "learned_colors": None, "layout": "raster", "scan": "rows",
                  "max_side": 96, "image_height": None, "grayscale": False, "normalize": False, "pack": 1,
                  "crop": False},
    "data": {"source": "text_images", "task": "read", "n_train": 20000, "n_val": 500, "n_test": 1000,
             "tier": "mixed", "fonts": "matplotlib", "words": "wamerican", "options": {}, "seed": 0,
             "streaming": False, "prompt": "<image>", "cache_dir": None,
             # task draw: the text before each image is one of `captions` (columns, picked at random), or nothing
             # with probability caption_dropout; clause_dropout drops each ", "-separated clause (one always stays);
             # clause_shuffle: the chance the clauses come in a random order
             "captions": ["caption", "short_caption"], "caption_dropout": 0.1, "clause_dropout": 0.0,
             "clause_shuffle": 0.0},
    "training": {"seed": 0, "per_device_batch_size": 16, "gradient_accumulation_steps": 1, "learning_rate": 1e-3,
                 "min_lr_ratio": 0.1, "weight_decay": 0.01, "adam_beta1": 0.9, "adam_beta2": 0.98, "warmup_steps": 100,
                 "max_steps": 5000, "time_budget_minutes": None, "max_grad_norm": 1.0, "log_every": 10,
                 "eval_every": 250, "save_every": 250, "save_total_limit": 2, "mixed_precision": "auto",
                 "num_threads": None,
                 # streaming: rows of this many batches are pooled, sorted by length and cut into batches (few pads)
                 "group_by_length": 1},
    "evaluation": {"val_samples": 64, "test_samples": None, "max_new_tokens": 24, "generation_batch_size": 32,
                   "draw_samples": 32},
    "hub": {"license": "apache-2.0", "tags": []},
}
CHOICES = {("processor", "layout"): ("raster", "grouped", "runs"), ("processor", "scan"): ("rows", "columns"),
           ("data", "tier"): ("clean", "hard", "mixed"),
           ("data", "source"): ("text_images", "scenes", "sprites"),
           ("data", "task"): ("read", "draw"), ("model", "embedding_init"): ("mean", "structured"),
           ("training", "mixed_precision"): ("auto", "no", "bf16", "fp16")}
OPTIONAL = {("model", "init_from"), ("processor", "learned_colors"), ("processor", "image_height"),
            ("data", "cache_dir"), ("training", "time_budget_minutes"), ("training", "num_threads"),
            ("evaluation", "test_samples")}


def parse_args(argv=None):
    return recipe_parser(PROG, __doc__.split("\n")[0], "YAML config (recipes/configs/lm_*.yaml)").parse_args(argv)


def load_config(path: str, overrides: list[str]) -> dict:
    """YAML merged over DEFAULTS, ``--set`` applied last; unknown keys and bad values raise ConfigError."""
    cfg = load_yaml_config(path, overrides, DEFAULTS, CHOICES, OPTIONAL)
    if not isinstance(cfg["model"]["config"], dict):
        raise ConfigError(f"{path}: model.config must be a mapping of the model config's fields")
    check_model(cfg["model"], path)
    return cfg


def check_model(mc: dict, path: str) -> None:
    """``model.type`` must be a causal-LM model type and ``model.config`` its config's fields (typos would become
    silent extra attributes)."""
    from transformers import AutoConfig, CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    # registered classes count (pxby, once pixeltok is imported)
    if mc["type"] not in CONFIG_MAPPING or CONFIG_MAPPING[mc["type"]] not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ConfigError(f"{path}: model.type {mc['type']!r} is not a transformers causal LM type "
                          f"(e.g. gpt2, llama, mamba, qwen2, pxby)")
    fields = AutoConfig.for_model(mc["type"]).to_dict()
    for k in mc["config"]:
        if k not in fields:
            raise ConfigError(f"{path}: model.config.{k} is not a field of {mc['type']}'s config")
        if k in ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id"):
            raise ConfigError(f"{path}: model.config.{k} is set from the tokenizer; remove it")


def check_args(args, cfg) -> None:
    pc, dc = cfg["processor"], cfg["data"]
    if dc["task"] == "draw" and (not isinstance(dc["captions"], list) or not dc["captions"]
                                 or not all(isinstance(c, str) for c in dc["captions"])):
        raise ConfigError(f"data.captions: expected a list of column names, got {dc['captions']!r}")
    if not isinstance(dc["options"], dict):
        raise ConfigError(f"data.options: expected a mapping of builder options, got {dc['options']!r}")
    for k in ("caption_dropout", "clause_dropout", "clause_shuffle"):
        if not 0 <= dc[k] <= 1:
            raise ConfigError(f"data.{k}: expected a probability in 0..1, got {dc[k]!r}")
    if not isinstance(pc["pack"], int) or pc["pack"] < 1:
        raise ConfigError(f"processor.pack: expected an int >= 1, got {pc['pack']!r}")
    pal = config_palette(pc["palette"])
    try:
        n_colours = pc["learned_colors"] or len(Palette.from_dict(pal) if isinstance(pal, dict) else get_palette(pal))
    except (KeyError, ValueError) as e:
        raise ConfigError(f"processor.palette: {e}") from None
    if pc["pack"] > 1 and (pc["layout"] != "raster" or n_colours > 16 or n_colours ** pc["pack"] > 65536):
        raise ConfigError(f"processor.pack={pc['pack']} needs layout raster and a palette of <= 16 colours with "
                          f"colours ** pack <= 65536 (got layout {pc['layout']!r}, {n_colours} colours; set "
                          f"processor.learned_colors)")
    g = cfg["training"]["group_by_length"]
    if not isinstance(g, int) or g < 1 or (g > 1 and not dc["streaming"]):
        raise ConfigError(f"training.group_by_length: expected an int >= 1 (> 1 only with data.streaming: true), "
                          f"got {g!r}")
    if cfg["model"]["type"] == "pxby" and (pc["layout"] != "raster" or pc["pack"] != 1):
        raise ConfigError(f"model.type pxby builds 3x3 windows from one token per pixel in rows: it needs "
                          f"processor.layout raster and processor.pack 1 (got {pc['layout']!r}, {pc['pack']})")
    if cfg["model"]["init_from"]:
        check_exists(cfg["model"]["init_from"], "model.init_from")
    if cfg["tokenizer"]["name"] not in ("byt5", "bpe"):
        check_exists(cfg["tokenizer"]["name"], "tokenizer.name")
    check_recipe_args(args)


def config_palette(palette):
    """``processor.palette``: a built-in name, ``scenes`` (the scenes builder's exact colours) or a palette dict."""
    return scene_palette() if palette == "scenes" else palette


def build_processor(cfg: dict, train_images, bpe_dir: Path | None = None) -> PixelTextProcessor:
    pc = cfg["processor"]
    if cfg["tokenizer"]["name"] == "bpe":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(bpe_dir)
    elif cfg["tokenizer"]["name"] == "byt5":
        from transformers import ByT5Tokenizer

        tokenizer = ByT5Tokenizer()
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(cfg["tokenizer"]["name"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    palette = config_palette(pc["palette"])
    if pc["learned_colors"]:  # fitted to the training images as the processor will see them
        prepared = [prepare_image(im, pc["image_height"], pc["max_side"], pc["grayscale"], pc["normalize"],
                                  opaque=pc["pack"] > 1, crop=pc["crop"]) for im in train_images]
        palette = PixelTokenizer.train_palette(prepared, pc["learned_colors"], name="learned").color_palette
    return PixelTextProcessor(tokenizer, palette=palette, layout=pc["layout"], scan=pc["scan"],
                              max_side=pc["max_side"], image_height=pc["image_height"], grayscale=pc["grayscale"],
                              normalize=pc["normalize"], pack=pc["pack"], crop=pc["crop"])


def build_model(cfg: dict, processor):
    from transformers import AutoConfig, AutoModelForCausalLM

    mc, tok = cfg["model"], processor.tokenizer
    if mc["init_from"]:
        model = AutoModelForCausalLM.from_pretrained(mc["init_from"])
        if model.get_input_embeddings().weight.shape[0] != len(tok):
            resize_embeddings_for_pixels(model, processor, init=mc["embedding_init"])
        return model
    fields = dict(mc["config"])
    if mc["type"] == "gpt2":
        fields.setdefault("n_positions", 4096)  # learned positions: room for the longest image
    if mc["type"] == "mamba":  # without the CUDA kernels, mambapy's parallel scan: the sequential one's backward
        fields.setdefault("use_mambapy", True)  # took minutes per step on CPU for a few hundred tokens
    if mc["type"] == "pxby":  # one token per pixel in rows: PixelBytes' vocabulary (bytes, colours, a row end)
        colours = processor.color_token_ids
        if not (np.diff(colours) == 1).all():
            raise ConfigError("model.type pxby needs the colour tokens at consecutive ids (a tokenizer that already "
                              "held some pixel tokens breaks that)")
        fields.update(first_color_id=int(colours[0]), num_colors=len(colours), row_token_id=processor.row_token_id,
                      segment_token_id=processor.eoi_token_id)
    config = AutoConfig.for_model(mc["type"], **fields, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                  bos_token_id=tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id,
                                  eos_token_id=tok.eos_token_id)
    model = AutoModelForCausalLM.from_config(config)
    if model.loss_type is None:  # classes not named *ForCausalLM (GPT2LMHeadModel) would warn on every run
        model.loss_type = "ForCausalLM"
    if mc["embedding_init"] == "structured":  # pixel rows from CIELAB / sinusoids, text rows as initialised
        init_pixel_embeddings(model, processor)
    return model


class CaptionPicker:
    """The text each drawing sample is conditioned on: one of ``captions`` at random, clauses dropped, or none."""

    def __init__(self, dc: dict, seed: int):
        self.columns, self.rng = dc["captions"], np.random.default_rng(seed)
        self.dropout, self.clause_dropout = dc["caption_dropout"], dc["clause_dropout"]
        self.shuffle = dc["clause_shuffle"]

    def __call__(self, row: dict) -> str:
        if self.rng.random() < self.dropout:
            return ""
        clauses = row[self.columns[int(self.rng.integers(len(self.columns)))]].split(", ")
        if self.clause_dropout:
            keep = [c for c in clauses if self.rng.random() >= self.clause_dropout]
            clauses = keep or [clauses[int(self.rng.integers(len(clauses)))]]
        if self.shuffle and self.rng.random() < self.shuffle:
            # a De-Diffusion encoder writes phrases in whatever order its queries come: the decoder reads any order
            clauses = [clauses[i] for i in self.rng.permutation(len(clauses))]
        return ", ".join(clauses)


def drawing_metrics(model, processor, rows: list[dict], columns: list[str], draw_samples: int, batch_size: int,
                    accelerator) -> dict:
    """Bits per image token of the test images given each caption column and given no text, and the pixel accuracy
    of a greedy drawing of ``draw_samples`` of them (processors with ``pack > 1``)."""
    out = {}
    images = [r["image"] for r in rows]
    drawing = processor.pack > 1 and draw_samples
    targets = [processor.quantize(im) for im in images[:draw_samples]] if drawing else []  # once, for every text
    for name in list(columns) + ["none"]:
        texts = [r[name] for r in rows] if name != "none" else [""] * len(rows)
        with accelerator.split_between_processes(list(zip(images, texts))) as mine:
            bits = image_bits(model, processor, [m[0] for m in mine], [m[1] for m in mine],
                              batch_size=batch_size).tolist() if mine else []
        bits = np.asarray(gather_object(bits)).reshape(-1, 2)
        rec = {"bits_per_image_token": float(bits[:, 0].sum() / bits[:, 1].sum()),
               "bits_per_image": float(bits[:, 0].mean())}
        if drawing:
            with accelerator.split_between_processes(list(zip(targets, texts))) as mine:
                drawn = greedy_draw(model, processor, [m[1] for m in mine], [m[0].size for m in mine],
                                    batch_size=batch_size) if mine else []
                acc = [pixel_accuracy([d], [m[0]]) for d, m in zip(drawn, mine)]
            rec["pixel_accuracy"] = float(np.mean(gather_object(acc)))
        out[name] = rec
    return out


def evaluation_model(accelerator, model, unwrapped):
    """The model evaluation reads and draws with: the trained model itself, except under FSDP. There each rank holds
    a shard of every weight and every forward all-gathers them, so all ranks must run the same forwards; but the
    ranks read different rows (some none) and ``generate()`` stops at EOS, so they would wait on each other forever.
    Under FSDP every rank gets a plain full copy instead (gathered once; in bf16 under bf16 mixed precision) and
    evaluates its rows alone. Called on every rank."""
    if accelerator.distributed_type != DistributedType.FSDP:
        return unwrapped
    from copy import deepcopy
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from transformers import AutoModelForCausalLM

    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))  # a collective
    with accelerator.device:  # from_config writes its dtype into the config: a copy of it
        plain = AutoModelForCausalLM.from_config(deepcopy(unwrapped.config), dtype=torch.bfloat16
                                                 if accelerator.mixed_precision == "bf16" else torch.float32)
    plain.load_state_dict(weights)
    return plain.eval()


def reading_metrics(preds: list[str], rows: list[dict]) -> dict:
    out = {"cer": character_error_rate(preds, [r["text"] for r in rows]),
           "word_accuracy": word_accuracy(preds, [r["text"] for r in rows]), "num_images": len(rows)}
    for tier in ("clean", "hard"):
        idx = [i for i, r in enumerate(rows) if r["tier"] == tier]
        if idx:
            p, t = [preds[i] for i in idx], [rows[i]["text"] for i in idx]
            out[tier] = {"cer": character_error_rate(p, t), "word_accuracy": word_accuracy(p, t), "num_images": len(idx)}
    return out


def endless(loader, dataset, epoch: int, groups: int = 1):
    """Batches of a streaming loader, epoch after epoch (a new shuffle seed each time), without end: the training
    loop, identical on every rank, decides when to stop.

    With ``groups > 1`` each loader batch holds ``groups`` batches' rows: they are sorted by length, cut into
    ``groups`` batches (each trimmed to its longest row) and yielded in a shuffled order. Reading rows run from ~40
    to ~190 tokens, so a batch padded to its longest row was nearly half pads."""
    rng = np.random.default_rng(epoch)
    while True:
        dataset.set_epoch(epoch)
        for big in loader:
            if groups == 1:
                yield big
                continue
            lengths = big["attention_mask"].sum(1)
            parts = torch.argsort(lengths, stable=True).chunk(groups)
            for i in rng.permutation(len(parts)):
                cut = int(lengths[parts[i]].max())
                yield {k: v[parts[i], :cut] for k, v in big.items()}
        epoch += 1


def answer_loss(model, head: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
                reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Causal-LM cross-entropy on the answer tokens, with the output layer run on the answer positions only.

    ``input_ids`` / ``labels``: ``(B, L)``, ``labels`` -100 outside the answers (not shifted). A reading row is ~100
    image tokens and ~8 answer tokens, and the ``(B, L, vocab)`` logits with their float32 softmax were ~40% of a CPU
    step, so a pre-hook on ``head`` (the model's ``get_output_embeddings()``) hands it the ``(N, hidden)`` states that
    predict an answer token instead of all ``B*L``. The call still goes through ``model`` (DDP/FSDP wrappers and
    autocast see a normal forward) and any transformers causal LM qualifies: they all apply the head last, elementwise
    after it at most. Returns the loss and ``N``.
    """
    target = labels[:, 1:]
    answer = target != -100
    keep = torch.nn.functional.pad(answer, (0, 1))  # position t predicts token t + 1
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0][keep],) + tuple(args[1:]))
    try:
        logits = model(input_ids=input_ids).logits  # (N, vocab)
    finally:
        handle.remove()
    answers = target[answer]
    loss = torch.nn.functional.cross_entropy(logits.float(), answers, reduction=reduction)
    return loss, answers.new_tensor(len(answers))


def main(argv=None):
    run_recipe(PROG, argv, parse_args, load_config, check_args, train, errors=(DataSourceError,))


def train(args, cfg):
    tc, dc, ec = cfg["training"], cfg["data"], cfg["evaluation"]
    output_dir = Path(args.output_dir)
    accelerator, mp = make_accelerator(args, tc, output_dir)
    world, rank, main_proc = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    set_seed(tc["seed"])

    # ---- data (built once by the main process, cached) and the processor ----------------------------------------
    draw = dc["task"] == "draw"
    data_kw = {k: dc[k] for k in ("source", "n_train", "n_val", "n_test", "seed", "options")}
    if dc["source"] == "text_images":
        data_kw.update(tier=dc["tier"], fonts=dc["fonts"], words=dc["words"])
    with accelerator.main_process_first():
        train_stream = load_recipe_data(dc, streaming=True)["train"] if dc["streaming"] else None
        # val/test as Arrow (each row depends only on seed, split and index: the same rows whatever n_train); with
        # streaming, the Arrow train split only feeds the palette fit, so a few hundred rows
        data = load_recipe_data(dc, min(dc["n_train"], 300) if dc["streaming"] else None)
    text_column = "text" if dc["source"] == "text_images" else "caption"
    if draw:
        missing = [c for c in dc["captions"] if c not in data["train"].column_names]
        if missing:
            raise ConfigError(f"data.captions: {missing} not among the {dc['source']} columns "
                              f"{data['train'].column_names}")
    palette_images = [data["train"][i]["image"] for i in range(min(300, len(data["train"])))]
    bpe_dir = output_dir / "bpe_tokenizer"
    if cfg["tokenizer"]["name"] == "bpe" and main_proc:  # trained once, on the main process; the others load it
        columns = dc["captions"] if draw else [text_column]
        source = train_stream if train_stream is not None else data["train"]
        rows = [r for _, r in zip(range(cfg["tokenizer"]["train_rows"]), source)]
        texts = [r[c] for r in rows for c in columns]
        train_bpe_tokenizer(texts, cfg["tokenizer"]["vocab_size"], phrases=cfg["tokenizer"]["phrases"]) \
            .save_pretrained(bpe_dir)
    accelerator.wait_for_everyone()
    init_from = cfg["model"]["init_from"]
    if init_from and (Path(init_from) / "processor_config.json").is_file():
        # a pixeltok reader/drawer to train on (a curriculum's next stage): its processor, so every pixel token keeps
        # its meaning (a palette refitted to this run's images would shift the greys under the learnt embeddings)
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(init_from)
    else:
        processor = build_processor(cfg, palette_images, bpe_dir)
    model = build_model(cfg, processor)
    n_params = sum(p.numel() for p in model.parameters())

    pick = CaptionPicker(dc, tc["seed"] * 1000 + rank)

    def collate(rows):
        if draw:
            return draw_batch(processor, [r["image"] for r in rows], [pick(r) for r in rows])
        return training_batch(processor, [r["image"] for r in rows], [r["text"] for r in rows], dc["prompt"])

    def val_collate(rows):  # drawing is validated on the first caption column
        if draw:
            return draw_batch(processor, [r["image"] for r in rows], [r[dc["captions"][0]] for r in rows])
        return collate(rows)

    if train_stream is not None:  # each rank renders its own shards: no prepare() of this loader
        train_ds = split_dataset_by_node(train_stream, rank=rank, world_size=world)
        train_dl = DataLoader(train_ds, batch_size=tc["per_device_batch_size"] * tc["group_by_length"],
                              collate_fn=collate)
    else:
        train_dl = DataLoader(data["train"], batch_size=tc["per_device_batch_size"], shuffle=True, collate_fn=collate)
    val_dl = DataLoader(data["validation"], batch_size=tc["per_device_batch_size"], collate_fn=val_collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc["learning_rate"], weight_decay=tc["weight_decay"],
                                  betas=(tc["adam_beta1"], tc["adam_beta2"]))
    model, optimizer, val_dl = accelerator.prepare(model, optimizer, val_dl)
    if train_stream is None:
        train_dl = accelerator.prepare(train_dl)
    unwrapped = accelerator.unwrap_model(model)
    head = unwrapped.get_output_embeddings()
    ranks = gather_object([rank])  # the ranks that answer through the process group (the 2-rank test reads this)
    if main_proc:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "training_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        n_tok = [processor.num_image_tokens(im) for im in palette_images[:100]]
        print(f"[pixeltok] world_size={world} ranks={ranks} model={cfg['model']['type']} parameters={n_params:,} "
              f"vocab={len(processor.tokenizer)} tokens/image={np.mean(n_tok):.0f}", flush=True)

    state = {"step": 0, "micro_step": 0, "epoch": 0, "train_time_s": 0.0, "train_tokens": 0,
             "best_val_loss": None, "log_history": []}
    state = resume(accelerator, args, output_dir, state)

    @torch.no_grad()
    def validate() -> dict:
        model.eval()
        tot = torch.zeros(2, device=accelerator.device)
        for batch in val_dl:
            # right-padded: see the training step
            nll, n = answer_loss(model, head, batch["input_ids"], batch["labels"], reduction="sum")
            tot += torch.stack([nll, n.float()])
        tot = accelerator.reduce(tot, "sum")
        model.train()
        if draw:
            return {"val_loss": float(tot[0] / tot[1]), "val_bits": float(tot[0] / tot[1]) / math.log(2)}
        model.eval()
        rows = [data["validation"][i] for i in range(min(ec["val_samples"], len(data["validation"])))]
        reader = evaluation_model(accelerator, model, unwrapped)
        with accelerator.split_between_processes(rows) as mine:
            preds = read(reader, processor, [r["image"] for r in mine], prompt=dc["prompt"],
                         max_new_tokens=ec["max_new_tokens"], batch_size=ec["generation_batch_size"]) if mine else []
        preds = gather_object(preds)
        model.train()
        return {"val_loss": float(tot[0] / tot[1]), "val_cer": character_error_rate(preds, [r["text"] for r in rows])}

    # ---- train: the run ends at max_steps or at the training-time budget, the LR schedule follows that end -------
    budget_s = tc["time_budget_minutes"] * 60 if tc["time_budget_minutes"] else None
    progress_bar = tqdm(total=tc["max_steps"], initial=state["step"], desc="train", disable=not main_proc)
    model.train()
    t0, tokens, running, running_n, done = time.perf_counter(), 0, 0.0, 0, False
    while not done:
        if train_stream is not None:  # each rank cycles its own shards (their lengths may differ by a batch)
            epoch_dl = endless(train_dl, train_ds, state["epoch"], tc["group_by_length"])
        else:
            skip = state["micro_step"] - state["epoch"] * len(train_dl)
            epoch_dl = accelerator.skip_first_batches(train_dl, skip) if skip > 0 else train_dl
        for batch in epoch_dl:
            elapsed = state["train_time_s"] + time.perf_counter() - t0
            if budget_s:  # every rank must agree on where the run is: the slowest clock decides
                elapsed = float(accelerator.reduce(torch.tensor(elapsed, device=accelerator.device), "max"))
            progress = max(state["step"] / tc["max_steps"], elapsed / budget_s if budget_s else 0.0)
            for g in optimizer.param_groups:
                g["lr"] = tc["learning_rate"] * lr_factor(progress, state["step"], tc)
            with accelerator.accumulate(model):
                # right padding under a causal mask: no real token attends a pad, and pads carry no loss, so the
                # attention mask is left out and attention takes its fast unmasked causal kernel (about 6x on CPU)
                loss, _ = answer_loss(model, head, batch["input_ids"], batch["labels"])
                accelerator.backward(loss)
                if accelerator.sync_gradients and tc["max_grad_norm"]:
                    accelerator.clip_grad_norm_(model.parameters(), tc["max_grad_norm"])
                optimizer.step()
                optimizer.zero_grad()
            state["micro_step"] += 1
            tokens += int(batch["attention_mask"].sum())
            running, running_n = running + float(loss.detach()), running_n + 1
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            progress_bar.update(1)
            done = state["step"] >= tc["max_steps"] or (budget_s is not None and elapsed >= budget_s)
            if state["step"] % tc["log_every"] == 0 or done:
                rec = {"step": state["step"], "train_loss": running / running_n, "lr": optimizer.param_groups[0]["lr"],
                       "train_minutes": elapsed / 60}
                state["log_history"].append(rec)
                progress_bar.set_postfix(loss=f"{rec['train_loss']:.3f}")
                running, running_n = 0.0, 0
            if state["step"] % tc["eval_every"] == 0 or done:
                t_eval = time.perf_counter()
                rec = {"step": state["step"], **validate(), "train_minutes": elapsed / 60}
                t0 += time.perf_counter() - t_eval  # the budget counts training time only
                state["log_history"].append(rec)
                key = "val_bits" if draw else "val_cer"
                progress_bar.set_postfix(loss=f"{state['log_history'][-2]['train_loss']:.3f}", **{key: f"{rec[key]:.3f}"})
                if state["best_val_loss"] is None or rec["val_loss"] < state["best_val_loss"]:
                    state["best_val_loss"] = rec["val_loss"]
            if state["step"] % tc["save_every"] == 0 or done:
                state["train_time_s"] += time.perf_counter() - t0
                state["train_tokens"] += int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), "sum"))
                t0, tokens = time.perf_counter(), 0
                save_checkpoint(accelerator, output_dir, state, tc["save_total_limit"])
            if done:
                break
        else:
            state["epoch"] += 1
    progress_bar.close()

    # ---- held-out test: read every test image (fonts and words never seen in training) ---------------------------
    rows = [data["test"][i] for i in range(len(data["test"]) if ec["test_samples"] is None
                                            else min(ec["test_samples"], len(data["test"])))]
    t_read = time.perf_counter()
    evaluated = evaluation_model(accelerator, model, unwrapped)
    if draw:
        test = drawing_metrics(evaluated, processor, rows, dc["captions"], ec["draw_samples"],
                               ec["generation_batch_size"], accelerator)
        test["examples"] = [{c: r[c] for c in dc["captions"]} for r in rows[:6]]
    else:
        with accelerator.split_between_processes(rows) as mine:
            preds = read(evaluated, processor, [r["image"] for r in mine], prompt=dc["prompt"],
                         max_new_tokens=ec["max_new_tokens"], batch_size=ec["generation_batch_size"]) if mine else []
        preds = gather_object(preds)
        test = reading_metrics(preds, rows)
        test["examples"] = [{"text": r["text"], "read": p, "tier": r["tier"], "font": r["font"]}
                            for r, p in list(zip(rows, preds))[:12]]
    test["images_per_second"] = len(rows) / (time.perf_counter() - t_read)
    test["tokens_per_image"] = float(np.mean([processor.num_image_tokens(r["image"]) for r in rows]))
    with torch.no_grad():  # FSDP: of the full copies, all gathered from the same shards
        checksum = float(sum(p.double().sum() for p in evaluated.parameters()))
    agree = len(set(gather_object([checksum]))) == 1  # DDP kept the replicas identical
    del evaluated
    # full weights for save_pretrained: under FSDP gathered from the shards (a collective: every rank calls it) and
    # returned on the main process only; otherwise the model's own state_dict
    weights = accelerator.get_state_dict(model)

    if main_proc:
        results = {
            "model_name": args.hub_model_id.split("/")[-1] if args.hub_model_id else output_dir.name,
            "hub_model_id": args.hub_model_id, "pixeltok_version": pixeltok.__version__, "num_parameters": n_params,
            "model_type": cfg["model"]["type"], "model_config": cfg["model"]["config"], "processor": cfg["processor"],
            "task": dc["task"], "tokenizer": cfg["tokenizer"]["name"],
            "dataset": dict(data_kw, splits={k: len(v) for k, v in data.items()}, streaming=dc["streaming"]),
            "training": {"world_size": world, "steps": state["step"], "device": accelerator.device.type,
                         "init_from": cfg["model"]["init_from"],
                         "mixed_precision": mp, "train_minutes": state["train_time_s"] / 60,
                         "tokens_per_second": state["train_tokens"] / max(state["train_time_s"], 1e-9),
                         "hyperparameters": tc}, "test": test, "hub": cfg["hub"]}
        unwrapped.save_pretrained(output_dir, state_dict=weights)
        processor.save_pretrained(output_dir)
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=1))
        (output_dir / "trainer_state.json").write_text(json.dumps(state, indent=1))
        card = (render_drawer_model_card if draw else render_reader_model_card)(results, repo_id=args.hub_model_id)
        card.save(output_dir / "README.md")
        if draw:
            scores = " ".join(f"{k}_bits={v['bits_per_image_token']:.4f}" for k, v in test.items()
                              if isinstance(v, dict) and "bits_per_image_token" in v)
            print(f"[pixeltok] world_size={world} replicas_agree={agree} steps={state['step']} {scores}", flush=True)
        else:
            print(f"[pixeltok] world_size={world} replicas_agree={agree} steps={state['step']} "
                  f"test_cer={test['cer']:.4f} clean_cer={test.get('clean', {}).get('cer', float('nan')):.4f} "
                  f"hard_cer={test.get('hard', {}).get('cer', float('nan')):.4f}", flush=True)
        if args.push_to_hub:
            from transformers import AutoModelForCausalLM

            # under FSDP the model's weights are this rank's shards: push the full ones just saved
            pushed = AutoModelForCausalLM.from_pretrained(output_dir) \
                if accelerator.distributed_type == DistributedType.FSDP else unwrapped
            push_run(args, pushed, processor, output_dir, card, "Drawing model" if draw else "Reader model")
    accelerator.wait_for_everyone()
    if world > 1:  # gloo's teardown can deadlock under the GIL (see train_pxby.py): leave once every rank is done
        os._exit(0)
    accelerator.end_training()


if __name__ == "__main__":
    main()
