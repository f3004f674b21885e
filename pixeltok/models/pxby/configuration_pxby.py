"""Configuration of PxBy, the PixelBytes model family (Furfaro 2024): 3x3-window embedding + LSTM/Transformer/Mamba."""

from transformers import AutoConfig, PretrainedConfig

BACKBONES = ("lstm", "transformer", "mamba")
EMBEDDINGS = ("pxby", "center")


class PxByConfig(PretrainedConfig):
    r"""Every hyper-parameter of a PxBy model.

    Args:
        vocab_size: ids of the unified byte + palette vocabulary (157 for ``PixelBytesTokenizer("nes55")``).
        hidden_size: ``D``, the width the embedding produces (81 in the paper).
        embedding_type: ``"pxby"`` (3x3 window of ids, paper) or ``"center"`` (only the current token; baseline).
        embed_dim: ``E``, per-cell embedding width of the window; ``None`` -> ``max(9, D // 9)``.
        use_conv: mix the 3x3 cells with ``Conv2d(E, E, kernel_size)`` (blend ``sigmoid(alpha)``), ``False`` = no mixing.
        kernel_size: the window mixing convolution's kernel (odd, 1 or 3; the window itself is always 3x3).
        backbone: ``"lstm"``, ``"transformer"`` or ``"mamba"``.
        bidirectional: LSTM only. Each layer adds the backward half of ``nn.LSTM(bidirectional=True)`` as the
            reference reads it: run over the known context ``x[:t+1]``, output taken at the last position ``t``, where
            the backward pass has seen only ``x[t]`` -> one LSTM step from a zero state (no recurrent weights, no
            forget gate: they multiply zeros). Causal, cacheable, every parameter trained.
        num_hidden_layers: backbone layers.
        state_size: LSTM hidden size per direction; Mamba SSM state size ``N``. Unused by the transformer.
        intermediate_size: transformer feed-forward width. Unused otherwise.
        num_attention_heads: transformer heads (must divide ``hidden_size``).
        mamba_expand, mamba_conv_kernel: Mamba inner width factor and causal conv width.
        mamba_use_mambapy: without the CUDA kernels, scan full sequences with ``mambapy``'s parallel scan when that
            package is installed (transformers' sequential fallback has an O(L^2) backward on CPU).
        max_position_embeddings: informative longest sequence (positions are sinusoidal, no table is learned).
        dropout: after the embedding and between backbone layers (and inside transformer blocks).
        layer_norm_eps, initializer_range: numerical details.
        pad/bos/eos_token_id, row_token_id (``\t``), segment_token_id (``\n``), first_color_id, num_colors: the
            vocabulary layout the model needs to build windows (colour ids are ``[first_color_id, +num_colors)``).
    """

    model_type = "pxby"

    vocab_size: int = 157
    hidden_size: int = 81
    embedding_type: str = "pxby"
    embed_dim: int | None = None
    use_conv: bool = True
    kernel_size: int = 3
    backbone: str = "lstm"
    bidirectional: bool = False
    num_hidden_layers: int = 2
    state_size: int = 32
    intermediate_size: int = 128
    num_attention_heads: int = 3
    mamba_expand: int = 2
    mamba_conv_kernel: int = 4
    mamba_use_mambapy: bool = True
    max_position_embeddings: int = 4096
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    row_token_id: int = 4
    segment_token_id: int = 5
    first_color_id: int = 101
    num_colors: int = 56
    use_cache: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if self.embed_dim is None:
            self.embed_dim = max(9, self.hidden_size // 9)
        super().__post_init__(**kwargs)
        self._check()

    def _check(self):
        def bad(field, value, why):
            raise ValueError(f"PxByConfig.{field}={value!r}: {why}")

        if self.backbone not in BACKBONES:
            bad("backbone", self.backbone, f"must be one of {BACKBONES}")
        if self.embedding_type not in EMBEDDINGS:
            bad("embedding_type", self.embedding_type, f"must be one of {EMBEDDINGS}")
        if self.bidirectional and self.backbone != "lstm":
            bad("bidirectional", self.bidirectional, f"only meaningful for backbone='lstm' (got backbone={self.backbone!r})")
        if self.kernel_size not in (1, 3):
            bad("kernel_size", self.kernel_size, "the window is 3x3, so the mixing kernel must be 1 or 3")
        for f in ("vocab_size", "hidden_size", "embed_dim", "num_hidden_layers", "state_size", "intermediate_size",
                  "num_attention_heads", "mamba_expand", "mamba_conv_kernel", "num_colors"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
                bad(f, getattr(self, f), "must be a positive int")
        if self.backbone == "transformer" and self.hidden_size % self.num_attention_heads:
            bad("num_attention_heads", self.num_attention_heads, f"must divide hidden_size={self.hidden_size}")
        if not 0.0 <= self.dropout < 1.0:
            bad("dropout", self.dropout, "must be in [0, 1)")
        if self.first_color_id + self.num_colors > self.vocab_size:
            bad("num_colors", self.num_colors, f"colour ids [{self.first_color_id}, {self.first_color_id + self.num_colors}) exceed vocab_size={self.vocab_size}")
        for f in ("pad_token_id", "bos_token_id", "eos_token_id", "row_token_id", "segment_token_id"):
            v = getattr(self, f)
            if v is not None and not 0 <= v < self.vocab_size:
                bad(f, v, f"outside [0, vocab_size={self.vocab_size})")


# registration at import of the package module (not of a trust_remote_code copy); exist_ok makes it idempotent
if __name__.startswith("pixeltok."):
    AutoConfig.register("pxby", PxByConfig, exist_ok=True)
