"""Registration with transformers' Auto classes, done once on ``import pixeltok``.

After it, ``AutoTokenizer.from_pretrained(folder)`` resolves ``PixelTokenizer``/``PixelTokenizerFast`` by the
``tokenizer_class`` in ``tokenizer_config.json`` without ``trust_remote_code``.
"""

from transformers import AutoConfig, AutoTokenizer, PretrainedConfig


class PixelTokenizerConfig(PretrainedConfig):
    """Placeholder config that anchors the pixel tokenizers in transformers' tokenizer registry (no model)."""

    model_type = "pixel_tokenizer"


_done = False


def register_all() -> None:
    global _done
    if _done:
        return
    from .tokenization import PixelTokenizer, PixelTokenizerFast

    AutoConfig.register(PixelTokenizerConfig.model_type, PixelTokenizerConfig, exist_ok=True)
    AutoTokenizer.register(PixelTokenizerConfig, slow_tokenizer_class=PixelTokenizer,
                           fast_tokenizer_class=PixelTokenizerFast, exist_ok=True)
    _done = True
