"""Model families of pixeltok (importing a family registers it with transformers' Auto classes)."""

from .dediffusion import DeDiffusionConfig, DeDiffusionEncoder  # noqa: F401
from .pxby import PxByConfig, PxByForCausalLM, PxByModel  # noqa: F401
