"""Cutting images into fixed-size tiles and putting them back (shared by the CIFAR-tiles builder and the codec)."""

from __future__ import annotations

import numpy as np


def tile_grid(height: int, width: int, size: int = 32) -> tuple[int, int]:
    """Rows and columns of ``size`` tiles covering an image (edge tiles may be partial)."""
    return -(-height // size), -(-width // size)


def cut_tiles(img: np.ndarray, size: int = 32, stride: int | None = None, border: str = "keep") -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Cut ``(H, W, C)`` into tiles; returns the tiles and their ``(y, x)`` top-left positions.

    ``border``: ``keep`` (edge tiles are smaller: exact cover, used by the codec), ``drop`` (only full tiles),
    or ``pad`` (edge tiles padded by edge replication to ``size``).
    """
    stride = stride or size
    if border not in ("keep", "drop", "pad"):
        raise ValueError(f"border must be keep, drop or pad, got {border!r}")
    h, w = img.shape[:2]
    if border == "drop":
        ys, xs = range(0, h - size + 1, stride), range(0, w - size + 1, stride)
    else:
        ys, xs = range(0, h, stride), range(0, w, stride)
    tiles, pos = [], []
    for y in ys:
        for x in xs:
            t = img[y:y + size, x:x + size]
            if border == "pad" and t.shape[:2] != (size, size):
                pad = [(0, size - t.shape[0]), (0, size - t.shape[1])] + [(0, 0)] * (img.ndim - 2)
                t = np.pad(t, pad, mode="edge")
            tiles.append(t)
            pos.append((y, x))
    return tiles, pos


def join_tiles(tiles: list[np.ndarray], height: int, width: int, size: int = 32) -> np.ndarray:
    """Inverse of ``cut_tiles(..., border="keep")`` with stride == size."""
    rows, cols = tile_grid(height, width, size)
    if len(tiles) != rows * cols:
        raise ValueError(f"expected {rows * cols} tiles for {width}x{height} at size {size}, got {len(tiles)}")
    out = np.empty((height, width) + tiles[0].shape[2:], dtype=tiles[0].dtype)
    for k, t in enumerate(tiles):
        y, x = (k // cols) * size, (k % cols) * size
        out[y:y + size, x:x + size] = t
    return out
