"""A byte-level BPE text tokenizer trained here, on local text, with ``tokenizers`` (no download).

``phrases=True`` trains without splitting at spaces (only after ``", "``), so frequent multi-word phrases become
single tokens (a caption grammar's ``"a large red circle top left, "`` is one or two tokens): a text of K tokens then says as much as the grammar
needs, which is what a De-Diffusion encoder writing K tokens wants. ``phrases=False`` is GPT-2's word-level
pre-tokenization.

    >>> tok = train_bpe_tokenizer(captions, vocab_size=1024)
    >>> tok("a large red circle top left, on white")["input_ids"]
"""

from __future__ import annotations

from typing import Iterable


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1024, *, phrases: bool = True,
                        min_frequency: int = 2):
    """Train a byte-level BPE on ``texts``; returns a ``PreTrainedTokenizerFast`` with ``<pad>``, ``</s>`` (eos)
    and ``<unk>``. Deterministic: the same texts and options give the same vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not isinstance(vocab_size, int) or not 260 <= vocab_size <= 1 << 20:
        raise ValueError(f"vocab_size must be an int in 260..1048576 (256 bytes + specials + merges), got {vocab_size!r}")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not phrases)
    # phrases: a token may span words but not a clause (", " ends one), so tokens compose as the grammar does
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(", ", "merged_with_previous"), byte_level]) \
        if phrases else byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


__all__ = ["train_bpe_tokenizer"]
