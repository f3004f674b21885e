"""Fixed and learned colour palettes, and fast nearest-colour quantization.

A palette is an ordered list of named RGB colours. Index ``len(palette)`` is reserved for
``transparent`` (pixels whose alpha is below 128), so a quantized image is an ``(H, W)`` array of
palette indices in ``[0, len(palette)]``.

Nearest colour is measured in CIELAB (D65), a perceptual space, and is exact. To avoid per-pixel work,
each palette memoizes a lookup table over all 2**24 RGB values (int16, 32 MiB of lazily mapped zero pages, so only
the pages of colours actually seen take memory):
an image's not-yet-seen colours are found with ``np.unique``, their nearest palette colours computed in one
vectorized distance matrix and stored, then the whole image is one table gather. A palette colour is its
own nearest colour, so quantizing a quantized image is the identity.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np

TRANSPARENT = "transparent"
ALPHA_THRESHOLD = 128

# 128 CSS/X11 colour names (Pillow's ImageColor table, "grey" spellings and duplicate RGBs removed,
# then the perceptually closest pairs thinned to 128 keeping the basic colour words).
NAMED128: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("aliceblue", (240, 248, 255)),
    ("antiquewhite", (250, 235, 215)),
    ("aquamarine", (127, 255, 212)),
    ("azure", (240, 255, 255)),
    ("beige", (245, 245, 220)),
    ("bisque", (255, 228, 196)),
    ("black", (0, 0, 0)),
    ("blue", (0, 0, 255)),
    ("blueviolet", (138, 43, 226)),
    ("brown", (165, 42, 42)),
    ("burlywood", (222, 184, 135)),
    ("cadetblue", (95, 158, 160)),
    ("chocolate", (210, 105, 30)),
    ("coral", (255, 127, 80)),
    ("cornflowerblue", (100, 149, 237)),
    ("cornsilk", (255, 248, 220)),
    ("crimson", (220, 20, 60)),
    ("cyan", (0, 255, 255)),
    ("darkblue", (0, 0, 139)),
    ("darkcyan", (0, 139, 139)),
    ("darkgoldenrod", (184, 134, 11)),
    ("darkgray", (169, 169, 169)),
    ("darkgreen", (0, 100, 0)),
    ("darkkhaki", (189, 183, 107)),
    ("darkmagenta", (139, 0, 139)),
    ("darkolivegreen", (85, 107, 47)),
    ("darkorange", (255, 140, 0)),
    ("darkorchid", (153, 50, 204)),
    ("darkred", (139, 0, 0)),
    ("darksalmon", (233, 150, 122)),
    ("darkseagreen", (143, 188, 143)),
    ("darkslateblue", (72, 61, 139)),
    ("darkslategray", (47, 79, 79)),
    ("darkturquoise", (0, 206, 209)),
    ("darkviolet", (148, 0, 211)),
    ("deeppink", (255, 20, 147)),
    ("deepskyblue", (0, 191, 255)),
    ("dimgray", (105, 105, 105)),
    ("dodgerblue", (30, 144, 255)),
    ("firebrick", (178, 34, 34)),
    ("floralwhite", (255, 250, 240)),
    ("forestgreen", (34, 139, 34)),
    ("gainsboro", (220, 220, 220)),
    ("gold", (255, 215, 0)),
    ("goldenrod", (218, 165, 32)),
    ("gray", (128, 128, 128)),
    ("green", (0, 128, 0)),
    ("greenyellow", (173, 255, 47)),
    ("honeydew", (240, 255, 240)),
    ("hotpink", (255, 105, 180)),
    ("indianred", (205, 92, 92)),
    ("indigo", (75, 0, 130)),
    ("ivory", (255, 255, 240)),
    ("khaki", (240, 230, 140)),
    ("lavender", (230, 230, 250)),
    ("lavenderblush", (255, 240, 245)),
    ("lawngreen", (124, 252, 0)),
    ("lemonchiffon", (255, 250, 205)),
    ("lightblue", (173, 216, 230)),
    ("lightcoral", (240, 128, 128)),
    ("lightcyan", (224, 255, 255)),
    ("lightgreen", (144, 238, 144)),
    ("lightpink", (255, 182, 193)),
    ("lightsalmon", (255, 160, 122)),
    ("lightseagreen", (32, 178, 170)),
    ("lightskyblue", (135, 206, 250)),
    ("lightsteelblue", (176, 196, 222)),
    ("lightyellow", (255, 255, 224)),
    ("lime", (0, 255, 0)),
    ("limegreen", (50, 205, 50)),
    ("linen", (250, 240, 230)),
    ("magenta", (255, 0, 255)),
    ("maroon", (128, 0, 0)),
    ("mediumaquamarine", (102, 205, 170)),
    ("mediumblue", (0, 0, 205)),
    ("mediumorchid", (186, 85, 211)),
    ("mediumpurple", (147, 112, 219)),
    ("mediumseagreen", (60, 179, 113)),
    ("mediumslateblue", (123, 104, 238)),
    ("mediumspringgreen", (0, 250, 154)),
    ("mediumturquoise", (72, 209, 204)),
    ("mediumvioletred", (199, 21, 133)),
    ("midnightblue", (25, 25, 112)),
    ("mistyrose", (255, 228, 225)),
    ("moccasin", (255, 228, 181)),
    ("navy", (0, 0, 128)),
    ("olive", (128, 128, 0)),
    ("olivedrab", (107, 142, 35)),
    ("orange", (255, 165, 0)),
    ("orangered", (255, 69, 0)),
    ("orchid", (218, 112, 214)),
    ("palegoldenrod", (238, 232, 170)),
    ("palegreen", (152, 251, 152)),
    ("paleturquoise", (175, 238, 238)),
    ("palevioletred", (219, 112, 147)),
    ("papayawhip", (255, 239, 213)),
    ("peachpuff", (255, 218, 185)),
    ("peru", (205, 133, 63)),
    ("pink", (255, 192, 203)),
    ("plum", (221, 160, 221)),
    ("powderblue", (176, 224, 230)),
    ("purple", (128, 0, 128)),
    ("rebeccapurple", (102, 51, 153)),
    ("red", (255, 0, 0)),
    ("rosybrown", (188, 143, 143)),
    ("royalblue", (65, 105, 225)),
    ("saddlebrown", (139, 69, 19)),
    ("salmon", (250, 128, 114)),
    ("sandybrown", (244, 164, 96)),
    ("seagreen", (46, 139, 87)),
    ("sienna", (160, 82, 45)),
    ("silver", (192, 192, 192)),
    ("skyblue", (135, 206, 235)),
    ("slateblue", (106, 90, 205)),
    ("slategray", (112, 128, 144)),
    ("springgreen", (0, 255, 127)),
    ("steelblue", (70, 130, 180)),
    ("tan", (210, 180, 140)),
    ("teal", (0, 128, 128)),
    ("thistle", (216, 191, 216)),
    ("tomato", (255, 99, 71)),
    ("turquoise", (64, 224, 208)),
    ("violet", (238, 130, 238)),
    ("wheat", (245, 222, 179)),
    ("white", (255, 255, 255)),
    ("whitesmoke", (245, 245, 245)),
    ("yellow", (255, 255, 0)),
    ("yellowgreen", (154, 205, 50)),
)

# The 2C02 NES palette as used by PixelBytes: the 64 hardware entries with duplicates of black
# removed leave 55 distinct colours, named by their NES hex index.
_NES64 = (
    "7C7C7C 0000FC 0000BC 4428BC 940084 A80020 A81000 881400 503000 007800 006800 005800 004058 000000 000000 000000 "
    "BCBCBC 0078F8 0058F8 6844FC D800CC E40058 F83800 E45C10 AC7C00 00B800 00A800 00A844 008888 000000 000000 000000 "
    "F8F8F8 3CBCFC 6888FC 9878F8 F878F8 F85898 F87858 FCA044 F8B800 B8F818 58D854 58F898 00E8D8 787878 000000 000000 "
    "FCFCFC A4E4FC B8B8F8 D8B8F8 F8B8F8 F8A4C0 F0D0B0 FCE0A8 F8D878 D8F878 B8F8B8 B8F8D8 00FCFC F8D8F8 000000 000000"
).split()


def _nes55() -> tuple[tuple[str, tuple[int, int, int]], ...]:
    out, seen = [], set()
    for i, h in enumerate(_NES64):
        rgb = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
        if rgb not in seen:
            seen.add(rgb)
            out.append((f"nes{i:02x}", rgb))
    return tuple(out)


NES55 = _nes55()
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 ``(..., 3)`` -> CIELAB float64 ``(..., 3)`` (D65 white)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _nearest(lab_points: np.ndarray, lab_palette: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(lab_points), dtype=np.int64)
    p2 = (lab_palette ** 2).sum(1)
    for s in range(0, len(lab_points), chunk):
        x = lab_points[s:s + chunk]
        d = p2[None, :] - 2.0 * x @ lab_palette.T  # |x|^2 is constant per row
        out[s:s + chunk] = d.argmin(1)
    return out


@dataclass(frozen=True, eq=False)
class Palette:
    """An ordered set of named colours plus the implicit ``transparent`` entry at index ``len(self)``."""

    name: str
    names: tuple[str, ...]
    colors: np.ndarray = field(repr=False)  # (N, 3) uint8

    def __post_init__(self):
        colors = np.asarray(self.colors, dtype=np.uint8).reshape(-1, 3)
        object.__setattr__(self, "colors", colors)
        if len(self.names) != len(colors):
            raise ValueError(f"palette {self.name!r}: {len(self.names)} names for {len(colors)} colours")
        if not 1 <= len(colors) <= 4096:
            raise ValueError(f"palette {self.name!r}: needs 1..4096 colours, got {len(colors)}")
        bad = [n for n in self.names if not _NAME_RE.match(n) or n == TRANSPARENT]
        if bad:
            raise ValueError(f"palette {self.name!r}: invalid colour names {bad[:5]} (lower-case a-z0-9, not 'transparent')")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"palette {self.name!r}: duplicate colour names")
        packed = self._pack(colors)
        if len(np.unique(packed)) != len(packed):
            raise ValueError(f"palette {self.name!r}: duplicate RGB colours")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def transparent_index(self) -> int:
        return len(self.names)

    @property
    def all_names(self) -> tuple[str, ...]:
        """Colour names including ``transparent`` (index-aligned with quantized indices)."""
        return self.names + (TRANSPARENT,)

    @property
    def rgba(self) -> np.ndarray:
        """``(N + 1, 4)`` uint8 table: palette colours opaque, last row fully transparent black."""
        t = np.zeros((len(self) + 1, 4), dtype=np.uint8)
        t[:-1, :3] = self.colors
        t[:-1, 3] = 255
        return t

    @staticmethod
    def _pack(rgb: np.ndarray) -> np.ndarray:
        rgb = rgb.astype(np.uint32)
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]

    @cached_property
    def _lut(self) -> np.ndarray:
        # One entry per 24-bit RGB value: 1 + the exact nearest colour, 0 until first seen. Zeros, not a -1 fill:
        # np.zeros gets lazily mapped zero pages, so only pages of colours actually seen cost memory or time (a
        # fill writes all 32 MiB, ~8 ms per fresh palette, which dominated tokenizing one small image).
        return np.zeros(1 << 24, dtype=np.int16)

    @cached_property
    def _lab(self) -> np.ndarray:
        return rgb_to_lab(self.colors)

    def quantize_indices(self, rgba: np.ndarray) -> np.ndarray:
        """``(H, W, 4)`` uint8 RGBA -> ``(H, W)`` int16 palette indices (``len(self)`` = transparent)."""
        rgba = np.asarray(rgba)
        if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ValueError(f"quantize_indices expects (H, W, 4) uint8 RGBA, got {rgba.shape} {rgba.dtype}")
        packed = self._pack(rgba[..., :3])
        lut = self._lut
        idx = lut[packed]
        miss = idx == 0
        if miss.any():
            new = np.unique(packed[miss])
            rgb = np.stack([(new >> 16) & 255, (new >> 8) & 255, new & 255], -1)
            lut[new] = _nearest(rgb_to_lab(rgb), self._lab) + 1
            idx = lut[packed]
        idx -= 1
        idx[rgba[..., 3] < ALPHA_THRESHOLD] = self.transparent_index
        return idx

    def indices_to_rgba(self, idx: np.ndarray) -> np.ndarray:
        """``(H, W)`` palette indices -> ``(H, W, 4)`` uint8 RGBA."""
        idx = np.asarray(idx)
        if idx.size and (idx.min() < 0 or idx.max() > len(self)):
            raise ValueError(f"palette index out of range [0, {len(self)}] for palette {self.name!r}")
        return self.rgba[idx]

    def index_of(self, name: str) -> int:
        try:
            return self.all_names.index(name)
        except ValueError:
            raise KeyError(f"unknown colour {name!r} in palette {self.name!r}") from None

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """``{"name", "colors": [[name, "#rrggbb"], ...]}``: a list, because the order *is* the token ids and JSON
        writers sort object keys (transformers saves configs with ``sort_keys=True``: ``k0, k1, k10, k2...``)."""
        return {"name": self.name, "colors": [[n, f"#{v:06x}"] for n, v in zip(self.names, self._pack(self.colors).tolist())]}

    @classmethod
    def from_dict(cls, d: dict) -> "Palette":
        """Inverse of :meth:`to_dict`; also reads the older ``{"colors": {name: "#rrggbb"}}`` mapping (in its order)."""
        try:
            items = d["colors"].items() if isinstance(d["colors"], dict) else d["colors"]
            names, hexes = zip(*[(str(n), str(h)) for n, h in items]) if len(items) else ((), ())
            if any(len(h) != 7 or h[0] != "#" for h in hexes):
                raise ValueError(f"colours must be '#rrggbb', got {[h for h in hexes if len(h) != 7 or h[0] != '#'][:3]}")
            cols = np.array([[int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)] for h in hexes], dtype=np.uint8)
            return cls(str(d["name"]), tuple(names), cols)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise ValueError(f"malformed palette description: {e}") from e

    def reordered(self, names: Sequence[str]) -> "Palette":
        """The same colours with ``names`` in a new order (a permutation of :attr:`names`)."""
        pos = {n: i for i, n in enumerate(self.names)}
        order = [pos[n] for n in names]
        return Palette(self.name, tuple(names), self.colors[order])

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path) -> "Palette":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    @classmethod
    def from_list(cls, name: str, entries: Iterable[tuple[str, Sequence[int]]]) -> "Palette":
        entries = list(entries)
        return cls(name, tuple(n for n, _ in entries), np.array([c for _, c in entries], dtype=np.uint8))


BUILTIN_PALETTES = {"named128": NAMED128, "nes55": NES55}
_CACHE: dict[str, Palette] = {}


def get_palette(name: str) -> Palette:
    """A built-in palette by name (``named128`` or ``nes55``); cached so its lookup table is built once."""
    if name not in BUILTIN_PALETTES:
        raise KeyError(f"unknown palette {name!r}; built-in palettes: {sorted(BUILTIN_PALETTES)} (or a learned Palette)")
    if name not in _CACHE:
        _CACHE[name] = Palette.from_list(name, BUILTIN_PALETTES[name])
    return _CACHE[name]


def list_palettes() -> dict[str, int]:
    return {k: len(v) for k, v in BUILTIN_PALETTES.items()}


def train_palette(pixels: np.ndarray, n_colors: int, method: str = "kmeans", seed: int = 0, max_iter: int = 25,
                  name: str = "learned") -> Palette:
    """Fit a palette of ``n_colors`` to ``(P, 3)`` uint8 opaque pixels by k-means (in CIELAB) or median cut."""
    pixels = np.asarray(pixels, dtype=np.uint8).reshape(-1, 3)
    uniq = np.unique(pixels, axis=0)
    if len(uniq) == 0:
        raise ValueError("train_palette: no opaque pixels to fit")
    n_colors = int(n_colors)
    if n_colors < 1:
        raise ValueError(f"train_palette: n_colors must be >= 1, got {n_colors}")
    if len(uniq) <= n_colors:
        centres = uniq
    elif method == "mediancut":
        boxes = [pixels]
        while len(boxes) < n_colors:
            i = max(range(len(boxes)), key=lambda k: np.ptp(boxes[k], 0).max() if len(boxes[k]) > 1 else -1)
            b = boxes[i]
            if len(b) < 2 or np.ptp(b, 0).max() == 0:
                break
            ch = int(np.ptp(b, 0).argmax())
            b = b[np.argsort(b[:, ch], kind="stable")]
            boxes[i:i + 1] = [b[: len(b) // 2], b[len(b) // 2:]]
        centres = np.array([np.round(b.mean(0)) for b in boxes], dtype=np.uint8)
    elif method == "kmeans":
        rng = np.random.default_rng(seed)
        sample = pixels if len(pixels) <= 200_000 else pixels[rng.choice(len(pixels), 200_000, replace=False)]
        lab = rgb_to_lab(sample)
        cent = lab[rng.choice(len(lab), n_colors, replace=False)]
        for _ in range(max_iter):
            a = _nearest(lab, cent)
            sums = np.zeros_like(cent)
            np.add.at(sums, a, lab)
            cnt = np.bincount(a, minlength=n_colors)[:, None]
            new = np.where(cnt > 0, sums / np.maximum(cnt, 1), cent)
            if np.allclose(new, cent):
                break
            cent = new
        a = _nearest(lab, cent)
        centres = np.array([np.round(sample[a == k].mean(0)) if (a == k).any() else sample[k] for k in range(n_colors)], dtype=np.uint8)
    else:
        raise ValueError(f"train_palette: unknown method {method!r} (kmeans | mediancut)")
    centres = np.unique(centres, axis=0)
    return Palette(name, tuple(f"k{i}" for i in range(len(centres))), centres)
