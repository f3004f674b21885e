"""PixelTokenizer: a Hugging Face tokenizer whose text is an image's colours and coordinates.

    >>> import pixeltok
    >>> tok = pixeltok.PixelTokenizer(palette="named128", layout="grouped")
    >>> text = tok.image_to_text("sprite.png")          # 'w16 h16\\nc_black 0_0, 1_0, ...'
    >>> tok.text_to_image(text) == tok.quantize("sprite.png")   # exact inverse (pixel for pixel)

The normal tokenizer API (``tok(text)``, ``decode``, ``batch_decode``, ``pad``, ``save_pretrained``...) works on the
text form; image methods go straight from pixels to ids with numpy, never through text.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import PreTrainedTokenizer

from .palettes import Palette
from .pixel_codec import BOS, EOS, PAD, TOKEN_RE, UNK
from .pixel_image import RESIZE_POLICIES, PixelImageCodec, PixelImageMixin  # noqa: F401  (public from here too)

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}


class PixelTokenizer(PixelImageMixin, PreTrainedTokenizer):
    """Image <-> colour-plus-coordinate tokens, as a ``transformers`` (Python) tokenizer.

    Args:
        palette: ``"named128"``, ``"nes55"``, a learned :class:`Palette` or its dict form.
        layout: ``"grouped"`` (one line per colour listing ``x_y`` pixels), ``"raster"`` (one colour token per pixel,
            rows ended by a newline token) or ``"runs"`` (grouped, horizontal runs as ``x_y+n``).
        max_side: largest width/height representable (sets the coordinate vocabulary).
        resize: what to do with larger images: ``None`` (raise), ``"nearest"``, ``"box"`` or ``"lanczos"``.
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str | None = None, palette: str | dict | Palette = "named128",
                 layout: str = "grouped", max_side: int = 128, resize: str | None = None, **kwargs: Any):
        stored = None
        if vocab_file is not None:  # a saved vocabulary must match the one the settings rebuild
            import json

            with open(vocab_file, encoding="utf-8") as f:
                stored = json.load(f)
        saved = self._init_pixel_state(palette, layout, max_side, resize, vocab=stored)
        if stored is not None and stored != self._pixel_vocab.token_to_id:
            raise ValueError(f"{vocab_file}: vocabulary does not match palette/max_side in tokenizer_config.json")
        for k in ("pad_token", "unk_token", "bos_token", "eos_token"):
            kwargs.pop(k, None)
        kwargs.setdefault("special_tokens_pattern", "bos_eos")
        super().__init__(pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS, **saved, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self._pixel_vocab)

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self._pixel_vocab.token_to_id)
        vocab.update(self.added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return TOKEN_RE.findall(text)

    def _convert_token_to_id(self, token: str) -> int:
        return self._pixel_vocab.token_to_id.get(token, self._pixel_vocab.token_to_id[UNK])

    def _convert_id_to_token(self, index: int) -> str:
        return self._pixel_vocab.tokens[index] if 0 <= index < len(self._pixel_vocab) else UNK

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        import json

        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILES_NAMES["vocab_file"])
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self._pixel_vocab.token_to_id, f, ensure_ascii=False, indent=0)
        return (path,)
