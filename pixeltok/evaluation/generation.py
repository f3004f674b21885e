"""The PixelBytes generation protocol: continue held-out sequences and compare the 3x3 windows.

For each held-out id sequence, generation points are ``p = context_length, context_length + stride, ...``
(``stride = context_length + generation_length``, the reference's non-overlapping chunks, without its
wrap-around). At each point the model sees the sequence's prefix ``ids[:p]`` (all of it, or its last
``max_context`` ids) and greedily generates ``generation_length`` ids; the windows of the generated positions
(built from the prefix + generated ids) are paired with the windows of the true continuation. Windows come from
``tokenizer.build_windows`` so "above" neighbours of generated pixels are whatever the model produced.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .functional import generation_metrics


def generation_points(length: int, context_length: int = 64, generation_length: int = 16,
                      max_points: int | None = None) -> list[int]:
    """Start positions ``p`` of the generated chunks in a sequence of ``length`` ids (``p + generation_length``
    never exceeds ``length``)."""
    if context_length < 1 or generation_length < 1:
        raise ValueError(f"context_length={context_length} and generation_length={generation_length} must be >= 1")
    stride = context_length + generation_length
    points = list(range(context_length, length - generation_length + 1, stride))
    return points[:max_points] if max_points is not None else points


@torch.no_grad()
def generate_window_pairs(model, tokenizer, sequences: Iterable[Sequence[int]], context_length: int = 64,
                          generation_length: int = 16, max_points_per_sequence: int | None = None,
                          max_context: int | None = None, show_progress: bool = True
                          ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Generated vs reference windows, ``(generation_length, 3, 3)`` int64 each, one pair per generation point.

    Args:
        model: a causal LM with ``generate`` (greedy decoding is used; the model is put in eval mode).
        tokenizer: provides ``build_windows(ids) -> (L, 3, 3)`` (``PixelBytesTokenizer``).
        sequences: held-out id sequences (e.g. the test split's ``input_ids``), unpadded.
        context_length, generation_length: the paper's 64 and 16.
        max_points_per_sequence: cap on generation points per sequence (None = all).
        max_context: feed only the last ``max_context`` prefix ids to the model (None = the whole prefix).
    Returns:
        ``(predictions, references)``: lists of ``(generation_length, 3, 3)`` arrays.
    """
    model.eval()
    device = next(model.parameters()).device
    sequences = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
    jobs = [(i, p) for i, s in enumerate(sequences)
            for p in generation_points(len(s), context_length, generation_length, max_points_per_sequence)]
    if not jobs:
        longest = max(map(len, sequences), default=0)
        raise ValueError(f"no sequence is long enough for context_length={context_length} + "
                         f"generation_length={generation_length} (longest has {longest} ids)")
    pad_id = getattr(tokenizer, "pad_token_id", None)
    preds, refs = [], []
    for i, p in tqdm(jobs, desc="generate", disable=not show_progress):
        ids = sequences[i]
        start = 0 if max_context is None else max(0, p - max_context)
        prompt = torch.as_tensor(ids[start:p], device=device)[None]
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=generation_length, min_new_tokens=generation_length,
                             pad_token_id=pad_id)
        generated = out[0, prompt.shape[1]:].cpu().numpy()
        if generated.shape[0] != generation_length:
            raise RuntimeError(f"model.generate returned {generated.shape[0]} new ids, expected {generation_length}")
        full = np.concatenate([ids[:p], generated])
        preds.append(np.asarray(tokenizer.build_windows(full))[p:p + generation_length].astype(np.int64))
        refs.append(np.asarray(tokenizer.build_windows(ids[:p + generation_length]))[p:].astype(np.int64))
    return preds, refs


def evaluate_generation(model, tokenizer, sequences, **kwargs) -> dict[str, float]:
    """:func:`generate_window_pairs` then the paper's table row (``hamming``, ``cosine``, ``bleu``, ``num_samples``)."""
    preds, refs = generate_window_pairs(model, tokenizer, sequences, **kwargs)
    return generation_metrics(preds, refs)
