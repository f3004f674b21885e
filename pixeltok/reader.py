"""Reading text in images with any causal LM and a :class:`~pixeltok.PixelTextProcessor`: the one sequence format
that ``recipes/train_lm.py`` trains on and ``pixeltok read`` / :func:`read` decode.

A sample is ``[<bos>] prompt answer <eos>``, where the prompt is the processor's expansion of ``"<image>"``
(``<boi>`` + the image's pixel tokens + ``<eoi>``) and the answer is the text in the tokenizer's own ids; the loss
covers the answer (and its ``<eos>``) only.

    >>> from transformers import AutoModelForCausalLM, AutoProcessor
    >>> model = AutoModelForCausalLM.from_pretrained("runs/reader"); proc = AutoProcessor.from_pretrained("runs/reader")
    >>> pixeltok.reader.read(model, proc, ["word.png"])          # ['hello']
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .tokenization.pixel_codec import pad_rows

PROMPT = "<image>"


def prompt_ids(processor, images: Sequence, prompt: str = PROMPT) -> list[np.ndarray]:
    """The model input before the answer, one id array per image."""
    rows = processor(text=[prompt] * len(images), images=list(images), add_special_tokens=False,
                     return_image_mask=False)["input_ids"]
    bos = processor.tokenizer.bos_token_id
    return [np.asarray(([bos] if bos is not None else []) + list(r), np.int64) for r in rows]


def answer_ids(processor, texts: Sequence[str]) -> list[np.ndarray]:
    """The answer's ids, ``<eos>``-terminated."""
    tok = processor.tokenizer
    if tok.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token: a reader must know where its answer ends")
    enc = tok(list(texts), add_special_tokens=False)["input_ids"]
    return [np.asarray(list(e) + [tok.eos_token_id], np.int64) for e in enc]


def training_batch(processor, images: Sequence, texts: Sequence[str], prompt: str = PROMPT) -> dict:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 outside the answers), ``(B, L)`` tensors."""
    rows, labels = [], []
    for p, a in zip(prompt_ids(processor, images, prompt), answer_ids(processor, texts)):
        rows.append(np.concatenate([p, a]))
        labels.append(np.concatenate([np.full(len(p), -100), a]))
    L = max(len(r) for r in rows)
    pad = processor.tokenizer.pad_token_id
    return {"input_ids": torch.from_numpy(pad_rows(rows, pad, L)),
            "attention_mask": torch.from_numpy(pad_rows([np.ones(len(r), np.int64) for r in rows], 0, L)),
            "labels": torch.from_numpy(pad_rows(labels, -100, L))}


@torch.no_grad()
def read(model, processor, images: Sequence, *, prompt: str = PROMPT, max_new_tokens: int = 32, batch_size: int = 16,
         return_scores: bool = False) -> list:
    """Greedy-decode the text in each image. Returns strings, or with ``return_scores`` dicts
    ``{"text", "mean_logprob", "tokens"}`` (mean log-probability of the generated tokens, a confidence).

    Prompts are grouped by length (left-padded within a group), so few pad tokens enter any batch."""
    model.eval()
    tok = processor.tokenizer
    prompts = prompt_ids(processor, images, prompt)
    order = np.argsort([len(p) for p in prompts], kind="stable")
    out: list = [None] * len(prompts)
    device = next(model.parameters()).device
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        rows = [prompts[i] for i in idx]
        L = max(len(r) for r in rows)
        ids = torch.from_numpy(pad_rows(rows, tok.pad_token_id, L, left=True)).to(device)
        mask = torch.from_numpy(pad_rows([np.ones(len(r), np.int64) for r in rows], 0, L, left=True)).to(device)
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                             return_dict_in_generate=True, output_scores=return_scores)
        new = gen.sequences[:, L:]
        logp = model.compute_transition_scores(gen.sequences, gen.scores, normalize_logits=True) \
            if return_scores else None
        for k, i in enumerate(idx):
            row = new[k].tolist()
            n = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
            text = tok.decode(row[:n], skip_special_tokens=True)
            if return_scores:
                lp = logp[k, :n + (n < len(row))].float()
                out[i] = {"text": text, "mean_logprob": float(lp.mean()) if len(lp) else 0.0, "tokens": n}
            else:
                out[i] = text
    return out
