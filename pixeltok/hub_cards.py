"""Model cards for the Hub, filled from a training run's ``eval_results.json``.

:func:`render_pxby_model_card` turns the results a recipe wrote (``recipes/train_pxby.py``) into a
``huggingface_hub.ModelCard`` from the Jinja template ``hub_cards/pxby_model_card.md``: YAML metadata with a
``model-index`` (one entry per held-out metric), a usage snippet that runs when copied, the metrics table,
hyper-parameters, data provenance and limitations. Every number in the card comes from ``results``.

``results`` layout (what the recipe writes; all keys below are read)::

    {"model_name": str, "num_parameters": int, "pixeltok_version": str, "seed": int,
     "model_config": {PxByConfig fields},
     "dataset": {"name": str, "source": str, "license": str | None, "splits": {split: rows},
                 "long_side": int, "lowercase": bool, "seed": int, "order": "image_first" | "caption_first"},
     "training": {"world_size": int, "steps": int, "hyperparameters": {...}, "tokens_per_second": float,
                  "wall_time_s": float, "device": str, "stopped_early": bool, "best_step": int},
     "test": {"loss", "bits_per_token", "token_accuracy", "num_tokens", "hamming", "cosine", "bleu",
              "num_windows", "num_sequences", "context_length", "generation_length"},
     "hub": {"license": str, "tags": [...]} (optional)}
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["render_pxby_model_card", "render_reader_model_card", "render_drawer_model_card", "render_dediffusion_model_card", "cards_dir", "PAPER_RESULTS"]

# Reported in the paper (bi-LSTM PxBy + conv, D=81, hidden 32), on its training data.
PAPER_RESULTS = {"config": "bi-LSTM PxBy+conv, D=81, hidden 32", "hamming": 0.149, "cosine": 0.906, "bleu": 0.785}

_METRICS = (  # key, model-index metric type, display name, note
    ("hamming", "hamming", "Hamming distance (windows)", "lower is better"),
    ("cosine", "cosine", "cosine similarity (windows)", "higher is better"),
    ("bleu", "bleu", "BLEU (windows, sacrebleu)", "higher is better"),
    ("token_accuracy", "accuracy", "next-token accuracy", "higher is better"),
    ("bits_per_token", "bits_per_token", "bits per token", "lower is better"),
    ("loss", "loss", "cross-entropy (nats/token)", "lower is better"),
)


# PretrainedConfig fields every model has: left out of the card's configuration table.
_GENERIC_CONFIG = {"architectures", "transformers_version", "auto_map", "dtype", "torch_dtype", "output_hidden_states",
                   "output_attentions", "return_dict", "chunk_size_feed_forward", "is_encoder_decoder", "problem_type",
                   "id2label", "label2id", "tokenizer_class", "prefix", "task_specific_params", "finetuning_task"}


def cards_dir() -> Path:
    """The folder of card templates: ``$PIXELTOK_HUB_CARDS``, else ``hub_cards/`` next to the package."""
    env = os.environ.get("PIXELTOK_HUB_CARDS")
    here = Path(__file__).resolve().parent
    for cand in ([Path(env)] if env else []) + [here.parent / "hub_cards", here / "templates" / "hub_cards"]:
        if (cand / "pxby_model_card.md").is_file():
            return cand
    raise FileNotFoundError("hub_cards/pxby_model_card.md not found (set PIXELTOK_HUB_CARDS to the template folder)")


def _require(d: dict, path: str):
    cur = d
    for k in path.split("."):
        if not isinstance(cur, dict) or k not in cur:
            raise KeyError(f"render_pxby_model_card: results lack {path!r} (is this a train_pxby.py eval_results.json?)")
        cur = cur[k]
    return cur


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render_pxby_model_card(results: dict, *, repo_id: str | None = None, revision: str | None = None,
                           template_path: str | os.PathLike | None = None, max_new_tokens: int = 700):
    """``results`` (see module docstring) -> ``huggingface_hub.ModelCard`` (``str(card)`` is the README.md).

    Args:
        repo_id: the Hub id the usage snippet loads (default: ``results["hub_model_id"]`` or ``"<user>/<model>"``).
        revision: branch the snippet loads (adds ``revision=...``), e.g. the recipe's ``--revision``.
        template_path: Jinja template (default ``hub_cards/pxby_model_card.md``).
        max_new_tokens: generation length in the usage snippet.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    import pixeltok

    cfg = _require(results, "model_config")
    data = _require(results, "dataset")
    train = _require(results, "training")
    test = _require(results, "test")
    model_name = results.get("model_name") or "pxby"
    repo_id = repo_id or results.get("hub_model_id") or "<user>/<model>"
    hub = results.get("hub") or {}
    source = str(data.get("source") or "")
    hub_dataset = data.get("hub_id")  # where the recipe published the prepared splits, if it did
    if not hub_dataset and source.count("/") == 1 and not os.path.exists(source) and not source.startswith((".", "/")):
        hub_dataset = source
    dataset_type = hub_dataset or data.get("name") or "pixelbytes-sprites"
    split = test.get("split", "test")

    eval_results = [
        EvalResult(task_type="text-generation", task_name="caption + sprite generation", dataset_type=dataset_type,
                   dataset_name=data.get("name") or dataset_type, dataset_split=split, metric_type=mtype,
                   metric_name=name, metric_value=float(test[key]))
        for key, mtype, name, _ in _METRICS if test.get(key) is not None
    ]
    if not eval_results:
        raise ValueError("render_pxby_model_card: results['test'] holds none of "
                         f"{[m[0] for m in _METRICS]}: nothing to report")
    backbone = cfg.get("backbone", "lstm")
    tags = ["pixeltok", "pxby", "pixelbytes", "pixel-art", "multimodal", backbone] + list(hub.get("tags") or [])
    card_data = ModelCardData(
        model_name=model_name, license=hub.get("license") or "apache-2.0", library_name="transformers",
        pipeline_tag="text-generation", tags=list(dict.fromkeys(tags)),
        datasets=[hub_dataset] if hub_dataset else None, eval_results=eval_results,
    )

    backbone_text = {"lstm": ("bidirectional " if cfg.get("bidirectional") else "") + "LSTM",
                     "transformer": "causal Transformer", "mamba": "Mamba (selective SSM)"}.get(backbone, backbone)
    backbone_text += f", {cfg.get('num_hidden_layers')} layer(s), D={cfg.get('hidden_size')}"
    if backbone in ("lstm", "mamba"):
        backbone_text += f", state {cfg.get('state_size')}"
    embedding_text = ("3x3 window (PxByEmbed" + (f", conv k={cfg.get('kernel_size')}" if cfg.get("use_conv") else "")
                      + f", E={cfg.get('embed_dim')})" if cfg.get("embedding_type") == "pxby" else "centre token only")
    splits = data.get("splits") or {}
    split_text = ", ".join(f"{k}: {v}" for k, v in splits.items()) or "unknown"
    order = data.get("order", "image_first")
    metric_rows = [{"name": name, "value": _fmt(float(test[key])), "note": note}
                   for key, _, name, note in _METRICS if test.get(key) is not None]
    paper = ""
    if all(test.get(k) is not None for k in ("hamming", "cosine", "bleu")):
        paper = f"Hamming {PAPER_RESULTS['hamming']}, cosine {PAPER_RESULTS['cosine']}, BLEU {PAPER_RESULTS['bleu']}"
    hp = train.get("hyperparameters") or {}
    summary = (f"{_fmt(train.get('steps'))} optimizer steps on {train.get('world_size')} process(es) "
               f"({train.get('device')}, mixed precision {train.get('mixed_precision', 'no')}) in "
               f"{_fmt(float(train.get('wall_time_s', 0.0)))} s, {_fmt(float(train.get('tokens_per_second', 0.0)))} "
               f"tokens/s; best validation loss {_fmt(train.get('best_val_loss'))} at step {train.get('best_step')}"
               + (" (stopped early)" if train.get("stopped_early") else "") + ". Trained with pixeltok's "
               "`recipes/train_pxby.py` (Accelerate).")
    license_text = data.get("license") or "unknown: check the source before redistributing"
    provenance = (f"**{data.get('name') or 'sprites + captions'}** from `{source}` (licence: {license_text}). "
                  f"{data.get('provenance') or ''}").strip()
    if data.get("hub_id"):
        provenance += (f"\n\nThe prepared splits (pixelized sprites, captions, token ids) are published as "
                       f"[{data['hub_id']}](https://huggingface.co/datasets/{data['hub_id']}): "
                       f"`datasets.load_dataset(\"{data['hub_id']}\")`.")

    template = Path(template_path) if template_path else cards_dir() / "pxby_model_card.md"
    return ModelCard.from_template(
        card_data, template_path=str(template),
        model_name=model_name, repo_id=repo_id, revision_arg=f', revision="{revision}"' if revision else "",
        order=order, order_text="sprite, then its caption" if order == "image_first" else "caption, then its sprite",
        example_caption="a small green dragon with wings", max_new_tokens=int(max_new_tokens),
        backbone_text=backbone_text, embedding_text=embedding_text,
        num_parameters=_fmt(int(results.get("num_parameters", 0))), vocab_size=cfg.get("vocab_size"),
        num_colors=cfg.get("num_colors"), dataset_name=data.get("name") or source, dataset_split_text=split_text,
        pixeltok_version=results.get("pixeltok_version") or pixeltok.__version__,
        eval_split=split, eval_num_sequences=test.get("num_sequences"), seed=results.get("seed"),
        context_length=test.get("context_length"), generation_length=test.get("generation_length"),
        num_windows=test.get("num_windows"), metric_rows=metric_rows, paper_rows=paper,
        paper_config=PAPER_RESULTS["config"], training_summary=summary,
        hyperparameters=[(k, _fmt(v)) for k, v in hp.items()],
        model_config_rows=[(k, _fmt(v)) for k, v in cfg.items() if not k.startswith("_") and k not in _GENERIC_CONFIG],
        train_rows=_fmt(int(splits.get("train", 0))),
        dataset_provenance=provenance, long_side=data.get("long_side"), lowercase=data.get("lowercase", True),
        data_seed=data.get("seed"), extra_limitations=hub.get("limitations") or "",
    )


def render_reader_model_card(results: dict, *, repo_id: str | None = None, template_path=None):
    """A reader's ``eval_results.json`` (``recipes/train_lm.py``) -> ``huggingface_hub.ModelCard``: model-index
    entries for the held-out CER and word accuracy per tier, the usage snippet, hyper-parameters and data."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    import pixeltok

    test, train, data = _require(results, "test"), _require(results, "training"), _require(results, "dataset")
    pc = results.get("processor") or {}
    hub = results.get("hub") or {}
    model_name = results.get("model_name") or "pixeltok-reader"
    repo_id = repo_id or results.get("hub_model_id") or "<user>/<model>"
    tiers = [("all", test)] + [(t, test[t]) for t in ("clean", "hard") if t in test]
    evals = [EvalResult(task_type="image-to-text", task_name="reading words in small images",
                        dataset_type="pixeltok/text_images", dataset_name=f"text_images ({name})", dataset_config=name,
                        dataset_split="test",
                        metric_type=key, metric_name=label, metric_value=float(t[key]))
             for name, t in tiers for key, label in (("cer", "character error rate"), ("word_accuracy", "word accuracy"))]
    card_data = ModelCardData(model_name=model_name, license=hub.get("license") or "apache-2.0",
                              library_name="transformers", pipeline_tag="image-to-text",
                              tags=list(dict.fromkeys(["pixeltok", "ocr", "pixel-tokens", results.get("model_type", "lm")]
                                                      + list(hub.get("tags") or []))), eval_results=evals)
    prep = []
    if pc.get("crop"):
        prep.append("cropped to its ink")
    if pc.get("image_height"):
        prep.append(f"fitted to {pc['image_height']} px high")
    if pc.get("normalize"):
        prep.append("normalized to dark ink on white")
    elif pc.get("grayscale"):
        prep.append("grey")
    if (pc.get("pack") or 1) > 1:
        prep.append(f"{pc['pack']} pixels per strip token")
    palette = pc.get("palette") if not pc.get("learned_colors") else f"learned {pc['learned_colors']}-colour"
    summary = (f"{_fmt(train.get('steps'))} optimizer steps on {train.get('world_size')} process(es) "
               f"({train.get('device')}, mixed precision {train.get('mixed_precision', 'no')}) in "
               f"{_fmt(float(train.get('train_minutes', 0.0)))} training minutes, "
               f"{_fmt(float(train.get('tokens_per_second', 0.0)))} tokens/s.")
    if train.get("init_from"):
        summary += f" Started from `{train['init_from']}` (an earlier stage of its curriculum)."
    splits = dict(data.get("splits") or {})
    if data.get("streaming"):  # the Arrow train split only fed the palette: say how many rows training rendered
        hp = train.get("hyperparameters") or {}
        seen = int(train.get("steps") or 0) * int(hp.get("per_device_batch_size") or 0) \
            * int(hp.get("gradient_accumulation_steps") or 1) * int(train.get("world_size") or 1)
        splits["train"] = f"{_fmt(seen)} rows rendered on the fly (streaming)"
    examples = "; ".join(f"`{e['text']}` → `{e['read']}`" for e in test.get("examples", [])[:8]) or "none"
    template = Path(template_path) if template_path else cards_dir() / "reader_model_card.md"
    return ModelCard.from_template(
        card_data, template_path=str(template), model_name=model_name, repo_id=repo_id,
        model_type=results.get("model_type"), num_parameters=_fmt(int(results.get("num_parameters", 0))),
        palette=palette, layout=pc.get("layout"), scan="columns" if pc.get("scan") == "columns" else "rows",
        prep_text=(" (" + ", ".join(prep) + ")") if prep else "", tokenizer=results.get("tokenizer"),
        tier_rows=[{"tier": n, "n": t.get("num_images"), "cer": f"{100 * t['cer']:.2f}%",
                    "acc": f"{100 * t['word_accuracy']:.1f}%"} for n, t in tiers],
        tokens_per_image=_fmt(float(test.get("tokens_per_image", 0.0))),
        images_per_second=_fmt(float(test.get("images_per_second", 0.0))), device=train.get("device"),
        examples=examples, training_summary=summary,
        hyperparameters=[(k, _fmt(v)) for k, v in (train.get("hyperparameters") or {}).items()],
        data_text=", ".join(f"{k}: {v}" for k, v in splits.items()) + f"; tier {data.get('tier')}, words "
                  f"{data.get('words')}, fonts {data.get('fonts')}, seed {data.get('seed')}",
        max_side=pc.get("max_side"), extra_limitations=hub.get("limitations") or "",
        pixeltok_version=results.get("pixeltok_version") or pixeltok.__version__)


def render_drawer_model_card(results: dict, *, repo_id: str | None = None, template_path=None):
    """A drawing model's ``eval_results.json`` (``recipes/train_lm.py`` with ``data.task: draw``) ->
    ``huggingface_hub.ModelCard``: held-out bits per image token given each kind of text, pixel accuracy of greedy
    drawings, the usage snippet, hyper-parameters and data."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    import pixeltok

    test, train, data = _require(results, "test"), _require(results, "training"), _require(results, "dataset")
    pc, hub = results.get("processor") or {}, results.get("hub") or {}
    model_name = results.get("model_name") or "pixeltok-drawer"
    repo_id = repo_id or results.get("hub_model_id") or "<user>/<model>"
    kinds = [(k, v) for k, v in test.items() if isinstance(v, dict) and "bits_per_image_token" in v]
    source = data.get("source", "scenes")
    evals = [EvalResult(task_type="text-to-image", task_name="drawing images as pixel tokens",
                        dataset_type=f"pixeltok/{source}", dataset_name=f"{source} (text: {k})", dataset_config=k,
                        dataset_split="test", metric_type="bits_per_image_token",
                        metric_name=f"bits per image token given {k}", metric_value=float(v["bits_per_image_token"]))
             for k, v in kinds]
    card_data = ModelCardData(model_name=model_name, license=hub.get("license") or "apache-2.0",
                              library_name="transformers", pipeline_tag="text-to-image",
                              tags=list(dict.fromkeys(["pixeltok", "pixel-tokens", "text-to-image",
                                                       results.get("model_type", "lm")] + list(hub.get("tags") or []))),
                              eval_results=evals)
    palette = pc.get("palette") if not pc.get("learned_colors") else f"learned {pc['learned_colors']}-colour"
    if isinstance(palette, dict):
        palette = f"{palette.get('name', 'custom')} ({len(palette.get('colors', []))} colours)"
    summary = (f"{_fmt(train.get('steps'))} optimizer steps on {train.get('world_size')} process(es) "
               f"({train.get('device')}, mixed precision {train.get('mixed_precision', 'no')}) in "
               f"{_fmt(float(train.get('train_minutes', 0.0)))} training minutes, "
               f"{_fmt(float(train.get('tokens_per_second', 0.0)))} tokens/s.")
    rows = [{"text": k, "bits": f"{v['bits_per_image_token']:.4f}", "image_bits": _fmt(float(v["bits_per_image"])),
             "acc": f"{100 * v['pixel_accuracy']:.1f}%" if "pixel_accuracy" in v else "n/a"} for k, v in kinds]
    template = Path(template_path) if template_path else cards_dir() / "drawer_model_card.md"
    return ModelCard.from_template(
        card_data, template_path=str(template), model_name=model_name, repo_id=repo_id,
        model_type=results.get("model_type"), num_parameters=_fmt(int(results.get("num_parameters", 0))),
        palette=palette, layout=pc.get("layout"), pack=pc.get("pack", 1), tokenizer=results.get("tokenizer"),
        rows=rows, tokens_per_image=_fmt(float(test.get("tokens_per_image", 0.0))), source=source,
        examples="; ".join(f"`{e.get('caption', next(iter(e.values()), ''))}`" for e in test.get("examples", [])[:4]),
        training_summary=summary,
        hyperparameters=[(k, _fmt(v)) for k, v in (train.get("hyperparameters") or {}).items()],
        data_text=", ".join(f"{k}: {v}" for k, v in (data.get("splits") or {}).items()) + f"; seed {data.get('seed')}",
        pixeltok_version=results.get("pixeltok_version") or pixeltok.__version__)


def render_dediffusion_model_card(results: dict, *, repo_id: str | None = None, template_path=None):
    """A De-Diffusion encoder's ``eval_results.json`` (``recipes/train_dediffusion.py``) -> ``ModelCard``: held-out
    bits per image token of the frozen decoder given the encoder's text, example texts, usage and training."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    import pixeltok

    test, train, data = _require(results, "test"), _require(results, "training"), _require(results, "dataset")
    hub, ec = results.get("hub") or {}, results.get("encoder_config") or {}
    model_name = results.get("model_name") or "pixeltok-dediffusion"
    repo_id = repo_id or results.get("hub_model_id") or "<user>/<model>"
    source = data.get("source", "scenes")
    evals = [EvalResult(task_type="image-to-text", task_name="De-Diffusion: images as text a decoder redraws",
                        dataset_type=f"pixeltok/{source}", dataset_name=source, dataset_split="test",
                        metric_type="bits_per_image_token", metric_name="bits per image token (frozen decoder)",
                        metric_value=float(test["bits_per_image_token"]))]
    card_data = ModelCardData(model_name=model_name, license=hub.get("license") or "apache-2.0",
                              library_name="transformers", pipeline_tag="image-to-text",
                              tags=list(dict.fromkeys(["pixeltok", "de-diffusion", "image-to-text"]
                                                      + list(hub.get("tags") or []))), eval_results=evals)
    template = Path(template_path) if template_path else cards_dir() / "dediffusion_model_card.md"
    return ModelCard.from_template(
        card_data, template_path=str(template), model_name=model_name, repo_id=repo_id,
        num_parameters=_fmt(int(results.get("num_parameters", 0))), k=ec.get("num_queries"),
        num_text_tokens=results.get("num_text_tokens"), decoder=results.get("decoder"), source=source,
        bits=f"{float(test['bits_per_image_token']):.4f}", image_bits=_fmt(float(test.get("bits_per_image", 0.0))),
        num_images=test.get("num_images"), examples=test.get("examples", [])[:6],
        training_summary=(f"{_fmt(train.get('steps'))} optimizer steps on {train.get('world_size')} process(es) "
                          f"({train.get('device')}) in {_fmt(float(train.get('train_minutes', 0.0)))} training minutes; "
                          f"Gumbel temperature {ec.get('tau_start')} -> {ec.get('tau_end')} over "
                          f"{ec.get('tau_decay_steps')} steps ({ec.get('tau_schedule')})."),
        hyperparameters=[(k, _fmt(v)) for k, v in (train.get("hyperparameters") or {}).items()],
        encoder_fields=[(k, _fmt(v)) for k, v in ec.items() if k in (
            "image_height", "image_width", "patch_size", "hidden_size", "num_trunk_layers", "num_queries",
            "num_pooler_layers", "num_attention_heads", "hard", "fit")],
        pixeltok_version=results.get("pixeltok_version") or pixeltok.__version__)
