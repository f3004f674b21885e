"""Registration with transformers' Auto classes, done once on ``import pixeltok``.

After it, ``AutoTokenizer.from_pretrained(folder)`` resolves ``PixelTokenizer``/``PixelTokenizerFast`` by the
``tokenizer_class`` in ``tokenizer_config.json`` without ``trust_remote_code``, and ``AutoModel`` resolves the
codec model. (PxBy registers itself in ``pixeltok.models.pxby``.)
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

    from transformers import AutoModel

    from .compression.model import PixelContextCodecConfig, PixelContextCodecModel

    AutoConfig.register(PixelContextCodecConfig.model_type, PixelContextCodecConfig, exist_ok=True)
    AutoModel.register(PixelContextCodecConfig, PixelContextCodecModel, exist_ok=True)
    AutoConfig.register(PixelTokenizerConfig.model_type, PixelTokenizerConfig, exist_ok=True)
    AutoTokenizer.register(PixelTokenizerConfig, slow_tokenizer_class=PixelTokenizer,
                           fast_tokenizer_class=PixelTokenizerFast, exist_ok=True)
    _done = True
