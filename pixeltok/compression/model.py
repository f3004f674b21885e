"""The codec's probability model: a causal-neighbourhood pixel model (a transformers ``PreTrainedModel``).

Why not a plain ImageGPT? On the CPU the codec must run on, ImageGPT pays one transformer step per sub-pixel
(3072 sequential steps per 32x32 tile, each reading a growing KV cache); the probe in the model card measured
it at well under one tile/s to decode. This model instead predicts each pixel from its *causal neighbourhood*
(the rows above and the pixels to the left, inside the tile) with a residual MLP, and each of the pixel's three
sub-pixels R, G, B with its own head that also sees the sub-pixels already coded (interleaved RGB order), as a
mixture of discretized logistics (PixelCNN++). Because a pixel only needs pixels ``dx <= context_right`` to the
right in the row above, all pixels on the line ``x + (context_right + 1) * y = t`` can be decoded at once
("wavefront" order): 156 steps x 3 sub-steps per 32x32 tile, batched over any number of tiles.

Exactness: :meth:`PixelContextCodecModel.exact_params` evaluates the same network with integer weights and
integer activations held in float64. Every product and partial sum is an integer below 2**53, so the result is
exactly the same for any batch size, thread count or BLAS summation order: the encoder and decoder get
bit-identical distribution parameters (see ``pixeltok.compression.coder`` for the rest of the exact pipeline).

Shapes: ``pixel_values`` is ``(B, H, W, 3)`` integer in ``[0, 255]``; features are ``(N, num_context * 4)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(__file__), "checkpoints", "default")
DEFAULT_MODEL_NAME = "pixeltok/codec-default"


class PixelContextCodecConfig(PreTrainedConfig):
    """Hyper-parameters of :class:`PixelContextCodecModel` (all of them: the recipe writes nothing else).

    Context (in pixels, inside the tile only; outside the tile is zero with a 0 mask flag):
    ``context_rows`` rows above with ``dx in [-context_left, context_right]``, and in the current row
    ``dx in [-context_left_current, -1]``. ``exact_frac_bits`` / ``exact_weight_bits`` / ``exact_clamp_bits``
    fix the integer inference grid (activations are multiples of ``2**-exact_frac_bits``).
    """

    model_type = "pixeltok_context_codec"

    def __init__(
        self,
        context_rows: int = 3,
        context_left: int = 4,
        context_right: int = 3,
        context_left_current: int = 5,
        hidden_size: int = 256,
        num_hidden_layers: int = 3,
        head_hidden_size: int = 128,
        num_mixtures: int = 6,
        min_log_scale: float = -7.0,
        token_order: str = "wavefront-rgb-interleaved",
        exact_frac_bits: int = 14,
        exact_weight_bits: int = 20,
        exact_clamp_bits: int = 22,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.context_rows = context_rows
        self.context_left = context_left
        self.context_right = context_right
        self.context_left_current = context_left_current
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.head_hidden_size = head_hidden_size
        self.num_mixtures = num_mixtures
        self.min_log_scale = min_log_scale
        self.token_order = token_order
        self.exact_frac_bits = exact_frac_bits
        self.exact_weight_bits = exact_weight_bits
        self.exact_clamp_bits = exact_clamp_bits
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def offsets(self) -> list[tuple[int, int]]:
        """Causal neighbourhood as ``(dy, dx)`` pairs, in feature order."""
        offs = [(dy, dx) for dy in range(-self.context_rows, 0) for dx in range(-self.context_left, self.context_right + 1)]
        offs += [(0, dx) for dx in range(-self.context_left_current, 0)]
        return offs

    @property
    def wavefront_slope(self) -> int:
        """Pixels with equal ``x + slope * y`` are conditionally independent given earlier ones."""
        return self.context_right + 1


@dataclass
class PixelContextCodecOutput(ModelOutput):
    loss: torch.Tensor | None = None
    params: torch.Tensor | None = None  # (B, H, W, 3, 3, K): channel, (logit_pi, mu, log_s), mixture


def pixels_to_unit(v: torch.Tensor) -> torch.Tensor:
    """uint8 level ``v`` -> ``(2v - 255) / 256`` in (-1, 1): exactly representable, bin half-width 1/256."""
    return (2.0 * v.to(torch.float64 if v.dtype == torch.float64 else torch.float32) - 255.0) / 256.0


def discretized_logistic_mixture_nll(x: torch.Tensor, logit_pi, mu, log_s) -> torch.Tensor:
    """Negative log-likelihood (nats) of ``x`` (unit scale, any shape S) under a K-mixture, params ``S + (K,)``."""
    x = x.unsqueeze(-1)
    inv_s = torch.exp(-log_s)
    centered = x - mu
    plus_in = inv_s * (centered + 1.0 / 256)
    min_in = inv_s * (centered - 1.0 / 256)
    log_cdf_plus = plus_in - F.softplus(plus_in)  # log sigma(plus_in): used for the 0 bin
    log_one_minus_cdf_min = -F.softplus(min_in)  # log (1 - sigma(min_in)): used for the 255 bin
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    mid_in = inv_s * centered
    log_pdf_mid = mid_in - log_s - 2.0 * F.softplus(mid_in) + math.log(2.0 / 256)  # tiny-bin fallback
    inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid)
    log_probs = torch.where(x < -0.99, log_cdf_plus, torch.where(x > 0.99, log_one_minus_cdf_min, inner))
    return -torch.logsumexp(log_probs + F.log_softmax(logit_pi, dim=-1), dim=-1)


class PixelContextCodecPreTrainedModel(PreTrainedModel):
    config_class = PixelContextCodecConfig
    base_model_prefix = "codec"
    main_input_name = "pixel_values"

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def init_skip_predictor(self):
        """Start the linear skip from a sane classical predictor, so training starts from a working codec.

        R: mean of the left and upper R. G: the coded R plus the mean (G - R) of the left and upper neighbours;
        B likewise from G (the colour-difference predictor of lossless codecs: near-grey content makes G and B almost
        free). Scales: log_s <- -3 (about 3 levels); mixture logits <- 0.
        """
        c = self.config
        offs = c.offsets
        left, up = offs.index((0, -1)), offs.index((-1, 0))
        n_in = len(offs) * 4
        K = c.num_mixtures
        with torch.no_grad():
            for ch, lin in enumerate(self.head_skip):
                lin.weight.zero_()
                lin.bias.zero_()
                mu = lin.weight[K:2 * K]
                mu[:, left * 4 + ch] += 0.5
                mu[:, up * 4 + ch] += 0.5
                if ch > 0:  # + x_{ch-1} - mean of the neighbours' channel ch-1
                    mu[:, n_in + ch - 1] += 1.0
                    mu[:, left * 4 + ch - 1] -= 0.5
                    mu[:, up * 4 + ch - 1] -= 0.5
                lin.bias[2 * K:] = -3.0


class PixelContextCodecModel(PixelContextCodecPreTrainedModel):
    """Residual MLP over the causal neighbourhood + three autoregressive sub-pixel heads (R; G|R; B|R,G)."""

    def __init__(self, config: PixelContextCodecConfig):
        super().__init__(config)
        n_in = len(config.offsets) * 4
        self.input_proj = nn.Linear(n_in, config.hidden_size)
        self.blocks = nn.ModuleList(nn.Linear(config.hidden_size, config.hidden_size) for _ in range(config.num_hidden_layers))
        # head c sees the trunk state and the c sub-pixels of this pixel already coded
        self.head_in = nn.ModuleList(nn.Linear(config.hidden_size + c, config.head_hidden_size) for c in range(3))
        self.head_out = nn.ModuleList(nn.Linear(config.head_hidden_size, 3 * config.num_mixtures) for _ in range(3))
        # linear skip from the raw neighbourhood (+ coded sub-pixels) to the mixture params: a learnable linear
        # predictor, initialised to "mean of the left and upper neighbour", so training starts from a sane codec
        self.head_skip = nn.ModuleList(nn.Linear(n_in + c, 3 * config.num_mixtures) for c in range(3))
        self._exact = None  # cached integer weights, see exact_params
        self.post_init()
        self.init_skip_predictor()

    # ---- features -------------------------------------------------------------------------------------------
    def pad_canvas(self, pixels: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``(B, H, W, 3)`` levels -> ``(B, H + rows, W + left + right, 4)`` unit values + in-tile flag.

        Unit values are multiples of 2**-8 in (-1, 1), exact in float32 as well as float64."""
        c = self.config
        left = max(c.context_left, c.context_left_current)
        b, h, w, _ = pixels.shape
        canvas = torch.zeros(b, h + c.context_rows, w + left + c.context_right, 4, dtype=dtype, device=pixels.device)
        canvas[:, c.context_rows:, left:left + w, :3] = ((2.0 * pixels.to(dtype) - 255.0) / 256.0)
        canvas[:, c.context_rows:, left:left + w, 3] = 1.0
        return canvas

    def gather_context(self, canvas: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Features of pixels ``(ys, xs)`` (1-D, same for every tile) -> ``(B, n, num_context * 4)``."""
        c = self.config
        left = max(c.context_left, c.context_left_current)
        offs = torch.tensor(c.offsets)
        yy = ys[:, None] + offs[None, :, 0] + c.context_rows
        xx = xs[:, None] + offs[None, :, 1] + left
        return canvas[:, yy, xx, :].reshape(canvas.shape[0], len(ys), -1)

    def all_positions(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        return ys.reshape(-1), xs.reshape(-1)

    # ---- float path (training) ----------------------------------------------------------------------------
    def trunk(self, feats: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.input_proj(feats))
        for blk in self.blocks:
            h = h + F.relu(blk(h))
        return h

    @staticmethod
    def _linear_with_prev(lin: nn.Linear, x: torch.Tensor, prev: torch.Tensor, c: int) -> torch.Tensor:
        """``lin(cat([x, prev[..., :c]]))`` without materialising the concatenation (training-speed only)."""
        n = x.shape[-1]
        out = F.linear(x, lin.weight[:, :n], lin.bias)
        for j in range(c):
            out = out + prev[..., j:j + 1] * lin.weight[:, n + j]
        return out

    def head(self, c: int, h: torch.Tensor, feats: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Mixture params ``(..., 3, K)`` for sub-pixel ``c`` given trunk state, raw features and the ``c`` previous unit values."""
        g = F.relu(self._linear_with_prev(self.head_in[c], h, prev, c))
        # the output layer and the linear skip predictor always run in float32, even under bf16 autocast: mu
        # needs a resolution well below one level (2/256), which bfloat16's 8-bit mantissa does not give
        with torch.autocast(device_type=g.device.type, enabled=False):
            feats, prev = feats.float(), prev.float()
            out = self.head_out[c](g.float()) + self._linear_with_prev(self.head_skip[c], feats, prev, c)
        out = out.unflatten(-1, (3, self.config.num_mixtures))
        return torch.stack([out[..., 0, :], out[..., 1, :], out[..., 2, :].clamp_min(self.config.min_log_scale)], dim=-2)

    def forward(self, pixel_values: torch.Tensor, return_params: bool = False, reduction: str = "mean", **kwargs) -> PixelContextCodecOutput:
        """Teacher-forced pass over whole tiles; ``loss`` is the NLL in **bits per sub-pixel** (mean, or ``(B,)``
        per tile with ``reduction="none"``)."""
        b, h, w, _ = pixel_values.shape
        canvas = self.pad_canvas(pixel_values, dtype=self.input_proj.weight.dtype)
        ys, xs = self.all_positions(h, w)
        feats = self.gather_context(canvas, ys, xs)
        hid = self.trunk(feats)  # (B, HW, D)
        x = pixels_to_unit(pixel_values).reshape(b, h * w, 3).to(self.input_proj.weight.dtype)
        params = torch.stack([self.head(c, hid, feats, x) for c in range(3)], dim=2)  # (B, HW, 3, 3, K)
        nll = discretized_logistic_mixture_nll(x, params[..., 0, :], params[..., 1, :], params[..., 2, :])
        loss = (nll.mean() if reduction == "mean" else nll.mean(dim=(1, 2))) / math.log(2.0)
        return PixelContextCodecOutput(loss=loss, params=params.reshape(b, h, w, 3, 3, -1) if return_params else None)

    # ---- exact integer path (coding) ----------------------------------------------------------------------
    def _exact_weights(self):
        """Integer copies of every Linear: ``W = Wq * 2**-e`` per output row, ``b = Bq * 2**-frac``."""
        if self._exact is None:
            c = self.config

            def q(lin: nn.Linear):
                w = lin.weight.detach().to(torch.float64)
                amax = w.abs().amax(dim=1).clamp_min(1e-30)
                e = torch.floor(c.exact_weight_bits - 1 - torch.log2(amax)).clamp(max=60)
                wq = torch.round(w * torch.exp2(e)[:, None])
                bq = torch.round(lin.bias.detach().to(torch.float64) * 2.0 ** c.exact_frac_bits)
                return wq.t().contiguous(), torch.exp2(-e), bq

            self._exact = {
                "input_proj": q(self.input_proj),
                "blocks": [q(b) for b in self.blocks],
                "head_in": [q(m) for m in self.head_in],
                "head_out": [q(m) for m in self.head_out],
                "head_skip": [q(m) for m in self.head_skip],
            }
        return self._exact

    def _exact_linear(self, a: torch.Tensor, qw) -> torch.Tensor:
        wq_t, inv_scale, bq = qw
        z = a @ wq_t  # integers < 2**53: exact whatever the summation order
        lim = 2.0 ** self.config.exact_clamp_bits
        # in place, same operations in the same order as floor(z * inv_scale) + bq, clamped (one buffer, not four)
        return z.mul_(inv_scale).floor_().add_(bq).clamp_(-lim, lim)

    def exact_trunk(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats`` ``(N, F)`` unit-scale (exact multiples of 2**-8) -> (integer features, integer trunk state), scale 2**frac."""
        a = torch.round(feats.to(torch.float64) * 2.0 ** self.config.exact_frac_bits)
        return a, self.exact_trunk_int(a)

    def exact_trunk_int(self, a: torch.Tensor) -> torch.Tensor:
        """Integer features ``a`` ``(N, F)`` float64 (already on the 2**-frac grid: ``(2v - 255) * 64`` and
        ``2**14`` for an in-image flag) -> integer trunk state ``(N, hidden)``. Row blocks of 2048 keep the
        activations in cache; every row is computed independently, so the result does not depend on it."""
        ew = self._exact_weights()
        if a.shape[0] > 2048:
            return torch.cat([self.exact_trunk_int(a[s:s + 2048]) for s in range(0, a.shape[0], 2048)])
        h = self._exact_linear(a, ew["input_proj"]).relu_()
        for qb in ew["blocks"]:
            h += self._exact_linear(h, qb).relu_()
        return h

    def exact_head(self, c: int, a_int: torch.Tensor, h_int: torch.Tensor, prev_levels: torch.Tensor) -> np.ndarray:
        """Exact mixture params ``(N, 3, K)`` float64 for sub-pixel ``c``; ``prev_levels`` ``(N, >=c)`` levels."""
        ew = self._exact_weights()
        frac = self.config.exact_frac_bits
        prev = torch.round(pixels_to_unit(prev_levels[:, :c].to(torch.float64)) * 2.0 ** frac)
        g = F.relu(self._exact_linear(torch.cat([h_int, prev], dim=-1), ew["head_in"][c]))
        out = self._exact_linear(g, ew["head_out"][c]) + self._exact_linear(torch.cat([a_int, prev], dim=-1), ew["head_skip"][c])
        out = out / 2.0 ** frac
        out = out.unflatten(-1, (3, self.config.num_mixtures))
        out[:, 2, :] = out[:, 2, :].clamp_min(self.config.min_log_scale)
        return out.numpy()


def weights_sha256(model: PixelContextCodecModel) -> str:
    """SHA-256 over (name, dtype, shape, little-endian bytes) of every parameter, sorted by name.

    Computed from the tensors, not the file, so a model built in memory has an identity too.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        arr = t.detach().cpu().contiguous().numpy()
        h.update(json.dumps([name, str(arr.dtype), list(arr.shape)]).encode())
        h.update(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _no_loading_bar():
    """Silence transformers' "Loading weights" bar for one load (a library call should print nothing), restoring
    the caller's settings after. A tqdm hook (transformers >= 5) touches only transformers' bars, not the Hub's."""
    from transformers.utils import logging as hf_logging

    if hasattr(hf_logging, "set_tqdm_hook"):
        previous = hf_logging.set_tqdm_hook(lambda factory, args, kwargs: hf_logging.EmptyTqdm(*args, **kwargs))
        try:
            yield
        finally:
            hf_logging.set_tqdm_hook(previous)
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def load_codec_model(name_or_path: str | os.PathLike | None = None, *,
                     progress: bool = False) -> PixelContextCodecModel:
    """Load a codec model (default: the checkpoint shipped in the package) in eval mode, float32, CPU.

    Silent unless ``progress``: transformers' "Loading weights" bar is switched off for the load."""
    path = str(name_or_path) if name_or_path is not None else DEFAULT_CHECKPOINT
    if name_or_path is None and not os.path.isfile(os.path.join(path, "model.safetensors")):
        raise FileNotFoundError(f"the shipped codec checkpoint is missing: {path}/model.safetensors")
    with contextlib.nullcontext() if progress else _no_loading_bar():
        model = PixelContextCodecModel.from_pretrained(path)
    model.eval()
    if name_or_path is None:
        model.codec_name = DEFAULT_MODEL_NAME
    return model


def model_name(model: PixelContextCodecModel) -> str:
    """Human-readable identity written into the header (the SHA-256 is what is checked)."""
    name = getattr(model, "codec_name", None) or getattr(model, "name_or_path", "") or "unnamed"
    return os.path.basename(os.path.normpath(name)) if os.path.isdir(str(name)) else str(name)
