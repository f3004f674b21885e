"""PxBy: the PixelBytes unified text + pixel model family (config, models, and its tokenizer's registration)."""

from .configuration_pxby import PxByConfig
from .modeling_pxby import PxByCache, PxByEmbed, PxByForCausalLM, PxByModel, PxByPreTrainedModel, WindowState

from pixeltok.tokenization.pixelbytes import PixelBytesTokenizer  # noqa: E402  (registers AutoTokenizer for PxByConfig)

__all__ = ["PxByConfig", "PxByCache", "PxByEmbed", "PxByModel", "PxByForCausalLM", "PxByPreTrainedModel",
           "WindowState", "PixelBytesTokenizer"]
