"""Procedural pixel-art creatures + grammar captions: a built-in sprite source that needs no download.

``load_pokemon("synthetic")`` (or :func:`load_synthetic_sprites`) returns the same ``DatasetDict`` as a real sprite
source -- splits ``train`` / ``validation`` / ``test``, columns ``name``, ``image``, ``caption``, ``input_ids`` (+
``pixelbyte`` with ``windows=True``) -- through the same pixelization, caption normalization, tokenization and seeded
split as :class:`pixeltok.data.pokemon.Pokemon`. It is for smoke tests, demos and the tiny recipe config: a few
dozen sprites, every one drawn from its index and ``sprite_seed`` alone (numpy PCG64), so the data is identical on
every machine and needs no file, network or licence.

A creature is a left-right symmetric body (``round``, ``square``, ``tall``, ``wide`` or ``diamond``) in one of ten
colours, with one or two eyes and some of: horns, legs, wings, white spots, dark stripes. Its caption says exactly
that, from a two-template grammar: ``"a green diamond creature with two eyes, horns and wings."``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import datasets
import numpy as np
from PIL import Image

from ._common import describe_config, normalize_caption, run_builder, split_assignment
from .pokemon import sprite_features

SOURCE = "synthetic"  # the name load_pokemon accepts for this source

COLOURS = {"red": (216, 40, 0), "orange": (228, 92, 16), "yellow": (248, 184, 0), "green": (0, 168, 0),
           "teal": (0, 136, 136), "blue": (0, 88, 248), "purple": (104, 68, 252), "pink": (248, 120, 248),
           "brown": (172, 124, 0), "grey": (124, 124, 124)}
SHAPES = ("round", "square", "tall", "wide", "diamond")
FEATURES = ("horns", "legs", "wings", "white spots", "dark stripes")


def _body_mask(shape: str, size: int) -> np.ndarray:
    """``(size, size)`` bool body, centred and symmetric about the vertical axis; 3 px margin for horns/legs/wings."""
    c = size / 2
    yy, xx = np.mgrid[:size, :size] + 0.5
    dy, dx = (yy - c) / (c - 3), (xx - c) / (c - 3)
    return {"round": dx ** 2 + dy ** 2 <= 1, "square": np.maximum(abs(dx), abs(dy)) <= 0.85,
            "tall": (dx / 0.55) ** 2 + dy ** 2 <= 1, "wide": dx ** 2 + (dy / 0.55) ** 2 <= 1,
            "diamond": abs(dx) + abs(dy) <= 1.05}[shape]


def make_creature(index: int, size: int = 16, sprite_seed: int = 0) -> tuple[np.ndarray, str]:
    """Creature number ``index``: ``(size, size, 4)`` uint8 RGBA on a transparent background, and its caption."""
    if size < 12:
        raise ValueError(f"synthetic sprites need size >= 12, got {size}")
    rng = np.random.default_rng([sprite_seed, index])  # one stream per creature: independent of num_sprites
    shape = SHAPES[index % len(SHAPES)]  # every shape in every few dozen
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    eyes = int(rng.integers(1, 3))
    features = [f for f in FEATURES if rng.random() < 0.35]
    if "white spots" in features and "dark stripes" in features:
        features.remove("dark stripes")

    rgb = np.array(COLOURS[colour])
    dark, light = rgb * 11 // 20, (rgb + 255) // 2
    body = _body_mask(shape, size)
    img = np.zeros((size, size, 4), np.uint8)
    img[body] = (*rgb, 255)
    rows, cols = np.flatnonzero(body.any(1)), np.flatnonzero(body.any(0))
    top, bottom, left, right = rows[0], rows[-1], cols[0], cols[-1]
    mirror = size - 1  # column x and mirror - x are symmetric

    def put(y, x, colour):  # a pixel and its mirror image
        img[y, x] = img[y, mirror - x] = (*colour, 255)

    if "dark stripes" in features:
        for y in range(top + 2, bottom, 3):
            img[y][body[y]] = (*dark, 255)
    if "white spots" in features:
        inside = np.argwhere(body[:, : size // 2])
        for y, x in inside[rng.choice(len(inside), size=3, replace=False)]:
            put(y, x, (255, 255, 255))
    if "horns" in features:
        x = left + (right - left) // 4 + 1
        for y in (top - 1, top - 2):
            put(y, x, dark)
    if "legs" in features:
        x = left + (right - left) // 3
        for y in (bottom + 1, bottom + 2):
            put(y, x, dark)
    if "wings" in features:
        mid = (top + bottom) // 2
        for y, x in ((mid - 1, left - 1), (mid, left - 1), (mid - 2, left - 2), (mid - 1, left - 2)):
            put(y, max(x, 0), light)
    eye_y = top + (bottom - top) // 3
    eye_cols = [size // 2 - 1] if eyes == 1 else [left + (right - left) // 3]
    for x in eye_cols:
        put(eye_y, x, (0, 0, 0))

    parts = ["one big eye" if eyes == 1 else "two eyes"] + features
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if rng.random() < 0.5:
        caption = f"a {colour} {shape} creature with {listed}."
    else:
        caption = f"pixel art of a {shape} {colour} creature: {listed}."
    return img, caption


@dataclass
class SyntheticSpritesConfig(datasets.BuilderConfig):
    """Every option (all part of the cache key). The processing options are those of ``PokemonConfig``.

    Args:
        num_sprites: how many creatures (indices ``0 .. num_sprites - 1``).
        size: canvas side in pixels before pixelization (``>= 12``).
        sprite_seed: seed of the creature generator (the split has its own ``seed``).
        long_side, transparency, crop, lowercase, order, tokenizer, windows, val_size, test_size, seed: as in
            :class:`pixeltok.data.pokemon.PokemonConfig`.
    """

    source: str = SOURCE
    num_sprites: int = 48
    size: int = 16
    sprite_seed: int = 0
    long_side: int = 25
    transparency: str = "white"
    crop: bool = True
    lowercase: bool = True
    order: str = "image_first"
    tokenizer: str | None = None
    windows: bool = False
    val_size: float = 0.1
    test_size: float = 0.1
    seed: int = 0


class SyntheticSprites(datasets.GeneratorBasedBuilder):
    """Procedural creatures -> ``name``, ``image``, ``caption``, ``input_ids`` (+ ``pixelbyte``) with seeded splits."""

    VERSION = datasets.Version("1.0.0")  # bump when the generator changes: the version is part of the cache path
    BUILDER_CONFIG_CLASS = SyntheticSpritesConfig
    BUILDER_CONFIGS = [SyntheticSpritesConfig(name="default", version=VERSION,
                                              description="Procedural pixel-art creatures + grammar captions.")]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=describe_config(self.config), features=sprite_features(self.config.windows))

    def _split_generators(self, dl_manager):
        c = self.config
        if c.transparency not in ("white", "token"):
            raise ValueError(f"transparency must be 'white' or 'token', got {c.transparency!r}")
        if c.order not in ("image_first", "caption_first"):
            raise ValueError(f"order must be 'image_first' or 'caption_first', got {c.order!r}")
        if not isinstance(c.num_sprites, int) or c.num_sprites < 1:
            raise ValueError(f"num_sprites must be a positive int, got {c.num_sprites!r}")
        codes = split_assignment(c.num_sprites, c.val_size, c.test_size, c.seed)
        return [datasets.SplitGenerator(name=split, gen_kwargs={"indices": np.flatnonzero(codes == k).tolist()})
                for k, split in enumerate(("train", "validation", "test")) if (codes == k).any()]

    def _generate_examples(self, indices) -> Iterator[tuple[str, dict]]:
        from ..tokenization.palettes import get_palette
        from ..tokenization.pixelbytes import PixelBytesTokenizer, pixelize

        c = self.config
        tok = (PixelBytesTokenizer.from_pretrained(c.tokenizer) if c.tokenizer else
               PixelBytesTokenizer(long_side=c.long_side, transparency=c.transparency, crop=c.crop))
        palette = get_palette("nes55")
        for i in indices:
            rgba, caption = make_creature(i, c.size, c.sprite_seed)
            caption = normalize_caption(caption, lowercase=c.lowercase)
            idx = pixelize(rgba, long_side=c.long_side, transparency=c.transparency, crop=c.crop)
            out = palette.indices_to_rgba(idx)
            image = Image.fromarray(out if c.transparency == "token" else np.ascontiguousarray(out[..., :3]))
            ids = tok.encode_sample(idx, caption, order=c.order)
            name = f"creature_{i:03d}"
            ex = {"name": name, "image": image, "caption": caption, "input_ids": ids}
            if c.windows:
                ex["pixelbyte"] = tok.build_windows(ids).astype(np.int16)
            yield name, ex


def load_synthetic_sprites(*, cache_dir=None, num_proc: int | None = None, streaming: bool = False,
                           download_mode=None, **options):
    """The procedural creatures as a ``DatasetDict`` (``IterableDatasetDict`` with ``streaming=True``).

    ``**options`` are :class:`SyntheticSpritesConfig` fields (``num_sprites=48``, ``long_side=25``, ``val_size``,
    ``test_size``, ``seed``, ...); the other arguments are those of :func:`pixeltok.data.load_pokemon`.
    """
    return run_builder(SyntheticSprites, "default", cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
                       download_mode=download_mode, **options)
