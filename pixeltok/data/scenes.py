"""Procedurally drawn scenes of coloured shapes with complete grammar captions (the De-Diffusion experiment).

An image -> text encoder is trained through a frozen caption -> image pixel-token LM: the encoder's text must be a
caption from which the LM redraws the image. For that the data needs captions that *determine* their image, and
images that stay short as pixel tokens. Each scene here is 1-4 (``min_shapes`` .. ``max_shapes``) flat shapes on a
plain background, drawn with hard edges in a fixed set of named colours, and its ``caption`` lists every object::

    "a large red circle top left, a small blue square bottom right, on white"

:func:`load_scenes` returns a ``DatasetDict`` (``IterableDatasetDict`` with ``streaming=True``) built by the
:class:`Scenes` builder; :func:`make_scene` draws one scene; :func:`scene_palette` is the palette (dict form) that
holds exactly the scene colours, for ``PixelTextProcessor(palette=scene_palette(), layout="runs")``.

Grammar (every scene)
---------------------
``caption = object (", " object)* ", on " background``, ``object = "a " size " " colour " " shape " " position``:

- ``shape``: ``circle``, ``square``, ``triangle`` (pointing up), ``cross`` (a plus sign), ``ring``.
- ``colour``: ``red``, ``green``, ``blue``, ``yellow``, ``orange``, ``purple``, ``black``, ``white``
  (:data:`OBJECT_COLOURS`); ``background``: ``white``, ``black``, ``grey`` (:data:`BACKGROUNDS`). RGB values in
  :data:`COLOURS` (= :data:`SCENE_COLOURS`); an object never has the colour of the background.
- ``size``: ``small`` (a box of ``round(0.29 * size)`` px: 7 px at 24) or ``large`` (``size // 2`` px: 12 px at 24);
  :func:`object_side`.
- ``position``: a cell of the 3x3 grid, ``top left``, ``top``, ``top right``, ``left``, ``center``, ``right``,
  ``bottom left``, ``bottom``, ``bottom right``; no two objects share a cell.

Objects are listed in paint order (later ones are drawn on top). An object's box is centred on its cell's centre
(rounded half up), shifted by a jitter of -1, 0 or +1 px on each axis and then clamped into the image (large objects
in edge cells touch the border): the caption fixes the image up to that jitter (:func:`nominal_box`,
:func:`draw_scene`). A layout in which some object keeps less than half of its pixels visible is redrawn, so
every listed object can be seen. Pixels take only the listed colours and the background (no anti-aliasing).

``short_caption`` is a short human-style caption naming one object -- the one with the most visible pixels (the
first in paint order on a tie) -- in one of three templates: ``"a red circle"``, ``"there is a red circle"``,
``"a red circle on white"``.

Splits
------
Scene *contents* are split, not rows: the canonical content of a scene (its background and the set of its objects'
size, colour, shape and cell, paint order ignored) is hashed with ``seed`` into ``[0, 1)``; below ``test_share``
(0.1) it belongs to ``test``, below ``test_share + val_share`` (0.1) to ``validation``, else to ``train``. A split's
rows are drawn until their content falls into that split's family, so no scene of ``test`` (or ``validation``) has
the content of a scene in ``train``, whatever the jitter or paint order -- and no image is in two splits.

Row ``i`` of a split is drawn from ``numpy.random.default_rng([seed, split_code, i])`` alone (0 train,
1 validation, 2 test): rows are identical whether built to Arrow, streamed, sharded or built with ``num_proc``, and
do not depend on ``n_train`` / ``n_val`` / ``n_test``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import datasets
import numpy as np
from PIL import Image

from ._common import run_builder

__all__ = ["load_scenes", "make_scene", "sample_scene", "draw_scene", "parse_caption", "scene_palette",
           "scene_content_key", "scene_family", "nominal_box", "object_side", "check_options", "render_scenes_card",
           "Scenes", "ScenesConfig", "COLOURS", "SCENE_COLOURS", "OBJECT_COLOURS", "BACKGROUNDS", "SHAPES", "SIZES",
           "POSITIONS", "SIZE_RANGE", "MAX_SHAPES", "SHORT_TEMPLATES"]

# -- the vocabulary of the grammar ---------------------------------------------------------------------------------
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20), "green": (20, 160, 40), "blue": (30, 60, 220), "yellow": (250, 220, 0),
    "orange": (250, 130, 0), "purple": (130, 40, 170), "black": (0, 0, 0), "white": (255, 255, 255),
    "grey": (128, 128, 128),
}
SCENE_COLOURS = COLOURS  # name -> RGB of every colour a scene pixel can have (objects + backgrounds)
OBJECT_COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "black", "white")
BACKGROUNDS = ("white", "black", "grey")
SHAPES = ("circle", "square", "triangle", "cross", "ring")
SIZES = ("small", "large")
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
SIZE_RANGE = (16, 64)
MAX_SHAPES = len(POSITIONS)  # one object per grid cell
SHORT_TEMPLATES = ("{a} {colour} {shape}", "there is {a} {colour} {shape}", "{a} {colour} {shape} on {background}")
SPLITS = ("train", "validation", "test")
JITTER = 1  # px, each axis
MIN_VISIBLE = 0.5  # share of an object's pixels that must stay visible (else the layout is redrawn)
MAX_ATTEMPTS = 10_000

_ALLOWED = {bg: tuple(c for c in OBJECT_COLOURS if c != bg) for bg in BACKGROUNDS}
_RGB = {k: np.array(v, np.uint8) for k, v in COLOURS.items()}
_UNIFORMS = 3 + MAX_SHAPES + 5 * MAX_SHAPES  # one rng.random call per layout attempt


def object_side(size_name: str, size: int = 24) -> int:
    """Side in px of the box of a ``small`` / ``large`` object in a ``size`` x ``size`` scene (7 / 12 at 24)."""
    if size_name == "small":
        return max(3, int(np.floor(0.29 * size + 0.5)))
    if size_name == "large":
        return size // 2
    raise ValueError(f"size_name must be 'small' or 'large', got {size_name!r}")


def nominal_box(position: str, size_name: str, size: int = 24) -> tuple[int, int, int]:
    """``(x0, y0, side)``: the box of an object at ``position`` without jitter (centred on the cell, clamped).

    The drawn box is ``clamp(nominal + jitter)`` with jitter in ``{-1, 0, 1}`` per axis, so it is within 1 px of this.
    """
    d = object_side(size_name, size)
    cell = POSITIONS.index(position)
    row, col = divmod(cell, 3)
    x0 = int(np.floor((col + 0.5) * size / 3 - d / 2 + 0.5))
    y0 = int(np.floor((row + 0.5) * size / 3 - d / 2 + 0.5))
    return min(max(x0, 0), size - d), min(max(y0, 0), size - d), d


_MASKS: dict[tuple[str, int], np.ndarray] = {}


def _mask(shape: str, d: int) -> np.ndarray:
    """``(d, d)`` bool mask of ``shape`` in its box (hard edges; pixel centres tested), cached."""
    m = _MASKS.get((shape, d))
    if m is None:
        t = (np.arange(d) + 0.5) / d * 2 - 1  # pixel centres in (-1, 1)
        v, u = t[:, None], t[None, :]  # v: down, u: right
        r2 = u * u + v * v
        if shape == "circle":
            m = r2 <= 1.0
        elif shape == "square":
            m = np.ones((d, d), bool)
        elif shape == "triangle":  # apex at the top centre, base along the bottom
            m = np.abs(u) <= (v + 1) / 2 + 1e-9
        elif shape == "cross":  # a plus sign, arms a third of the side wide
            m = (np.abs(u) <= 0.34) | (np.abs(v) <= 0.34)
        elif shape == "ring":
            m = (r2 <= 1.0) & (r2 >= 0.25)
        else:
            raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
        m = np.ascontiguousarray(m)
        m.setflags(write=False)
        _MASKS[(shape, d)] = m
    return m


# -- validation -----------------------------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_scene_args(size, min_shapes, max_shapes, val_share=0.1, test_share=0.1) -> None:
    if not _is_int(size) or not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
        raise ValueError(f"size must be an int in {SIZE_RANGE[0]}..{SIZE_RANGE[1]} (image side in px), got {size!r}")
    for k, v in (("min_shapes", min_shapes), ("max_shapes", max_shapes)):
        if not _is_int(v) or not 1 <= v <= MAX_SHAPES:
            raise ValueError(f"{k} must be an int in 1..{MAX_SHAPES} (one object per cell of the 3x3 grid), got {v!r}")
    if min_shapes > max_shapes:
        raise ValueError(f"min_shapes ({min_shapes}) must be <= max_shapes ({max_shapes})")
    for k, v in (("val_share", val_share), ("test_share", test_share)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ValueError(f"{k} must be a fraction in [0, 1), got {v!r}")
    if val_share + test_share >= 1:
        raise ValueError(f"val_share + test_share must be < 1 (train needs contents of its own), got "
                         f"{val_share} + {test_share}")


def check_options(c) -> None:
    """Validate every :class:`ScenesConfig` option (a :class:`ValueError` naming the option)."""
    for k in ("n_train", "n_val", "n_test"):
        v = getattr(c, k)
        if not _is_int(v) or v < 0:
            raise ValueError(f"{k} must be a non-negative int, got {v!r}")
    if c.n_train + c.n_val + c.n_test == 0:
        raise ValueError("n_train, n_val and n_test are all 0: nothing to build")
    _check_scene_args(c.size, c.min_shapes, c.max_shapes, c.val_share, c.test_share)
    for k, n, share in (("val_share", c.n_val, c.val_share), ("test_share", c.n_test, c.test_share)):
        if n and share == 0:
            raise ValueError(f"{k}=0 with {'n_val' if k == 'val_share' else 'n_test'}={n}: that split has no scene "
                             "contents of its own")
    if not _is_int(c.seed) or c.seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {c.seed!r}")
    if not _is_int(c.num_shards) or c.num_shards < 1:
        raise ValueError(f"num_shards must be a positive int, got {c.num_shards!r}")


def _split_code(split) -> int:
    if isinstance(split, str) and split in SPLITS:
        return SPLITS.index(split)
    if _is_int(split) and 0 <= split < len(SPLITS):
        return int(split)
    raise ValueError(f"split must be one of {SPLITS} (or its code 0/1/2), got {split!r}")


# -- content families (the splits) ----------------------------------------------------------------------------------
def scene_content_key(background: str, objects) -> str:
    """Canonical content of a scene: background + the sorted ``size colour shape @ position`` of its objects (paint
    order and jitter ignored)."""
    items = sorted(f"{o['size']} {o['colour']} {o['shape']} @ {o['position']}" for o in objects)
    return f"{background}|" + ";".join(items)


def scene_family(background: str, objects, seed: int = 0, val_share: float = 0.1, test_share: float = 0.1) -> int:
    """Split code (0 train, 1 validation, 2 test) that owns this scene content, from a seeded hash of
    :func:`scene_content_key`."""
    h = hashlib.blake2b(scene_content_key(background, objects).encode(), digest_size=8,
                        key=str(int(seed)).encode()).digest()
    u = int.from_bytes(h, "big") / 2.0 ** 64
    return 2 if u < test_share else 1 if u < test_share + val_share else 0


# -- one scene -----------------------------------------------------------------------------------------------------
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _layout(u: np.ndarray, size: int, min_shapes: int, max_shapes: int):
    """A layout from ``_UNIFORMS`` uniforms: ``(background, objects, template)``."""
    n = min_shapes + int(u[0] * (max_shapes - min_shapes + 1))
    background = BACKGROUNDS[int(u[1] * len(BACKGROUNDS))]
    template = int(u[2] * len(SHORT_TEMPLATES))
    cells = np.argsort(u[3:3 + MAX_SHAPES], kind="stable")[:n]
    allowed = _ALLOWED[background]
    objs = []
    for k, cell in enumerate(cells.tolist()):
        a, b, c, jx, jy = u[3 + MAX_SHAPES + 5 * k: 3 + MAX_SHAPES + 5 * k + 5].tolist()
        shape, colour, size_name = SHAPES[int(a * len(SHAPES))], allowed[int(b * len(allowed))], SIZES[int(c * 2)]
        position = POSITIONS[cell]
        x0, y0, d = nominal_box(position, size_name, size)
        x0 = min(max(x0 + int(jx * 3) - JITTER, 0), size - d)
        y0 = min(max(y0 + int(jy * 3) - JITTER, 0), size - d)
        objs.append({"shape": shape, "colour": colour, "size": size_name, "position": position,
                     "x": x0, "y": y0, "side": d})
    return background, objs, template


def draw_scene(objects, background: str, size: int = 24, labels: bool = False):
    """Paint ``objects`` (dicts with ``shape``, ``colour``, ``x``, ``y``, ``side``; in paint order) on
    ``background``: ``(size, size, 3)`` uint8. With ``labels``, also the ``(size, size)`` int16 map of which object
    (1-based; 0 = background) each pixel shows."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _RGB[background]
    lab = np.zeros((size, size), np.int16) if labels else None
    for k, o in enumerate(objects):
        x, y, d = o["x"], o["y"], o["side"]
        m = _mask(o["shape"], d)
        img[y:y + d, x:x + d][m] = _RGB[o["colour"]]
        if labels:
            lab[y:y + d, x:x + d][m] = k + 1
    return (img, lab) if labels else img


def sample_scene(index: int, size: int = 24, seed: int = 0, split="train", *, min_shapes: int = 1,
                 max_shapes: int = 4, val_share: float = 0.1, test_share: float = 0.1) -> dict:
    """Scene ``index`` of ``split``: ``{"image": (size, size, 3) uint8, "caption", "short_caption", "num_shapes",
    "background", "shapes": [{shape, colour, size, position, x, y, side}, ...] (paint order), "attempts"}``.

    Drawn from ``default_rng([seed, split_code, index])`` alone: one vector of uniforms per attempt, redrawn while
    the content belongs to another split's family or some object would be less than half visible.
    """
    _check_scene_args(size, min_shapes, max_shapes, val_share, test_share)
    code = _split_code(split)
    if code and (val_share if code == 1 else test_share) == 0:
        raise ValueError(f"split {SPLITS[code]!r} has no scene contents: {'val_share' if code == 1 else 'test_share'}=0")
    rng = np.random.default_rng([int(seed), code, int(index)])
    for attempt in range(1, MAX_ATTEMPTS + 1):
        background, objs, template = _layout(rng.random(_UNIFORMS), size, min_shapes, max_shapes)
        if scene_family(background, objs, seed, val_share, test_share) != code:
            continue
        img, lab = draw_scene(objs, background, size, labels=True)
        visible = np.bincount(lab.ravel(), minlength=len(objs) + 1)[1:]
        total = [int(_mask(o["shape"], o["side"]).sum()) for o in objs]
        if any(v < MIN_VISIBLE * t for v, t in zip(visible.tolist(), total)):
            continue
        break
    else:  # only with shares so small that the family is (nearly) empty
        raise ValueError(f"no scene for {SPLITS[code]} row {index} after {MAX_ATTEMPTS} attempts "
                         f"(val_share={val_share}, test_share={test_share}): use larger shares")
    caption = ", ".join(f"a {o['size']} {o['colour']} {o['shape']} {o['position']}" for o in objs) + f", on {background}"
    main = objs[int(np.argmax(visible))]  # argmax: the first on a tie
    short = SHORT_TEMPLATES[template].format(a=_article(main["colour"]), colour=main["colour"], shape=main["shape"],
                                             background=background)
    return {"image": img, "caption": caption, "short_caption": short, "num_shapes": len(objs),
            "background": background, "shapes": objs, "attempts": attempt}


def make_scene(index: int, size: int = 24, seed: int = 0, split="train", **options) -> tuple[np.ndarray, str, str]:
    """``(image (size, size, 3) uint8, caption, short_caption)`` of scene ``index`` (see :func:`sample_scene`;
    ``options``: ``min_shapes``, ``max_shapes``, ``val_share``, ``test_share``)."""
    s = sample_scene(index, size, seed, split, **options)
    return s["image"], s["caption"], s["short_caption"]


_OBJECT_RE = re.compile(r"^an? (?P<size>{}) (?P<colour>{}) (?P<shape>{}) (?P<position>{})$".format(
    "|".join(SIZES), "|".join(OBJECT_COLOURS), "|".join(SHAPES),
    "|".join(sorted(POSITIONS, key=len, reverse=True))))


def parse_caption(caption: str) -> tuple[list[dict], str]:
    """Inverse of the caption grammar: ``([{size, colour, shape, position}, ...] in paint order, background)``.

    A :class:`ValueError` says which part is not in the grammar (for checking a model's generated captions, catch it).
    """
    parts = caption.strip().split(", ")
    if len(parts) < 2 or not parts[-1].startswith("on "):
        raise ValueError(f"caption must end with ', on <background>': {caption!r:.200}")
    background = parts[-1][3:]
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r} (expected one of {BACKGROUNDS}) in {caption!r:.200}")
    objs, cells = [], set()
    for p in parts[:-1]:
        m = _OBJECT_RE.match(p)
        if not m:
            raise ValueError(f"{p!r} is not 'a <small|large> <colour> <shape> <position>' (in {caption!r:.200})")
        o = m.groupdict()
        if o["position"] in cells:
            raise ValueError(f"two objects at {o['position']!r} in {caption!r:.200}")
        cells.add(o["position"])
        objs.append(o)
    return objs, background


def scene_palette() -> dict:
    """The scene colours as a palette in its dict form (``Palette.to_dict``: ``{"name": "scenes", "colors":
    [[name, "#rrggbb"], ...]}``, in :data:`COLOURS` order), for ``PixelTextProcessor(palette=scene_palette())`` /
    ``PixelTokenizer(palette=...)``: every scene pixel quantizes to itself."""
    return {"name": "scenes", "colors": [[n, "#{:02x}{:02x}{:02x}".format(*rgb)] for n, rgb in COLOURS.items()]}


def scene_summary(size: int = 24) -> dict:
    """What the dataset card states about the drawing (colours, shapes, sides in px, grid) for ``size``."""
    return {"colours": {n: "#{:02x}{:02x}{:02x}".format(*rgb) for n, rgb in COLOURS.items()},
            "object_colours": list(OBJECT_COLOURS), "backgrounds": list(BACKGROUNDS), "shapes": list(SHAPES),
            "positions": list(POSITIONS), "sides": {s: object_side(s, size) for s in SIZES}, "jitter": JITTER,
            "min_visible": MIN_VISIBLE,
            "short_templates": [t.format(a="a", colour="red", shape="circle", background="white") for t in SHORT_TEMPLATES]}


# -- builder -------------------------------------------------------------------------------------------------------
@dataclass
class ScenesConfig(datasets.BuilderConfig):
    """Every option of the builder (all part of the cache key); see :func:`load_scenes` for their meaning."""

    n_train: int = 2000
    n_val: int = 200
    n_test: int = 200
    size: int = 24
    min_shapes: int = 1
    max_shapes: int = 4
    seed: int = 0
    val_share: float = 0.1
    test_share: float = 0.1
    num_shards: int = 48
    source_fingerprint: str = ""


_OPTIONS_TAG = "pixeltok-options: "  # the line _common.read_options reads back (for the dataset card)
_NOT_OPTIONS = ("name", "version", "data_dir", "data_files", "description", "source_fingerprint")


def _describe(c) -> str:
    opts = {f.name: getattr(c, f.name) for f in dataclasses.fields(c) if f.name not in _NOT_OPTIONS}
    opts["resolved"] = scene_summary(c.size) if _is_int(c.size) and SIZE_RANGE[0] <= c.size <= SIZE_RANGE[1] else {}
    return f"{c.description or ''}\n{_OPTIONS_TAG}{json.dumps(opts, default=str, sort_keys=True)}"


FEATURES = datasets.Features({
    "image": datasets.Image(), "caption": datasets.Value("string"), "short_caption": datasets.Value("string"),
    "num_shapes": datasets.Value("int32"), "background": datasets.Value("string"),
    "shapes": datasets.List({"shape": datasets.Value("string"), "colour": datasets.Value("string"),
                             "size": datasets.Value("string"), "position": datasets.Value("string"),
                             "x": datasets.Value("int32"), "y": datasets.Value("int32"),
                             "side": datasets.Value("int32")}),
    "index": datasets.Value("int64"),
})


class Scenes(datasets.GeneratorBasedBuilder):
    """Shapes on a plain background -> ``image``, complete ``caption``, ``short_caption``, ``num_shapes``,
    ``background``, ``shapes``, ``index`` (see the module docstring)."""

    VERSION = datasets.Version("1.0.0")  # bump when the drawing changes
    BUILDER_CONFIG_CLASS = ScenesConfig
    BUILDER_CONFIGS = [ScenesConfig(name="default", version=VERSION,
                                    description="Procedurally drawn scenes of coloured shapes with complete grammar "
                                                "captions (pixeltok).")]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=_describe(self.config), features=FEATURES)

    def _split_generators(self, dl_manager):
        c = self.config
        check_options(c)
        gens = []
        for code, n in enumerate((c.n_train, c.n_val, c.n_test)):
            if not n:
                continue
            chunks = [(k * n // c.num_shards, (k + 1) * n // c.num_shards) for k in range(c.num_shards)]
            gens.append(datasets.SplitGenerator(name=SPLITS[code], gen_kwargs={"chunks": chunks, "split_code": code}))
        return gens

    def _generate_examples(self, chunks, split_code) -> Iterator[tuple[str, dict]]:
        c = self.config
        for start, stop in chunks:
            for i in range(start, stop):
                s = sample_scene(i, c.size, c.seed, split_code, min_shapes=c.min_shapes, max_shapes=c.max_shapes,
                                 val_share=c.val_share, test_share=c.test_share)
                yield f"{SPLITS[split_code]}-{i}", {
                    "image": Image.fromarray(s["image"], "RGB"), "caption": s["caption"],
                    "short_caption": s["short_caption"], "num_shapes": s["num_shapes"],
                    "background": s["background"], "shapes": s["shapes"], "index": i}


def _fingerprint() -> str:
    """What changes the pixels outside the config: this module's code and numpy (its Generator streams)."""
    from importlib.metadata import version

    h = hashlib.sha1(Path(__file__).read_bytes())
    h.update(version("numpy").encode())
    return h.hexdigest()[:16]


def load_scenes(n_train: int = 2000, n_val: int = 200, n_test: int = 200, *, size: int = 24, min_shapes: int = 1,
                max_shapes: int = 4, seed: int = 0, streaming: bool = False, cache_dir=None,
                num_proc: int | None = None, download_mode=None, **options):
    """Procedurally drawn scenes of 1-4 coloured shapes with complete captions, with content-disjoint splits.

    Args:
        n_train, n_val, n_test: rows per split (a split of 0 rows is left out).
        size: image side in px, 16..64 (default 24: small objects 7 px, large 12 px).
        min_shapes, max_shapes: objects per scene, drawn uniformly in ``min_shapes..max_shapes`` (1..9).
        seed: seed of every random choice (the rows and the content families of the splits).
        streaming: ``IterableDataset`` splits drawn on the fly: the same rows as the Arrow build, in
            ``num_shards=48`` index ranges (so ``datasets.distributed.split_dataset_by_node`` gives ranks whole shards).
        cache_dir, num_proc, download_mode: as for :func:`pixeltok.data.load_pokemon`.
        **options: ``val_share=0.1``, ``test_share=0.1`` (share of scene contents reserved for validation / test),
            ``num_shards=48``.

    Returns:
        ``DatasetDict`` with ``train`` / ``validation`` / ``test`` and columns ``image`` (RGB, ``size`` x ``size``),
        ``caption`` (complete), ``short_caption`` (one object), ``num_shapes``, ``background``, ``shapes`` (list of
        ``{shape, colour, size, position, x, y, side}`` in paint order; ``x``, ``y``: the box's top-left corner in
        px) and ``index``.
    """
    fields = {f.name for f in dataclasses.fields(ScenesConfig)} - set(_NOT_OPTIONS)
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"load_scenes: unknown option(s) {unknown}; expected some of {sorted(fields)}")
    kw = dict(n_train=n_train, n_val=n_val, n_test=n_test, size=size, min_shapes=min_shapes, max_shapes=max_shapes,
              seed=seed, **options)
    check_options(ScenesConfig(name="default", **kw))
    return run_builder(Scenes, "default", cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
                       download_mode=download_mode, source_fingerprint=_fingerprint(), **kw)


def render_scenes_card(dataset=None, *, license: str = "cc0-1.0", source: str | None = None, **facts):
    """The dataset card (``hub_cards/dataset_scenes.md``) of a :func:`load_scenes` ``DatasetDict``.

    ``render_dataset_card("scenes", ...)`` with this dataset's defaults: ``license="cc0-1.0"`` (generated images,
    no source material) and ``source`` naming the generator; the drawing facts (colours, shapes, sides) are filled
    in for the dataset's ``size``. Without ``dataset`` give ``splits={split: rows}`` and ``options={...}``.
    """
    from . import render_dataset_card
    from ._common import read_options

    if source is None:
        source = "procedurally generated by pixeltok.data.load_scenes (no source data; pixeltok.data.scenes)"
    opts = dict(facts.pop("options", None) or {})
    recorded = read_options(next(iter(dataset.values())).info) if dataset is not None else {}
    if not (recorded.get("resolved") or opts.get("resolved")):
        opts["resolved"] = scene_summary(int(opts.get("size", recorded.get("size", ScenesConfig.size))))
    return render_dataset_card("scenes", dataset=dataset, license=license, source=source, options=opts, **facts)
