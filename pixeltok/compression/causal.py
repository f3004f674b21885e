"""Any causal model over sub-pixels as the coder's model: the generic, slower path of ``compress(image, model=...)``.

The model predicts a tile's sub-pixels one at a time, in raster order with R, G, B interleaved per pixel, after a
start token: ``transformers.ImageGPTForCausalImageModeling`` with ``vocab_size=257`` (256 levels + its start token,
id 256; its head has 256 outputs), or any transformers causal LM whose tokens 0..255 are the sub-pixel levels and
whose ``bos_token_id`` (>= 256) starts a tile. Each unit of the image is a tile (edge tiles smaller) whose
``3 * T * T + 1`` tokens fit the model's positions.

Exactness. The model runs in float32, so its logits are only reproducible under the same conditions. Encoder and
decoder run the very same computation: one token per step with the model's key/value cache, the tiles of one shape
in lock-step batches of the same size. The conditions that can still change float results are written into the
header's coder-parameter field and checked before decoding (:func:`check_conditions`): the torch version, the CPU's
vector capability (``torch.backends.cpu.get_cpu_capability()``), the attention implementation and the batch size;
the decoder sets the recorded thread count itself. From the logits on, everything is integer: the logits, minus
their maximum, are rounded to 1/64 nat, an integer table (:data:`EXP_TABLE`, built by integer multiplication) turns
them into weights, and those become frequencies summing to ``2**24`` (each >= 1), range-coded with constriction.
A file decoded under other conditions is refused with :class:`PtkModelMismatchError`; any remaining mismatch is
caught by the image CRC32.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct

import constriction
import numpy as np
import torch

from .format import PtkModelMismatchError

CAUSAL_CODER_ID = 5
CAUSAL_NUMERICS_ID = 3  # float32 model on CPU, conditions in the header, integer softmax
CAUSAL_QUANT_ID = 3  # logits rounded to 1/64 nat -> EXP_TABLE -> frequencies
TOKEN_ORDER = "raster-rgb-interleaved"
FREQ_BITS = 24
LOGIT_STEPS = 64  # logits are rounded to 1 / LOGIT_STEPS nat
LOGIT_RANGE = 32  # nats below the maximum beyond which every level gets the floor frequency
CONDITIONS_VERSION = 1
MAX_TILE = 256


def _exp_table() -> np.ndarray:
    """``EXP_TABLE[k] = round(2**30 * exp(-k / 64))``, ``k = 0 .. 2048``, from exact integer powers of a 60-bit
    constant (no libm: the same table on every machine)."""
    r = 1135047113432355401  # round(2**60 * exp(-1/64)), checked in the tests
    t, p = [], 1
    for k in range(LOGIT_RANGE * LOGIT_STEPS + 1):
        shift = 60 * k - 30  # p / 2**(60k) * 2**30, rounded half up
        t.append(p << -shift if shift < 0 else (p + (1 << (shift - 1))) >> shift)
        p *= r
    return np.array(t, dtype=np.int64)


EXP_TABLE = _exp_table()


def logits_to_freqs(logits: np.ndarray) -> np.ndarray:
    """``(N, 256)`` float32 logits -> ``(N, 256)`` int64 frequencies, each >= 1, each row summing to ``2**24``."""
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True).astype(np.float32)  # <= 0, exact IEEE ops
    k = np.clip(-np.rint(z * np.float32(LOGIT_STEPS)), 0, LOGIT_RANGE * LOGIT_STEPS).astype(np.int64)
    x = EXP_TABLE[k]
    n_sym = x.shape[1]
    f = 1 + (x * ((1 << FREQ_BITS) - n_sym)) // x.sum(axis=1, keepdims=True)
    f[np.arange(len(f)), np.argmax(x, axis=1)] += (1 << FREQ_BITS) - f.sum(axis=1)
    return f


# ---- the model ---------------------------------------------------------------------------------------------------
def is_causal_model(model) -> bool:
    """A transformers model this path can code with (not the pixel-context network)."""
    from transformers import PreTrainedModel

    from .model import PixelContextCodecModel

    return isinstance(model, PreTrainedModel) and not isinstance(model, PixelContextCodecModel)


def load_causal_model(path: str | os.PathLike):
    """An ImageGPT (``model_type`` imagegpt) or any ``AutoModelForCausalLM`` checkpoint, eval mode, float32, CPU."""
    from transformers import AutoConfig, AutoModelForCausalLM, ImageGPTForCausalImageModeling

    from .model import _no_loading_bar

    cfg = AutoConfig.from_pretrained(path)
    cls = ImageGPTForCausalImageModeling if cfg.model_type == "imagegpt" else AutoModelForCausalLM
    with _no_loading_bar():
        model = cls.from_pretrained(path, dtype=torch.float32)
    model.eval()
    check_model(model)
    return model


def start_token(model) -> int:
    cfg = model.config
    if cfg.model_type == "imagegpt":
        return cfg.vocab_size - 1
    return cfg.bos_token_id


def check_model(model) -> None:
    """Raise ``ValueError`` unless ``model`` predicts 256 sub-pixel levels after a start token."""
    cfg = model.config
    if cfg.model_type == "imagegpt":
        if cfg.vocab_size != 257:
            raise ValueError(f"an ImageGPT coder model needs vocab_size 257 (256 sub-pixel levels + start token), "
                             f"got {cfg.vocab_size}")
    else:
        bos = getattr(cfg, "bos_token_id", None)
        if getattr(cfg, "vocab_size", 0) < 257 or not isinstance(bos, int) or not 256 <= bos < cfg.vocab_size:
            raise ValueError(f"a causal LM coder model needs tokens 0..255 = sub-pixel levels and a bos_token_id "
                             f">= 256 to start a tile; got vocab_size {getattr(cfg, 'vocab_size', None)}, "
                             f"bos_token_id {bos}")
    if next(model.parameters()).device.type != "cpu" or next(model.parameters()).dtype != torch.float32:
        raise ValueError("the causal coder path runs the model on CPU in float32 (call model.float().cpu())")


def max_tile(model) -> int:
    """The largest square tile whose ``3 T^2 + 1`` tokens fit the model's positions (at most 256)."""
    cfg = model.config
    n = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or (3 * 32 * 32 + 1)
    return min(MAX_TILE, math.isqrt(max(0, (n - 1) // 3)))


# ---- determinism conditions --------------------------------------------------------------------------------------
def conditions(model, batch_size: int) -> dict:
    return {"threads": torch.get_num_threads(), "batch": int(batch_size), "torch": torch.__version__,
            "cpu": torch.backends.cpu.get_cpu_capability(),
            "attention": str(getattr(model.config, "_attn_implementation", None) or "eager")}


def conditions_to_bytes(c: dict) -> bytes:
    out = struct.pack("<BBH", CONDITIONS_VERSION, min(c["threads"], 255), c["batch"])
    for key in ("torch", "cpu", "attention"):
        s = c[key].encode()[:20]
        out += bytes([len(s)]) + s
    return out


def conditions_from_bytes(b: bytes) -> dict:
    """Raises ``ValueError`` for a malformed field."""
    if len(b) < 4 or b[0] != CONDITIONS_VERSION:
        raise ValueError(f"unknown causal-coder conditions (version byte {b[:1].hex() or 'missing'})")
    threads, batch = struct.unpack_from("<BH", b, 1)
    out, pos = {"threads": threads, "batch": batch}, 4
    for key in ("torch", "cpu", "attention"):
        if pos >= len(b) or pos + 1 + b[pos] > len(b):
            raise ValueError(f"truncated causal-coder conditions (field {key})")
        out[key] = b[pos + 1:pos + 1 + b[pos]].decode("utf-8", "replace")
        pos += 1 + b[pos]
    if pos != len(b) or threads < 1 or batch < 1:
        raise ValueError("malformed causal-coder conditions")
    return out


def check_conditions(recorded: dict, model, source: str) -> None:
    """Refuse to decode where the float results could differ from the encoder's."""
    here = conditions(model, recorded["batch"])
    diff = [f"{k} {recorded[k]!r} (here {here[k]!r})" for k in ("torch", "cpu", "attention") if recorded[k] != here[k]]
    if diff:
        raise PtkModelMismatchError(
            f"{source}: coded by a causal model whose float32 results depend on the machine: it was coded with "
            f"{', '.join(diff)}; decode it where those match (the encoder's conditions are in the header)")


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---- coding ------------------------------------------------------------------------------------------------------
def _steps(model, n_tokens: int, b: int, feed):
    """Run the model one token per step over ``b`` sequences; ``feed(k, freqs)`` gets the frequencies of token
    ``k`` (``(b, 256)`` int64) and returns the ``(b,)`` tokens it stands for (known to the encoder, decoded by the
    decoder)."""
    import inspect

    # transformers 5.24 renamed past_key_values to cache (the old name warns); take whichever forward has
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    tok = torch.full((b, 1), start_token(model), dtype=torch.long)
    past = None
    with torch.inference_mode():
        for k in range(n_tokens):
            out = model(input_ids=tok, use_cache=True, **{key: past})
            past = out.get(key)
            freqs = logits_to_freqs(out.logits[:, -1, :256].float().numpy())
            tok = torch.from_numpy(np.asarray(feed(k, freqs), dtype=np.int64)).view(b, 1)


def _family():
    return constriction.stream.model.Categorical(perfect=False)


def _pad(words: np.ndarray, h: int, w: int) -> bytes:
    from .format import min_stream_bytes

    data = words.astype("<u4").tobytes()
    need = min_stream_bytes(h, w, CAUSAL_CODER_ID)
    return data + b"\0" * max(0, need - len(data))


def encode_units(model, units: np.ndarray, bar=None) -> tuple[list[bytes], list[float]]:
    """``(b, h, w, 3)`` uint8 tiles coded in lock-step -> (streams, ideal bits)."""
    b, h, w, _ = units.shape
    seqs = units.reshape(b, -1).astype(np.int64)
    encs = [constriction.stream.queue.RangeEncoder() for _ in range(b)]
    bits = np.zeros(b)
    fam, rows = _family(), np.arange(b)

    def feed(k, freqs):
        sym = seqs[:, k]
        for j in range(b):
            encs[j].encode(sym[j:j + 1].astype(np.int32), fam, freqs[j:j + 1].astype(np.float64))
        bits[:] += FREQ_BITS - np.log2(freqs[rows, sym])
        if bar is not None and k % 3 == 2:
            bar.update(b)
        return sym

    _steps(model, seqs.shape[1], b, feed)
    return [_pad(e.get_compressed(), h, w) for e in encs], bits.tolist()


def decode_units(model, streams: list[bytes], h: int, w: int, bar=None) -> np.ndarray:
    """Inverse of :func:`encode_units` -> ``(b, h, w, 3)`` uint8. A corrupted stream raises ``ValueError`` or
    constriction's error (the caller maps it to a format error)."""
    b = len(streams)
    decs = [constriction.stream.queue.RangeDecoder(np.frombuffer(s, dtype="<u4").astype(np.uint32)) for s in streams]
    out = np.zeros((b, h * w * 3), np.int64)
    fam = _family()

    def feed(k, freqs):
        for j in range(b):
            out[j, k] = decs[j].decode(fam, freqs[j:j + 1].astype(np.float64))[0]
        if bar is not None and k % 3 == 2:
            bar.update(b)
        return out[:, k]

    _steps(model, h * w * 3, b, feed)
    if out.max(initial=0) > 255 or out.min(initial=0) < 0:
        raise ValueError("decoded a symbol outside 0..255")
    return out.astype(np.uint8).reshape(b, h, w, 3)


def group_units(rects, batch_size: int) -> list[tuple[tuple[int, int], list[int]]]:
    """Units grouped by shape (first appearance order), each group cut into batches of ``batch_size``."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (_, _, h, w) in enumerate(rects):
        groups.setdefault((h, w), []).append(i)
    return [(shape, idx[s:s + batch_size]) for shape, idx in groups.items() for s in range(0, len(idx), batch_size)]


def encode_image(model, pixels: np.ndarray, rects, batch_size: int, bar=None) -> tuple[list[bytes], float]:
    """Every unit of ``pixels`` (``(H, W, 3)``) -> (streams in unit order, ideal bits), at the current threads."""
    streams, ideal = [None] * len(rects), 0.0
    for (h, w), chunk in group_units(rects, batch_size):
        units = np.stack([pixels[y:y + uh, x:x + uw] for y, x, uh, uw in (rects[i] for i in chunk)])
        got, bits = encode_units(model, units, bar)
        for i, s in zip(chunk, got):
            streams[i] = s
        ideal += sum(bits)
    return streams, ideal


def decode_image(model, streams: list[bytes], rects, height: int, width: int, recorded: dict,
                 bar=None) -> np.ndarray:
    pixels = np.empty((height, width, 3), np.uint8)
    with _threads(recorded["threads"]):
        for (h, w), chunk in group_units(rects, recorded["batch"]):
            out = decode_units(model, [streams[i] for i in chunk], h, w, bar)
            for j, i in enumerate(chunk):
                y, x = rects[i][:2]
                pixels[y:y + h, x:x + w] = out[j]
    return pixels
