"""Drawing images from text with any causal LM and a :class:`~pixeltok.PixelTextProcessor`: the sequence format that
``recipes/train_lm.py`` trains with ``data.task: draw`` (the caption-first direction of :mod:`pixeltok.reader`) and
that De-Diffusion's frozen decoder scores.

A sample is ``[<bos>] text <boi> pixel tokens <eoi>``; the loss covers the pixel tokens and ``<eoi>``. Because every
pixel token is exact, the loss is an exact code length: :func:`image_bits` gives the bits of each image given its
text, and :func:`greedy_draw` the image a model draws from a text (the image's size given, as its header).

    >>> bits = pixeltok.drawing.image_bits(model, proc, images, ["a large red circle top left, on white"] * len(images))
    >>> pictures = pixeltok.drawing.greedy_draw(model, proc, texts, sizes=[im.size for im in images])
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .tokenization.pixel_codec import pad_rows


def text_ids(processor, texts: Sequence[str]) -> list[np.ndarray]:
    """``[<bos>] text`` ids, one array per text (no ``<eos>``: the image follows)."""
    tok = processor.tokenizer
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    enc = tok(list(texts), add_special_tokens=False)["input_ids"] if len(texts) else []
    return [np.asarray(bos + list(e), np.int64) for e in enc]


def image_span_ids(processor, images: Sequence) -> list[np.ndarray]:
    """``<boi>`` + each image's pixel-token ids + ``<eoi>``."""
    return [np.concatenate([[processor.boi_token_id], processor.image_ids(im), [processor.eoi_token_id]])
            .astype(np.int64) for im in images]


def draw_batch(processor, images: Sequence, texts: Sequence, prefixes: Sequence[np.ndarray] | None = None) -> dict:
    """Right-padded ``input_ids`` and ``labels`` (``-100`` except on the pixel tokens and ``<eoi>``), ``(B, L)``.

    ``texts``: strings, or ``prefixes``: id arrays used as given (e.g. a De-Diffusion text's ids)."""
    heads = list(prefixes) if prefixes is not None else text_ids(processor, texts)
    rows, labels = [], []
    for h, span in zip(heads, image_span_ids(processor, images)):
        rows.append(np.concatenate([h, span]))
        labels.append(np.concatenate([np.full(len(h) + 1, -100), span[1:]]))
    L = max(len(r) for r in rows)
    pad = processor.tokenizer.pad_token_id
    return {"input_ids": torch.from_numpy(pad_rows(rows, pad, L)),
            "attention_mask": torch.from_numpy(pad_rows([np.ones(len(r), np.int64) for r in rows], 0, L)),
            "labels": torch.from_numpy(pad_rows(labels, -100, L))}


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(B, L, V)`` logits, ``(B, L)`` labels -> ``(B, L-1)`` next-token NLL in nats (0 where the label is -100)."""
    lab = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), lab.clamp_min(0),
                                            reduction="none")
    return nll * (lab != -100)


@torch.no_grad()
def image_bits(model, processor, images: Sequence, texts: Sequence | None = None, *,
               prefixes: Sequence[np.ndarray] | None = None, batch_size: int = 32) -> np.ndarray:
    """Bits to code each image's pixel tokens (and ``<eoi>``) given its text: ``(N, 2)`` array of
    ``[total bits, number of coded tokens]`` (bits per image token = column 0 / column 1)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(images), batch_size):
        batch = draw_batch(processor, images[s:s + batch_size], None if texts is None else texts[s:s + batch_size],
                           None if prefixes is None else prefixes[s:s + batch_size])
        logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
        nll = token_nll(logits, batch["labels"].to(device))
        n = (batch["labels"][:, 1:] != -100).sum(1)
        out.append(np.stack([nll.sum(1).double().cpu().numpy() / math.log(2), n.numpy()], 1))
    return np.concatenate(out) if out else np.zeros((0, 2))


class _OnlyTokens:
    """A logits processor that keeps only ``allowed`` ids (a fixed-length image needs only strip tokens)."""

    def __init__(self, allowed: np.ndarray, vocab: int):
        self.mask = torch.full((vocab,), float("-inf"))
        self.mask[torch.as_tensor(allowed)] = 0.0

    def __call__(self, input_ids, scores):
        return scores + self.mask[: scores.shape[-1]].to(scores.device, scores.dtype)


@torch.no_grad()
def greedy_draw(model, processor, texts: Sequence | None = None, sizes: Sequence[tuple[int, int]] = (), *,
                prefixes: Sequence[np.ndarray] | None = None, batch_size: int = 32) -> list:
    """The image a model draws greedily for each text, given its ``(width, height)`` (written as the header).

    Needs a processor with ``pack > 1`` (a fixed number of strip tokens per image, so every greedy output decodes;
    generation is restricted to strip tokens). Returns PIL images (``processor.decode_images``)."""
    from transformers import LogitsProcessorList

    if processor.pack == 1:
        raise ValueError("greedy_draw needs a processor with pack > 1 (fixed-length strip images)")
    model.eval()
    heads = list(prefixes) if prefixes is not None else text_ids(processor, texts)
    device = next(model.parameters()).device
    allowed = LogitsProcessorList([_OnlyTokens(processor._strip_text, len(processor.tokenizer))])
    out: list = [None] * len(heads)
    jobs = []
    for i, ((w, h), head) in enumerate(zip(sizes, heads)):
        rows, length = (w, h) if processor.scan == "columns" else (h, w)
        header = processor.strip_header_ids(length, rows)
        jobs.append((i, np.concatenate([head, [processor.boi_token_id], header]).astype(np.int64),
                     rows * -(-length // processor.pack)))
    jobs.sort(key=lambda j: (j[2], len(j[1])))  # equal image lengths batch together
    tok = processor.tokenizer
    for s in range(0, len(jobs), batch_size):
        group = jobs[s:s + batch_size]
        for n in sorted({j[2] for j in group}):
            sub = [j for j in group if j[2] == n]
            L = max(len(j[1]) for j in sub)
            ids = torch.from_numpy(pad_rows([j[1] for j in sub], tok.pad_token_id, L, left=True)).to(device)
            mask = torch.from_numpy(pad_rows([np.ones(len(j[1]), np.int64) for j in sub], 0, L, left=True)).to(device)
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, logits_processor=allowed, pad_token_id=tok.pad_token_id,
                                 eos_token_id=None)
            for k, (i, prompt, _) in enumerate(sub):
                body = np.concatenate([prompt[len(prompt) - 4:], gen[k, L:].cpu().numpy(), [processor.eoi_token_id]])
                out[i] = processor.decode_images(body)[0]
    return out


def pixel_accuracy(drawn, targets) -> float:
    """Share of pixels where each drawn image equals its target (both PIL or arrays of the same size)."""
    hits = total = 0
    for a, b in zip(drawn, targets):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            total += b.shape[0] * b.shape[1]
            continue
        eq = (a == b).all(-1) if a.ndim == 3 else a == b
        hits, total = hits + int(eq.sum()), total + eq.size
    return hits / max(total, 1)


__all__ = ["text_ids", "image_span_ids", "draw_batch", "token_nll", "image_bits", "greedy_draw", "pixel_accuracy"]
