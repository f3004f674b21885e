"""Turn any supported image input into a uint8 RGBA array, with clear errors for bad input.

Shared by the tokenizers, the data builders and the codec so every entry point accepts the same things:
PIL images of any common mode, numpy arrays ``(H, W)``, ``(H, W, 3)``, ``(H, W, 4)`` uint8, torch tensors
``(C, H, W)`` uint8 or float in [0, 1], and file paths.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageInput = Union[Image.Image, np.ndarray, "torch.Tensor", str, os.PathLike]  # noqa: F821


class ImageInputError(ValueError):
    """An image input that cannot be read or represented (names the file/field and the problem)."""


def _claimed_size(path: Path, error: Exception) -> str:
    """Error path only: the ``WxH`` a file's header claims, read by the format plugin without Pillow's bomb check
    (plugins parse headers on construction and allocate no pixels); else the pixel count in Pillow's message."""
    Image.init()
    try:
        with open(path, "rb") as fp:
            prefix = fp.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                if accept and not accept(prefix):
                    continue
                try:
                    fp.seek(0)
                    w, h = factory(fp, str(path)).size
                    return f"{w}x{h} ({w * h} pixels)"
                except Exception:  # noqa: BLE001 - not this format; try the next one
                    continue
    except OSError:
        pass
    m = re.search(r"\((\d+) pixels\)", str(error))  # plugins that run the bomb check themselves (WebP)
    return f"{m.group(1)} pixels" if m else "too many pixels"


def _check_pixels(w: int, h: int, source: str) -> None:
    """Refuse a decode before any buffer is allocated: sizes come from file headers, which may lie."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > limit:
        raise ImageInputError(f"{source}: image is {w}x{h} ({w * h} pixels), more than the decompression-bomb limit of "
                              f"{limit} pixels (PIL.Image.MAX_IMAGE_PIXELS); refusing to decode it")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file; corrupt, truncated or oversized files raise :class:`ImageInputError`."""
    p = Path(path)
    if not p.is_file():
        raise ImageInputError(f"{p}: no such image file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; _check_pixels refuses those with the real size
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                _check_pixels(*im.size, str(p))
                if im.size[0] == 0 or im.size[1] == 0:
                    raise ImageInputError(f"{p}: empty image ({im.size[0]}x{im.size[1]})")
                im.load()  # force a full decode so truncation is caught here, not later
                return im.copy()
    except ImageInputError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageInputError(f"{p}: image header claims {_claimed_size(p, e)}, more than twice the decompression-bomb "
                              f"limit of {Image.MAX_IMAGE_PIXELS} pixels (PIL.Image.MAX_IMAGE_PIXELS); refusing to "
                              "decode it") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{p}: not a readable image (unknown or corrupt format)") from None
    except Exception as e:  # noqa: BLE001 - format plugins raise many types on corrupt bytes (struct.error, EOFError...)
        raise ImageInputError(f"{p}: corrupt or truncated image ({type(e).__name__}: {e})") from None


def _loaded(im: Image.Image, source: str) -> Image.Image:
    """A lazily opened PIL image decodes on first pixel access: make its errors ImageInputError, and refuse empties."""
    w, h = im.size
    if w == 0 or h == 0:
        raise ImageInputError(f"{source}: empty image ({w}x{h})")
    try:
        im.load()
    except Exception as e:  # noqa: BLE001 - as in open_image
        raise ImageInputError(f"{source}: corrupt or truncated image ({type(e).__name__}: {e})") from None
    return im


def pil_to_rgba(im: Image.Image, *, source: str = "image") -> np.ndarray:
    """Any PIL mode -> ``(H, W, 4)`` uint8. 16-bit greys keep their high byte; palettes keep transparency."""
    mode = _loaded(im, source).mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im, dtype=np.int64)
        if mode == "I" and (a.min() < 0 or a.max() > 65535):
            raise ImageInputError(f"{source}: mode I values outside 0..65535 cannot be mapped to 8 bits")
        g = (a >> 8).astype(np.uint8) if a.max() > 255 or mode.startswith("I;16") else a.astype(np.uint8)
        return np.dstack([g, g, g, np.full_like(g, 255)])
    if mode == "F":
        raise ImageInputError(f"{source}: float images (mode F) are not supported; convert to 8-bit first")
    if mode == "La":  # premultiplied grey + alpha: Pillow un-premultiplies only into LA
        im = im.convert("LA").convert("RGBA")
    elif mode in ("P", "PA", "RGBA", "LA", "RGBa"):  # PA: palette colour + its own alpha band; RGBa: premultiplied
        im = im.convert("RGBA")
    elif mode in ("RGB", "L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB").convert("RGBA")
    else:
        try:
            im = im.convert("RGBA")
        except (ValueError, OSError, KeyError) as e:
            raise ImageInputError(f"{source}: unsupported image mode {mode!r} ({e})") from None
    return np.asarray(im, dtype=np.uint8).copy()


def array_to_rgba(a: np.ndarray, *, source: str = "array") -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        raise ImageInputError(f"{source}: numpy images must be uint8, got {a.dtype}")
    if a.ndim == 2:
        return np.dstack([a, a, a, np.full_like(a, 255)])
    if a.ndim == 3 and a.shape[2] == 3:
        return np.dstack([a, np.full(a.shape[:2], 255, np.uint8)])
    if a.ndim == 3 and a.shape[2] == 4:
        return np.ascontiguousarray(a)
    raise ImageInputError(f"{source}: expected shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")


def tensor_to_rgba(t: Any, *, source: str = "tensor") -> np.ndarray:
    import torch

    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise ImageInputError(f"{source}: tensors must be (C, H, W) with C in 1, 3, 4; got {tuple(t.shape)}")
    t = t.detach().cpu()
    if t.shape[1] == 0 or t.shape[2] == 0:  # before min()/max(), which have no value on an empty tensor
        raise ImageInputError(f"{source}: empty image ({t.shape[2]}x{t.shape[1]})")
    if t.dtype == torch.uint8:
        a = t.numpy()
    elif t.is_floating_point():
        if torch.isnan(t).any() or t.min() < 0 or t.max() > 1:
            raise ImageInputError(f"{source}: float tensors must hold values in [0, 1]")
        a = (t * 255).round().to(torch.uint8).numpy()
    else:
        raise ImageInputError(f"{source}: tensors must be uint8 or float, got {t.dtype}")
    a = np.moveaxis(a, 0, -1)
    return array_to_rgba(a[..., 0] if a.shape[-1] == 1 else a, source=source)


def to_rgba(image: ImageInput, *, source: str | None = None) -> np.ndarray:
    """Any supported input -> ``(H, W, 4)`` uint8 RGBA; raises :class:`ImageInputError` naming the problem."""
    if isinstance(image, (str, os.PathLike)):
        src = source or str(image)
        arr = pil_to_rgba(open_image(image), source=src)
    elif isinstance(image, Image.Image):
        src = source or "image"
        arr = pil_to_rgba(image, source=src)
    elif isinstance(image, np.ndarray):
        src = source or "array"
        arr = array_to_rgba(image, source=src)
    elif type(image).__module__.startswith("torch"):
        src = source or "tensor"
        arr = tensor_to_rgba(image, source=src)
    else:
        raise ImageInputError(f"unsupported image input type {type(image).__name__}: use a PIL image, numpy array, torch tensor or path")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageInputError(f"{src}: empty image ({arr.shape[1]}x{arr.shape[0]})")
    return arr


def to_rgb_exact(image: ImageInput, *, source: str | None = None) -> np.ndarray:
    """For lossless coding: ``(H, W, 3)`` uint8, refusing inputs whose pixels would change (alpha, 16-bit...)."""
    if isinstance(image, (str, os.PathLike)):
        src = source or str(image)
        image = open_image(image)
    else:
        src = source or "image"
    if isinstance(image, Image.Image):
        _loaded(image, src)
        if image.mode not in ("RGB", "L", "1"):
            raise ImageInputError(f"{src}: mode {image.mode!r} cannot be coded losslessly as 8-bit RGB; convert it explicitly (e.g. image.convert('RGB')) first")
        arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    else:
        arr = to_rgba(image, source=src)
        if (arr[..., 3] != 255).any():
            raise ImageInputError(f"{src}: has transparency, which the lossless RGB codec does not store; composite or drop alpha first")
        arr = arr[..., :3]
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageInputError(f"{src}: empty image")
    return np.ascontiguousarray(arr)

# -- the reader's input: any image fitted to a fixed height ------------------------------------------------------------
MAX_INPUT_SIDE = 1 << 15


def _is_count(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def composite_on(rgba: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA -> ``(H, W, 3)`` uint8, alpha-blended over a solid ``background`` (exact integers)."""
    a = rgba[..., 3:4].astype(np.uint32)
    if (a == 255).all():
        return np.ascontiguousarray(rgba[..., :3])
    bg = np.asarray(background, dtype=np.uint32)
    out = (rgba[..., :3].astype(np.uint32) * a + bg * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def decode_image_input(image):
    """A ``datasets`` image dict (``{"bytes": ..., "path": ...}``) or encoded bytes -> a PIL image (lazily decoded);
    any other input is returned as it is (for :func:`to_rgba`). Raises :class:`ImageInputError`."""
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            image = image["bytes"]
        elif image.get("path"):
            image = image["path"]
        else:
            raise ImageInputError("image dict has neither 'bytes' nor 'path'")
    if isinstance(image, (bytes, bytearray, memoryview)):
        if not len(image):
            raise ImageInputError("empty bytes: not an image")
        try:
            image = Image.open(io.BytesIO(bytes(image)))
        except Exception as e:  # noqa: BLE001 - UnidentifiedImageError and format plugin errors
            raise ImageInputError(f"bytes are not a readable image ({type(e).__name__}: {e})") from None
    return image


def prepare_reader_image(image, height: int = 16, *, max_width: int = 96,
                         background: tuple[int, int, int] = (255, 255, 255), crop: bool = False) -> Image.Image:
    """Any image -> an RGB PIL image ``height`` px tall and at most ``max_width`` (96) px wide, for the reader.

    ``image``: a PIL image (any mode), a numpy array, a torch tensor, a file path, encoded bytes, or a
    ``datasets`` image dict (``{"bytes": ..., "path": ...}``). Transparency is composited over ``background``. The
    image is resized (Lanczos) to ``height`` keeping its aspect ratio; a wider result is scaled to ``max_width``
    instead and padded to ``height`` with the colour of its border (median of the edge pixels), centred. With
    ``crop`` the image is first trimmed to the bounding box of its ink (:func:`ink_box`), so that the text, not the
    margin around it, fills the height: a 7 px word in a 20 px image then gets as many pixels as a 15 px one.

    Raises :class:`ImageInputError` for what is not an image, an empty (0-pixel) image, a side over 32768 px or more
    pixels than ``PIL.Image.MAX_IMAGE_PIXELS``, and aspect ratios the output cannot hold (narrower than 1 px at
    ``height``, or shorter than ``min(4, height)`` px at ``max_width``). ``ValueError`` for a bad ``height`` /
    ``max_width`` (ints in 4..128 and 1..4096).
    """
    if not _is_count(height) or not 4 <= height <= 128:
        raise ValueError(f"height must be an int in 4..128 (the reading task uses 11..20), got {height!r}")
    if not _is_count(max_width) or not 1 <= max_width <= 4096:
        raise ValueError(f"max_width must be an int in 1..4096, got {max_width!r}")
    image = decode_image_input(image)
    if isinstance(image, Image.Image):
        w, h = image.size
        if w * h > (Image.MAX_IMAGE_PIXELS or 1 << 62) or max(w, h) > MAX_INPUT_SIDE:
            raise ImageInputError(f"image is {w}x{h}: absurdly large for a reader image (limit {MAX_INPUT_SIDE} px a side, "
                                  f"{Image.MAX_IMAGE_PIXELS} pixels)")
    elif isinstance(image, np.ndarray) and image.ndim >= 2 and max(image.shape[:2]) > MAX_INPUT_SIDE:
        raise ImageInputError(f"array is {image.shape[1]}x{image.shape[0]}: absurdly large for a reader image "
                              f"(limit {MAX_INPUT_SIDE} px a side)")
    rgba = to_rgba(image)  # ImageInputError for non-images, empty images, bad dtypes/shapes
    h, w = rgba.shape[:2]
    if max(w, h) > MAX_INPUT_SIDE or w * h > (Image.MAX_IMAGE_PIXELS or 1 << 62):
        raise ImageInputError(f"image is {w}x{h}: absurdly large for a reader image (limit {MAX_INPUT_SIDE} px a side)")
    rgb = composite_on(rgba, tuple(int(v) for v in background))
    if crop:
        rows, cols = ink_box(rgb)
        rgb = np.ascontiguousarray(rgb[rows, cols])
        h, w = rgb.shape[:2]
    new_w = w * height / h
    if new_w < 1:
        raise ImageInputError(f"image is {w}x{h}: at height {height} it would be {new_w:.2f} px wide (aspect ratio "
                              f"1:{h / w:.0f}); crop it to the word first")
    im = Image.fromarray(rgb)
    if round(new_w) <= max_width:
        size = (max(1, round(new_w)), height)
        return im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)
    content_h = h * max_width / w
    if content_h < min(4, height):
        raise ImageInputError(f"image is {w}x{h}: fitted to {max_width} px wide it would be {content_h:.1f} px tall "
                              f"(aspect ratio {w / h:.0f}:1); crop it to the word first")
    ch = max(1, min(height, round(content_h)))
    small = im.resize((max_width, ch), Image.Resampling.LANCZOS)
    a = np.asarray(small)
    edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    fill = tuple(int(v) for v in np.median(edge, axis=0))
    out = Image.new("RGB", (max_width, height), fill)
    out.paste(small, (0, (height - ch) // 2))
    return out


def ink_box(rgb: np.ndarray) -> tuple[slice, slice]:
    """``(H, W, 3)`` uint8 -> the rows and columns of the ink's bounding box, with a margin of 1 px + 8% of its height.

    On the 3x3 mean of the luma (noise of sigma 12 shrinks to 4): the background is the median, the ink the darkest
    or the brightest spot, whichever lies farther from it (dark text on light, or light on dark; a few pixels of a
    small word suffice), and a pixel is ink past half way between them. An image without contrast is kept whole.
    """
    g = rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    h, w = g.shape
    p = np.pad(g, 1, mode="edge")
    mean = sum(p[i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9
    bg, lo, hi = float(np.median(mean)), float(mean.min()), float(mean.max())
    ink = lo if bg - lo >= hi - bg else hi
    if abs(bg - ink) < 8:
        return slice(0, h), slice(0, w)
    mask = (mean - bg) / (ink - bg) > 0.5
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    m = 1 + round(0.08 * (rows[-1] - rows[0] + 1))
    return (slice(max(0, rows[0] - m), min(h, rows[-1] + 1 + m)), slice(max(0, cols[0] - m), min(w, cols[-1] + 1 + m)))
