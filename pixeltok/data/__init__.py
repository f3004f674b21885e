"""Training-ready ``datasets.DatasetDict``s in one call: PixelBytes sprites + captions, CIFAR-10 and image tiles.

- :func:`load_pokemon` -- builder :class:`pixeltok.data.pokemon.Pokemon` (Hub repo id, parquet, or raw sprites).
- :func:`load_cifar_tiles` -- builder :class:`pixeltok.data.cifar_tiles.CifarTiles` (CIFAR-10 binary archive,
  or any images cut into 32x32 tiles).
- :func:`load_text_images` -- builder :class:`pixeltok.data.text_images.TextImages`: single words rendered with
  real fonts into small images (the reading task), clean and hard tiers, test fonts and words unseen in training;
  :func:`prepare_reader_image` fits any image to the reader's input.
- :func:`load_scenes` -- builder :class:`pixeltok.data.scenes.Scenes`: procedurally drawn scenes of 1-4 coloured
  shapes with complete grammar captions (``caption``) and one-object ``short_caption``s, content-disjoint splits;
  :func:`pixeltok.data.scenes.scene_palette` is the palette of exactly their colours.
- :func:`load_photos` -- builder :class:`pixeltok.data.photos.Photos`: real photographs (Debian wallpapers,
  scikit-image photos, any image files), whole or as seeded crops, at several box-downscale factors, with a
  held-out ``test`` split: the codec recipe's data.
- :func:`prepare_wesnoth` -- a real GPL sprite + caption corpus from Debian's ``wesnoth-1.16-data``, built locally.
- :func:`render_dataset_card` / :func:`push_dataset_to_hub` -- dataset cards from ``hub_cards/`` templates and a
  push as parquet shards that ``load_dataset(repo_id, config)`` reads without pixeltok.

Both loaders cache the prepared Arrow files (``cache_dir``, default the ``datasets`` cache) under a key made of the
builder options, a fingerprint of the source files (size + mtime) and ``pixeltok.__version__`` (the builder hash),
so edited sources or a new pixeltok version rebuild instead of reusing stale data.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ._common import (DataSourceError, fingerprint_source, is_hub_repo_id, is_url, normalize_caption, read_options,
                      run_builder)
from .photos import load_photos
from .scenes import load_scenes
from .text_images import load_text_images, prepare_reader_image
from .wesnoth import prepare_wesnoth

__all__ = ["load_pokemon", "load_cifar_tiles", "prepare_wesnoth", "render_dataset_card", "push_dataset_to_hub",
           "with_windows", "DataSourceError", "normalize_caption", "load_text_images", "prepare_reader_image", "load_source",
           "load_scenes", "load_photos"]


def load_pokemon(source, *, cache_dir=None, num_proc: int | None = None, streaming: bool = False, download_mode=None,
                 **options):
    """PixelBytes sprites + captions as a ``DatasetDict`` (``IterableDatasetDict`` with ``streaming=True``).

    Args:
        source: a Hub dataset repo id (``"ffurfaro/PixelBytes-Pokemon"``), a parquet file or folder in that layout,
            or a raw folder of sprites + captions (``metadata.jsonl``/``metadata.csv`` with ``file_name`` and
            ``caption``, or ``name.png`` + ``name.txt`` pairs).
        cache_dir: where the prepared Arrow files go (default: the ``datasets`` cache).
        num_proc: processes for pixelization + tokenization (the items are sharded across them).
        streaming: iterate lazily from the source instead of writing Arrow files.
        **options: fields of :class:`pixeltok.data.pokemon.PokemonConfig` (``long_side=25``,
            ``transparency="white"|"token"``, ``crop``, ``lowercase``, ``order``, ``tokenizer``, ``windows``,
            ``val_size=0.1``, ``test_size=0.1``, ``seed=0``, ``errors="raise"|"skip"``, ``revision``, ...).

    Returns:
        splits ``train`` / ``validation`` / ``test`` with columns ``name``, ``image``, ``caption``, ``input_ids``
        (+ ``pixelbyte`` with ``windows=True``).
    """
    if str(source) == "synthetic" and not os.path.exists("synthetic"):  # built-in creatures (a local path wins)
        from .synthetic import load_synthetic_sprites

        return load_synthetic_sprites(cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
                                      download_mode=download_mode, **options)
    from .pokemon import Pokemon

    src = str(source)
    if is_hub_repo_id(src):
        options.setdefault("revision", _hub_revision(src, options.get("revision")))
        fp = ""
    else:
        fp = fingerprint_source(src)
    return run_builder(Pokemon, "default", cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
                       download_mode=download_mode, source=src, source_fingerprint=fp, **options)


def load_cifar_tiles(source, config: str | None = None, *, cache_dir=None, num_proc: int | None = None,
                     streaming: bool = False, download_mode=None, **options):
    """CIFAR-10 from its binary archive, or any images as 32x32 tiles, as a ``DatasetDict``.

    Args:
        source: ``cifar-10-binary.tar.gz`` (path or URL), an extracted ``cifar-10-batches-bin`` folder or ``.bin``
            batch file (config ``cifar10``); or a folder of images, an image file, or a list of image paths
            (configs ``tiles`` / ``cifar_style``).
        config: ``cifar10``, ``tiles`` or ``cifar_style``; default: ``cifar10`` for archives / ``.bin`` / folders
            holding ``*batch*.bin``, else ``tiles``.
        cache_dir, num_proc, streaming: as in :func:`load_pokemon` (``num_proc`` shards source files / batches).
        **options: fields of :class:`pixeltok.data.cifar_tiles.CifarTilesConfig` (``size``, ``stride``,
            ``border``, ``downscale``, ``background``, ``max_tiles_per_image``, ``val_size``, ``test_size``,
            ``split_by``, ``seed``, ``errors``).
    """
    from .cifar_tiles import CifarTiles

    if config is None:
        config = _guess_cifar_config(source)
    if isinstance(source, (list, tuple)):
        src = [str(p) for p in source]
    else:
        src = str(source)
    fp = "" if isinstance(src, str) and is_url(src) else fingerprint_source(src)
    return run_builder(CifarTiles, config, cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
                       download_mode=download_mode, source=src, source_fingerprint=fp, **options)


def _guess_cifar_config(source) -> str:
    if isinstance(source, (list, tuple)):
        return "tiles"
    s = str(source)
    if s.endswith((".tar.gz", ".tgz", ".tar", ".bin")) or is_url(s):
        return "cifar10"
    p = Path(s)
    if p.is_dir() and (any(p.rglob("*batch*.bin")) or any(p.rglob("data_batch_*"))):
        return "cifar10"
    return "tiles"


def _hub_revision(repo_id: str, revision: str | None) -> str | None:
    """Pin a Hub source to its current commit so the cache follows the repo (None when the Hub is unreachable)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return revision
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo_id, revision=revision).sha or revision
    except Exception:  # unreachable Hub: snapshot_download will use its local cache or explain
        return revision


def with_windows(dataset, tokenizer=None, column: str = "pixelbyte"):
    """Add the 3x3 ``pixelbyte`` windows on the fly (``Dataset``/``DatasetDict.with_transform``).

    Each row gains ``column``: ``(L, 3, 3)`` int64 built from its ``input_ids`` by
    ``PixelBytesTokenizer.build_windows``; nothing is written to disk.
    """
    from ..tokenization.pixelbytes import PixelBytesTokenizer

    tok = tokenizer or PixelBytesTokenizer()

    def transform(batch):
        batch[column] = [tok.build_windows(ids) for ids in batch["input_ids"]]
        return batch

    return dataset.with_transform(transform)


# -- dataset cards ------------------------------------------------------------------------------------------------
_CARD_KINDS = {"pokemon": ("dataset_pokemon.md", "pokemon", "PokemonConfig", "default"),
               "cifar_tiles": ("dataset_cifar_tiles.md", "cifar_tiles", "CifarTilesConfig", "tiles"),
               "text_images": ("dataset_text_images.md", "text_images", "TextImagesConfig", "default"),
               "scenes": ("dataset_scenes.md", "scenes", "ScenesConfig", "default")}


def _cards_dir() -> Path:
    env = os.environ.get("PIXELTOK_HUB_CARDS")
    for cand in ([Path(env)] if env else []) + [Path(__file__).resolve().parents[2] / "hub_cards",
                                                 Path(__file__).resolve().parents[1] / "hub_cards"]:
        if cand.is_dir():
            return cand
    raise FileNotFoundError("hub_cards/ templates not found (set PIXELTOK_HUB_CARDS to the folder)")


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if n < bound:
            return label
    return "n>1T" if n >= 10 ** 12 else "1B<n<10B"


def render_dataset_card(kind: str, **facts):
    """Render ``hub_cards/dataset_{kind}.md`` into a ``huggingface_hub.DatasetCard``.

    Args:
        kind: ``"pokemon"``, ``"cifar_tiles"``, ``"text_images"`` or ``"scenes"`` (``hub_cards/dataset_{kind}.md``).
        **facts: ``license`` (SPDX-like Hub id, required: e.g. ``"gpl-2.0"`` for Wesnoth sprites), ``source``
            (where the raw data came from, required), ``splits`` (``{split: num_rows}``) or ``dataset`` (the
            ``DatasetDict``, from which splits and features are read), ``options`` (the builder options passed to the
            loader; defaults are filled in so the card states every processing parameter), ``config_name``,
            ``repo_id``, ``pretty_name``, ``source_datasets`` (list of Hub ids), ``notes`` (free text).
    """
    import pixeltok
    from huggingface_hub import DatasetCard, DatasetCardData

    if kind not in _CARD_KINDS:
        raise ValueError(f"unknown dataset card kind {kind!r}; expected one of {sorted(_CARD_KINDS)}")
    template, module, cfg_cls, default_config = _CARD_KINDS[kind]
    missing = [k for k in ("license", "source") if not facts.get(k)]
    if missing:
        raise ValueError(f"render_dataset_card({kind!r}): missing facts {missing} (a card must state licence and source)")
    ds = facts.pop("dataset", None)
    if ds is not None:
        facts.setdefault("splits", {name: d.num_rows for name, d in ds.items()})
        first = next(iter(ds.values()))
        facts.setdefault("features", {k: str(v) for k, v in first.features.items()})
        facts.setdefault("config_name", first.info.config_name or default_config)
        recorded = read_options(first.info)
        recorded.pop("source", None)
        facts["options"] = {**recorded, **(facts.get("options") or {})}
    if not facts.get("splits"):
        raise ValueError(f"render_dataset_card({kind!r}): give splits={{split: rows}} or dataset=<DatasetDict>")
    import importlib

    cls = getattr(importlib.import_module(f"pixeltok.data.{module}"), cfg_cls)
    config_name = facts.get("config_name") or default_config
    defaults = {f.name: getattr(cls(name=config_name), f.name) for f in dataclasses.fields(cls)
                if f.name not in ("name", "version", "data_dir", "data_files", "description", "source", "source_fingerprint")}
    if kind == "cifar_tiles" and config_name == "cifar_style":
        defaults.update(downscale=4, border="drop")
    opts = {**defaults, **(facts.get("options") or {})}
    total = sum(int(v) for v in facts["splits"].values())
    ctx = {
        "pretty_name": facts.get("pretty_name") or ("PixelBytes sprites + captions" if kind == "pokemon" else "Image tiles (32x32)"),
        "license": facts["license"], "source": facts["source"], "splits": dict(facts["splits"]), "num_rows": total,
        "size_category": size_category(total), "options": opts, "config_name": config_name,
        "repo_id": facts.get("repo_id") or "<user>/<dataset>", "source_datasets": list(facts.get("source_datasets") or []),
        "features": facts.get("features") or {}, "notes": facts.get("notes") or "", "pixeltok_version": pixeltok.__version__,
    }
    unknown = set(facts) - set(ctx) - {"options"}
    if unknown:
        raise ValueError(f"render_dataset_card({kind!r}): unknown facts {sorted(unknown)}")
    return DatasetCard.from_template(DatasetCardData(), template_path=str(_cards_dir() / template), **ctx)


def push_dataset_to_hub(dataset_dict, repo_id: str, kind: str, *, config_name: str | None = None, token=None,
                        private: bool | None = None, max_shard_size="500MB", **facts):
    """Push ``dataset_dict`` as parquet shards with a rendered card, readable by ``load_dataset(repo_id, config)``.

    The card (from :func:`render_dataset_card`) is uploaded first: ``DatasetDict.push_to_hub`` then keeps its text
    and adds the ``dataset_info`` / ``configs`` metadata that ``load_dataset`` uses.
    """
    from huggingface_hub import HfApi

    first = next(iter(dataset_dict.values()))
    config_name = config_name or first.info.config_name or "default"
    card = render_dataset_card(kind, dataset=dataset_dict, config_name=config_name, repo_id=repo_id, **facts)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_file(path_or_fileobj=str(card).encode("utf-8"), path_in_repo="README.md", repo_id=repo_id,
                    repo_type="dataset", commit_message="Add dataset card (pixeltok)")
    return dataset_dict.push_to_hub(repo_id, config_name=config_name, token=token, private=private,
                                    max_shard_size=max_shard_size)


# the fields of a recipe's ``data`` section that :func:`load_source` takes (with n_train and streaming)
DATA_KEYS = ("source", "n_val", "n_test", "seed", "cache_dir", "options", "tier", "fonts", "words")


def load_source(source: str, *, n_train: int, n_val: int, n_test: int, seed: int = 0, cache_dir=None,
                streaming: bool = False, options: dict | None = None, tier: str = "mixed", fonts="matplotlib",
                words="wamerican"):
    """The recipes' one data path: ``source`` ``"text_images"`` (:func:`load_text_images`, with ``tier``,
    ``fonts`` and ``words``), ``"scenes"`` (:func:`load_scenes`) or ``"sprites"`` (:func:`load_pokemon` of
    ``options["path"]``, default ``"synthetic"``; its split sizes are ``options`` ``val_size`` / ``test_size``,
    so ``n_train`` / ``n_val`` / ``n_test`` do not apply), plus any builder ``options``.

    Raises ``ValueError`` for an unknown source and the builder's ``TypeError`` / ``ValueError`` for bad options."""
    options = dict(options or {})
    if source == "sprites":
        return load_pokemon(options.pop("path", "synthetic"), seed=seed, cache_dir=cache_dir, streaming=streaming,
                            **options)
    kw = dict(n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, cache_dir=cache_dir, streaming=streaming,
              **options)
    if source == "scenes":
        return load_scenes(**kw)
    if source == "text_images":
        return load_text_images(**kw, tier=tier, fonts=fonts, words=words)
    raise ValueError(f"unknown data source {source!r}; choose 'text_images', 'scenes' or 'sprites'")
