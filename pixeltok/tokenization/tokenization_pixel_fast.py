"""PixelTokenizerFast: the same vocabulary on the Rust ``tokenizers`` library (word-level model), identical ids."""

from __future__ import annotations

from typing import Any

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from .palettes import Palette
from .pixel_codec import BOS, EOS, PAD, TOKEN_PATTERN, UNK, tokens_to_text
from .tokenization_pixel import PixelImageMixin, PixelTokenizer


class PixelTokenizerFast(PixelImageMixin, PreTrainedTokenizerFast):
    """Fast twin of :class:`PixelTokenizer` (same arguments, same ids, same image methods)."""

    slow_tokenizer_class = PixelTokenizer
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, palette: str | dict | Palette = "named128", layout: str = "grouped", max_side: int = 128,
                 resize: str | None = None, **kwargs: Any):
        vocab = kwargs.get("vocab")  # tokenizer.json's word-level vocabulary (restores legacy palette order)
        saved = self._init_pixel_state(palette, layout, max_side, resize, vocab=vocab if isinstance(vocab, dict) else None)
        # The backend is always rebuilt from the settings, so a saved tokenizer.json can never disagree with them.
        for k in ("tokenizer_object", "tokenizer_file", "vocab_file", "vocab", "pad_token", "unk_token", "bos_token", "eos_token"):
            kwargs.pop(k, None)
        backend = Tokenizer(models.WordLevel(dict(self._pixel_vocab.token_to_id), unk_token=UNK))
        # keep every regex match as one word, drop what lies between (spaces)
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(TOKEN_PATTERN), behavior="removed", invert=True)
        # same special-token template as the slow tokenizer's "bos_eos" pattern
        vocab = self._pixel_vocab.token_to_id
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
            special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])])
        kwargs.setdefault("special_tokens_pattern", "bos_eos")
        super().__init__(tokenizer_object=backend, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS,
                         **saved, **kwargs)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return tokens_to_text([str(t) for t in tokens])

    def _decode(self, token_ids, skip_special_tokens: bool = False, **kwargs) -> str:
        # WordLevel has no decoder: join tokens with the pixel-text spacing rules for an exact round trip.
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        toks = self.convert_ids_to_tokens(list(token_ids), skip_special_tokens=skip_special_tokens)
        return tokens_to_text([str(t) for t in toks])


# Saved folders carry the code (auto_map), so a process without pixeltok can load them with trust_remote_code=True.
PixelTokenizer.register_for_auto_class("AutoTokenizer")
PixelTokenizerFast.register_for_auto_class("AutoTokenizer")
