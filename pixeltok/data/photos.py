"""Real photographs, whole or cut into crops, as a ``datasets`` builder: the codec's training and held-out data.

A photo is named by a reference string:

- ``wallpaper:NAME`` -- the largest image of wallpaper ``NAME`` in ``wallpaper_dir`` (a ``usr/share/wallpapers``
  folder extracted from Debian's ``plasma-workspace-wallpapers``: ``apt-get download plasma-workspace-wallpapers &&
  dpkg -x plasma-workspace-wallpapers_*.deb DIR``; nothing is installed),
- ``background:REL`` -- ``REL`` under ``backgrounds_dir`` (``usr/share/backgrounds`` of Debian's
  ``lomiri-wallpapers-16.04``, ``lomiri-wallpapers-20.04``, ``mate-backgrounds``),
- ``skimage:NAME`` -- the photo ``skimage.data.NAME()`` bundled with scikit-image,
- anything else -- the path of an image file.

Splits: ``train`` (``train_photos``) and ``test`` (``test_photos``, the held-out photos; a photo may not be in both).
Each photo is box-downscaled by every factor in ``scales`` (``pixeltok.data._common.box_downscale``).

Configs
-------
``whole``
    One row per photo and scale: the whole downscaled photo.
``crops``
    One row per full ``crop_size`` crop (``pixeltok.tiling.cut_tiles``, no overlap, partial edge crops dropped), at
    most ``max_crops_per_photo`` per photo and scale, drawn by one seeded ``numpy`` generator per split (``seed``
    for train, ``seed + 1`` for test) over the photos in sorted reference order, scale by scale.

Columns: ``image`` (``datasets.Image``, RGB, stored as PNG: lossless), ``photo`` (the reference), ``scale``, ``y``,
``x`` (top-left corner in the downscaled photo; 0 for whole photos).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Iterator

import datasets
import numpy as np
from PIL import Image

from ..tiling import cut_tiles
from ._common import DataSourceError, box_downscale, describe_config, fingerprint_paths, run_builder

__all__ = ["PhotosConfig", "Photos", "load_photos", "read_photo", "photo_path"]

_KINDS = ("wallpaper", "background", "skimage")


@dataclass
class PhotosConfig(datasets.BuilderConfig):
    """Every option of the builder (all part of the cache key).

    Args:
        train_photos, test_photos: photo references (see the module docstring).
        wallpaper_dir, backgrounds_dir: folders that ``wallpaper:`` / ``background:`` references resolve in.
        scales: box-downscale factors, each applied to every photo (1 = native).
        crop_size: side of the square crops (config ``crops``).
        max_crops_per_photo: keep at most this many crops per photo and scale (seeded sample); None = all.
        seed: seed of the crop sampling.
        source_fingerprint: sizes / mtimes of the photo files (set by :func:`load_photos`).
    """

    train_photos: list = field(default_factory=list)
    test_photos: list = field(default_factory=list)
    wallpaper_dir: str | None = None
    backgrounds_dir: str | None = None
    scales: list = field(default_factory=lambda: [1])
    crop_size: int = 32
    max_crops_per_photo: int | None = None
    seed: int = 0
    source_fingerprint: str = ""


def photo_path(ref: str, wallpaper_dir: str | None = None, backgrounds_dir: str | None = None) -> str:
    """The image file behind a ``wallpaper:`` / ``background:`` reference or a path (``skimage:`` has none: it
    returns the reference). Raises :class:`DataSourceError` saying how to get a missing photo."""
    kind, _, name = ref.partition(":")
    if kind == "skimage":
        import skimage.data

        # only the bundled images: not download_all, lbp_frontal_face_cascade_filename, ...
        if name not in getattr(skimage.data, "__all__", ()) or name.startswith("download") or \
                name.endswith(("_filename", "_dir")) or not callable(getattr(skimage.data, name, None)):
            raise DataSourceError(f"{ref!r}: not a scikit-image photo (skimage.data.{name})")
        return ref
    if kind == "wallpaper":
        if not wallpaper_dir:
            raise DataSourceError(f"{ref!r} needs wallpaper_dir (--wallpaper_dir): the usr/share/wallpapers folder of "
                                  "`apt-get download plasma-workspace-wallpapers && dpkg -x *.deb DIR`")
        if not name or "/" in name or name in (".", ".."):
            raise DataSourceError(f"{ref!r}: a wallpaper name is one folder name")
        files = [f for f in glob.glob(os.path.join(glob.escape(wallpaper_dir), name, "contents", "images", "*"))
                 if not os.path.islink(f)]
        if not files:
            raise DataSourceError(
                f"wallpaper {name!r} not found under {wallpaper_dir!r}; get it with `apt-get download "
                "plasma-workspace-wallpapers && dpkg -x plasma-workspace-wallpapers_*.deb DIR` and pass "
                "DIR/usr/share/wallpapers")
        return max(files, key=os.path.getsize)
    if kind == "background":
        if not backgrounds_dir:
            raise DataSourceError(f"{ref!r} needs backgrounds_dir (--backgrounds_dir): the usr/share/backgrounds "
                                  "folder of the extracted lomiri/mate wallpaper packages")
        root = os.path.realpath(backgrounds_dir)
        path = os.path.realpath(os.path.join(root, name))
        if not name or os.path.commonpath([root, path]) != root:
            raise DataSourceError(f"{ref!r}: the path leaves backgrounds_dir {backgrounds_dir!r}")
        if not os.path.isfile(path):
            raise DataSourceError(
                f"background photo {name!r} not found under {backgrounds_dir!r}; get it with `apt-get download "
                "lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds && for d in *.deb; do dpkg -x $d "
                "DIR; done` and pass DIR/usr/share/backgrounds")
        return path
    if not os.path.isfile(ref):
        raise DataSourceError(f"{ref!r}: no such image file (nor a wallpaper:/background:/skimage: reference)")
    return ref


def read_photo(ref: str, wallpaper_dir: str | None = None, backgrounds_dir: str | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of one photo reference."""
    path = photo_path(ref, wallpaper_dir, backgrounds_dir)
    if ref.startswith("skimage:"):
        import skimage.data

        try:  # some of skimage.data's images are fetched on first use
            rgb = np.asarray(getattr(skimage.data, ref.partition(":")[2])())
        except Exception as e:
            raise DataSourceError(f"{ref!r}: scikit-image could not give it ({type(e).__name__}: {e})") from None
        if rgb.dtype != np.uint8 or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] in (3, 4))):
            raise DataSourceError(f"{ref!r}: not an 8-bit RGB or grey photo (array {rgb.shape} {rgb.dtype})")
        return np.ascontiguousarray(np.stack([rgb] * 3, -1) if rgb.ndim == 2 else rgb[..., :3])
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as e:
        raise DataSourceError(f"{path}: not a readable image ({e})") from None


class Photos(datasets.GeneratorBasedBuilder):
    """Photos -> ``image`` + ``photo`` / ``scale`` / ``y`` / ``x``, whole (``whole``) or as crops (``crops``)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = PhotosConfig
    BUILDER_CONFIGS = [PhotosConfig(name="whole", version=VERSION, description="Whole photos at each scale."),
                       PhotosConfig(name="crops", version=VERSION, description="Square crops of photos at each scale.")]
    DEFAULT_CONFIG_NAME = "whole"

    def _info(self) -> datasets.DatasetInfo:
        features = datasets.Features({"image": datasets.Image(), "photo": datasets.Value("string"),
                                      "scale": datasets.Value("int32"), "y": datasets.Value("int32"),
                                      "x": datasets.Value("int32")})
        return datasets.DatasetInfo(description=describe_config(self.config), features=features)

    def _split_generators(self, dl_manager):
        c = self.config
        check_photos_config(c)
        gens = []
        for split, refs, seed in ((datasets.Split.TRAIN, c.train_photos, c.seed),
                                  (datasets.Split.TEST, c.test_photos, c.seed + 1)):
            if refs:
                gens.append(datasets.SplitGenerator(name=split, gen_kwargs={"refs": sorted(refs), "seed": seed}))
        return gens

    def _generate_examples(self, refs, seed) -> Iterator[tuple[str, dict]]:
        c = self.config
        rng = np.random.default_rng(seed)
        for ref in refs:
            photo = read_photo(ref, c.wallpaper_dir, c.backgrounds_dir)
            for s in c.scales:
                if min(photo.shape[:2]) < s:
                    raise DataSourceError(f"{ref}: {photo.shape[1]}x{photo.shape[0]} is smaller than scale {s}")
                img = box_downscale(photo, int(s))
                if c.name == "whole":
                    yield f"{ref}/{s}", {"image": Image.fromarray(img), "photo": ref, "scale": s, "y": 0, "x": 0}
                    continue
                crops, pos = cut_tiles(img, size=int(c.crop_size), border="drop")
                if not crops:
                    continue
                keep = rng.permutation(len(crops))
                if c.max_crops_per_photo is not None:
                    keep = keep[: c.max_crops_per_photo]
                for k in keep:
                    y, x = pos[k]
                    yield f"{ref}/{s}@{y},{x}", {"image": Image.fromarray(np.ascontiguousarray(crops[k])),
                                                "photo": ref, "scale": s, "y": int(y), "x": int(x)}


def check_photos_config(c: PhotosConfig) -> None:
    """Every option checked and every photo resolved (cheap: no image is decoded). Raises ``ValueError``."""
    for name in ("train_photos", "test_photos"):
        refs = getattr(c, name)
        if not isinstance(refs, (list, tuple)) or not all(isinstance(r, str) and r for r in refs):
            raise ValueError(f"{name} must be a list of photo references, got {refs!r}")
        if len(set(refs)) != len(refs):
            raise ValueError(f"{name} lists a photo twice: {sorted(r for r in refs if list(refs).count(r) > 1)[0]!r}")
    both = sorted(set(c.train_photos) & set(c.test_photos))
    if both:
        raise ValueError(f"{both[0]!r} is in both train_photos and test_photos: held-out photos must stay unseen")
    if not c.train_photos and not c.test_photos:
        raise ValueError("no photos: give train_photos and/or test_photos")
    if not isinstance(c.scales, (list, tuple)) or not c.scales or \
            not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in c.scales):
        raise ValueError(f"scales must be a non-empty list of positive ints, got {c.scales!r}")
    if isinstance(c.crop_size, bool) or not isinstance(c.crop_size, int) or c.crop_size < 1:
        raise ValueError(f"crop_size must be a positive int, got {c.crop_size!r}")
    m = c.max_crops_per_photo
    if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
        raise ValueError(f"max_crops_per_photo must be a positive int or None, got {m!r}")
    for ref in list(c.train_photos) + list(c.test_photos):
        photo_path(ref, c.wallpaper_dir, c.backgrounds_dir)


def load_photos(train_photos=(), test_photos=(), *, config: str = "whole", wallpaper_dir=None, backgrounds_dir=None,
                cache_dir=None, streaming: bool = False, **options):
    """Photos as a ``DatasetDict`` with splits ``train`` / ``test`` (whichever are given).

    Args:
        train_photos, test_photos: photo references (``wallpaper:NAME``, ``background:REL``, ``skimage:NAME`` or a
            path); the test photos are the held-out ones.
        config: ``whole`` (one row per photo and scale) or ``crops``.
        wallpaper_dir, backgrounds_dir: where ``wallpaper:`` / ``background:`` references are found.
        cache_dir, streaming: as in :func:`pixeltok.data.load_pokemon`.
        **options: ``scales`` (default ``[1]``), ``crop_size`` (32), ``max_crops_per_photo`` (None), ``seed`` (0).

    Raises ``ValueError`` (:class:`DataSourceError` for a missing photo, saying how to get it) before anything is
    built.
    """
    if config not in ("whole", "crops"):
        raise ValueError(f"unknown photos config {config!r}; choose 'whole' or 'crops'")
    kw = dict(train_photos=list(train_photos), test_photos=list(test_photos),
              wallpaper_dir=None if wallpaper_dir is None else str(wallpaper_dir),
              backgrounds_dir=None if backgrounds_dir is None else str(backgrounds_dir), **options)
    unknown = sorted(set(options) - {"scales", "crop_size", "max_crops_per_photo", "seed"})
    if unknown:
        raise TypeError(f"load_photos: unknown options {unknown} (known: scales, crop_size, max_crops_per_photo, seed)")
    check_photos_config(PhotosConfig(name=config, **kw))
    paths = [photo_path(r, kw["wallpaper_dir"], kw["backgrounds_dir"]) for r in kw["train_photos"] + kw["test_photos"]]
    return run_builder(Photos, config, cache_dir=cache_dir, streaming=streaming,
                       source_fingerprint=fingerprint_paths(paths), **kw)
