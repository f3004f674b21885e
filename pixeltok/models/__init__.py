"""Model families of pixeltok (importing a family registers it with transformers' Auto classes)."""

from .pxby import PxByConfig, PxByForCausalLM, PxByModel  # noqa: F401
