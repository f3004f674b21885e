"""Registration with transformers' Auto classes, done once on ``import pixeltok``.

After it, ``AutoTokenizer.from_pretrained(folder)`` resolves ``PixelTokenizer``/``PixelTokenizerFast`` by the
``tokenizer_class`` in ``tokenizer_config.json`` without ``trust_remote_code``, ``AutoProcessor`` resolves
``PixelTextProcessor``, and ``AutoModel`` resolves the codec model. (PxBy and De-Diffusion register themselves when ``pixeltok.models`` is imported, which this does.)
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
    from .tokenization.processing_pixel_text import PixelTextProcessor

    from transformers import AutoModel, AutoProcessor

    from .compression.model import PixelContextCodecConfig, PixelContextCodecModel
    from .models import dediffusion, pxby  # noqa: F401  (register their configs, models and PxBy's tokenizer)

    AutoConfig.register(PixelContextCodecConfig.model_type, PixelContextCodecConfig, exist_ok=True)
    AutoModel.register(PixelContextCodecConfig, PixelContextCodecModel, exist_ok=True)
    AutoConfig.register(PixelTokenizerConfig.model_type, PixelTokenizerConfig, exist_ok=True)
    AutoTokenizer.register(PixelTokenizerConfig, slow_tokenizer_class=PixelTokenizer,
                           fast_tokenizer_class=PixelTokenizerFast, exist_ok=True)
    # AutoProcessor finds a processor by the class name in processor_config.json among the registered ones
    AutoProcessor.register(PixelTokenizerConfig, PixelTextProcessor, exist_ok=True)
    _done = True
