"""De-Diffusion: an image -> text encoder trained through a frozen pixel-token decoder (config, model, helpers)."""

from .configuration_dediffusion import DeDiffusionConfig
from .modeling_dediffusion import DeDiffusionEncoder, DeDiffusionOutput, DeDiffusionPreTrainedModel, text_token_ids

__all__ = ["DeDiffusionConfig", "DeDiffusionEncoder", "DeDiffusionOutput", "DeDiffusionPreTrainedModel",
           "text_token_ids"]
