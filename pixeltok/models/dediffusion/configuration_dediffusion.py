"""Configuration of the De-Diffusion image -> text encoder (Wei et al., CVPR 2024)."""

from __future__ import annotations

import math

from transformers import AutoConfig, PretrainedConfig


class DeDiffusionConfig(PretrainedConfig):
    r"""Every hyper-parameter of :class:`~pixeltok.models.dediffusion.DeDiffusionEncoder`.

    Args:
        image_height, image_width: the encoder's input size in px (images are fitted to it, see ``preprocess``).
        num_channels: 3 (RGB).
        patch_size: side of the square patches of the trunk's patch embedding (the sides must be multiples of it).
        hidden_size, intermediate_size, num_attention_heads: width of the trunk and the pooler.
        num_trunk_layers: transformer layers over the patches (the paper's image backbone, here small and trained).
        num_queries: K, the number of text tokens written per image (the paper compares 5, 15 and 75).
        num_pooler_layers: attention-pooler layers (queries attend to each other and to the patches; paper: 5).
        text_token_ids: the decoder-vocabulary ids the encoder may write (its TEXT tokens: no pixel or special
            tokens); the encoder's logits are over these, in this order.
        decoder_vocab_size: the frozen decoder's vocabulary size (for checks).
        tau_start, tau_end, tau_decay_steps: the Gumbel-softmax temperature, annealed from ``tau_start`` to
            ``tau_end`` over ``tau_decay_steps`` optimizer steps (``tau_schedule``: "cosine" or "exponential"), then
            held; the paper anneals without publishing the schedule.
        hard: straight-through hard Gumbel-softmax (the decoder sees real tokens) or the soft relaxation.
        query_init_std: standard deviation of the K learned queries at initialisation. Large (1.0) makes the K
            positions distinct from the start but lets the queries, not the image, set the tokens; small (the
            ``initializer_range``) leaves the first tokens to what the queries read from the patches.
        fit: how ``preprocess`` sizes an image: "resize" (to exactly height x width) or "line" (to the height,
            aspect kept, then padded on the right with the border colour: one line of text).
    """

    model_type = "dediffusion"

    def __init__(self, image_height: int = 24, image_width: int = 24, num_channels: int = 3, patch_size: int = 4,
                 hidden_size: int = 128, intermediate_size: int = 256, num_attention_heads: int = 4,
                 num_trunk_layers: int = 2, num_queries: int = 15, num_pooler_layers: int = 2,
                 text_token_ids: list[int] | None = None, decoder_vocab_size: int | None = None,
                 tau_start: float = 1.0, tau_end: float = 0.1, tau_decay_steps: int = 2000,
                 tau_schedule: str = "cosine", hard: bool = True, fit: str = "resize", dropout: float = 0.0,
                 initializer_range: float = 0.02, query_init_std: float = 1.0, **kwargs):
        if image_height % patch_size or image_width % patch_size:
            raise ValueError(f"image_height ({image_height}) and image_width ({image_width}) must be multiples of "
                             f"patch_size ({patch_size})")
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of num_attention_heads "
                             f"({num_attention_heads})")
        if not (isinstance(num_queries, int) and num_queries >= 1):
            raise ValueError(f"num_queries must be an int >= 1, got {num_queries!r}")
        if tau_schedule not in ("cosine", "exponential"):
            raise ValueError(f"tau_schedule must be 'cosine' or 'exponential', got {tau_schedule!r}")
        if not 0 < tau_end <= tau_start:
            raise ValueError(f"need 0 < tau_end <= tau_start, got {tau_end} and {tau_start}")
        if fit not in ("resize", "line"):
            raise ValueError(f"fit must be 'resize' or 'line', got {fit!r}")
        self.image_height, self.image_width, self.num_channels = image_height, image_width, num_channels
        self.patch_size, self.hidden_size, self.intermediate_size = patch_size, hidden_size, intermediate_size
        self.num_attention_heads, self.num_trunk_layers = num_attention_heads, num_trunk_layers
        self.num_queries, self.num_pooler_layers = num_queries, num_pooler_layers
        self.text_token_ids = list(text_token_ids) if text_token_ids is not None else []
        self.decoder_vocab_size = decoder_vocab_size
        self.tau_start, self.tau_end, self.tau_decay_steps = float(tau_start), float(tau_end), int(tau_decay_steps)
        self.tau_schedule, self.hard, self.fit, self.dropout = tau_schedule, bool(hard), fit, dropout
        if not query_init_std > 0:
            raise ValueError(f"query_init_std must be > 0, got {query_init_std!r}")
        self.initializer_range, self.query_init_std = initializer_range, float(query_init_std)
        super().__init__(**kwargs)

    def gumbel_temperature(self, step: int) -> float:
        """The Gumbel-softmax temperature at optimizer step ``step``."""
        p = min(max(step, 0) / max(self.tau_decay_steps, 1), 1.0)
        if self.tau_schedule == "exponential":
            return self.tau_start * (self.tau_end / self.tau_start) ** p
        return self.tau_end + (self.tau_start - self.tau_end) * 0.5 * (1 + math.cos(math.pi * p))


if __name__.startswith("pixeltok."):
    AutoConfig.register("dediffusion", DeDiffusionConfig, exist_ok=True)
