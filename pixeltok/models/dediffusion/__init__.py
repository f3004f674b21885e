"""De-Diffusion: an image -> text encoder trained through a frozen pixel-token decoder (config, model, helpers)."""

from .configuration_dediffusion import DeDiffusionConfig
from .modeling_dediffusion import (DeDiffusionEncoder, DeDiffusionOutput, DeDiffusionPreTrainedModel, batch_collapse,
                                   text_repetition, text_token_ids)

__all__ = ["DeDiffusionConfig", "DeDiffusionEncoder", "DeDiffusionOutput", "DeDiffusionPreTrainedModel",
           "batch_collapse", "text_repetition", "text_token_ids"]
