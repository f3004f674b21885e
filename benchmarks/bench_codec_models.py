"""Which codec model, and which sub-pixel order, compresses better for the same CPU training budget?

    OMP_NUM_THREADS=2 python benchmarks/bench_codec_models.py --minutes 12 --threads 2 \
        --wallpaper_dir /tmp/wall/x/usr/share/wallpapers --backgrounds_dir /tmp/wall/x/usr/share/backgrounds \
        --out bench_codec_models.json

Variants (each trained for the same wall-clock budget, same seed, on the same training tiles drawn in the same
order, then scored on the same held-out tiles):

- ``context-interleaved``: :class:`PixelContextCodecModel` exactly as shipped (R, G|R, B|R,G per pixel; config =
  the ``model:`` section of ``recipes/configs/codec_default.yaml``, overridable with ``--set context.KEY=VALUE``).
- ``context-channel-major``: :class:`ChannelMajorContextModel` below, the same trunk width/depth and mixture heads,
  but the tile is coded plane by plane (all R, then all G, then all B). Plane ``c`` sees the causal neighbourhood of
  channel ``c`` (same offsets) plus, for each plane ``< c``, a *full* window around the pixel (the causal offsets and
  a ``(2r+1)^2`` square including the pixel itself): the extra information channel-major order gives, paid for by
  seeing nothing of the later planes' causal neighbourhood (plane R is coded without any G or B context).
- ``imagegpt-interleaved``: ``transformers.ImageGPTForCausalImageModeling`` over the 3072 sub-pixel tokens of a
  tile in raster order (R, G, B per pixel), raw 8-bit values as ids, ``vocab_size = 257`` (256 values + the start
  token 256, the first id), ``n_positions = 3073``; a softmax over 256 values per token.
- ``pxby-interleaved``: the project's PxBy (:class:`PxByModel`: ``PxByEmbed`` 3x3 window embedding with conv mixing +
  projection, then the backbone; default a unidirectional 2-layer LSTM, ``--set pxby.KEY=VALUE`` for any
  ``PxByConfig`` field but the vocabulary layout, e.g. ``pxby.state_size=256``, ``pxby.backbone=transformer``) over
  the same 3072 sub-pixels in the same order, + a 256-way softmax head (:class:`PxBySubpixelModel`). The windows
  come from PxBy's own ``build_windows``, adapted only through ``PxByConfig``'s vocabulary layout: every sub-pixel
  is a "colour" id (``pxby.channel_ids=true``: one id range per channel, since the LSTM has no position input to
  tell it which channel comes next) and a ROW token follows each tile row, so a tile row is a 96-wide pixel row and
  the window of the sub-pixel just coded holds its left neighbour and the three above it in the 96-wide grid (0 =
  ``<pad>`` where not available); as in PxBy, the output at a position predicts the next token, so every
  prediction sees coded sub-pixels only (``tests/test_bench_codec_models.py`` checks it). The 31 ROW tokens cost
  decode steps too: ``32 * 97 - 1 = 3103`` sequential steps per tile.

Reported per variant: held-out **bits per sub-pixel** (teacher-forced ideal code length, -mean log2 p, evaluated in
float32), its ratio to ``context-interleaved`` measured in the same run, parameters, optimizer steps, training
tiles/s, and the decode cost of one 32x32 tile: sequential network evaluations (the latency floor of a decoder) and
multiply-accumulates. Training: AdamW, bf16 autocast on the CPU (mixture / softmax output layer in float32, as
``PixelContextCodecModel.head`` does), gradient clip 1.0, linear warm-up then cosine decay over the *wall-clock*
budget (so every variant ends its schedule when its budget ends). Evaluation time is not part of the budget.

ImageGPT has no SDPA support in transformers (only its eager attention, which materialises the 3073 x 3073 score
matrix per head). ``--set imagegpt.attention=sdpa`` (the default) replaces each attention layer's ``_attn`` with the
same causal softmax attention computed by ``torch.nn.functional.scaled_dot_product_attention`` (same scale, no
mask, dropout 0); ``tests/test_bench_codec_models.py`` checks it matches eager. ``attention=eager`` keeps the
library's code. ImageGPT and PxBy default to 8 tiles per step (32 would leave them about a hundred optimizer steps in
12 min).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "recipes"))

from pixeltok.compression.model import (  # noqa: E402
    PixelContextCodecConfig,
    PixelContextCodecModel,
    discretized_logistic_mixture_nll,
    pixels_to_unit,
)
from pixeltok.models.pxby import PxByConfig, PxByModel  # noqa: E402
from train_codec import load_crops, photo_refs  # noqa: E402

VARIANTS = ("context-interleaved", "context-channel-major", "imagegpt-interleaved", "pxby-interleaved")
# imagegpt.* / pxby.* keys that are training options (null = train.*), not model hyper-parameters
VARIANT_TRAIN_KEYS = ("batch_size", "eval_batch_size", "learning_rate")
BASELINE = "context-interleaved"
DEFAULT_CONFIG = os.path.join(ROOT, "recipes", "configs", "codec_default.yaml")


# ---- channel-major context model ----------------------------------------------------------------------------------
class ChannelMajorContextModel(nn.Module):
    """Plane-by-plane (R plane, then G, then B) sibling of :class:`PixelContextCodecModel`.

    Plane ``c`` of pixel ``(y, x)`` is predicted from
      * channel ``c`` at the causal offsets ``config.offsets`` (value + in-tile flag), and
      * for every plane ``j < c``: its values over ``window_offsets`` = the causal offsets plus the full square
        ``|dy|, |dx| <= window_radius`` (pixel itself included), with one in-tile flag per window offset,
    through a per-plane input projection, the residual MLP trunk (width / depth of the interleaved model; its blocks
    shared by the planes unless ``share_trunk=False``) and a per-plane head (hidden layer + float32 output layer +
    float32 linear skip from the raw features) giving a K-mixture of discretized logistics. The skip starts as the
    same classical predictor as ``PixelContextCodecModel.init_skip_predictor`` (mean of left and up; for G and B the
    previous plane's value at the pixel plus the neighbours' mean difference).
    """

    def __init__(self, config: PixelContextCodecConfig, window_radius: int = 2, share_trunk: bool = True):
        super().__init__()
        if window_radius < 1:
            raise ValueError(f"window_radius must be >= 1 (the skip predictor uses the left/up/own pixel), got {window_radius}")
        self.config = config
        self.window_radius, self.share_trunk = window_radius, share_trunk
        r = window_radius
        self.causal_offsets = list(config.offsets)
        square = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
        self.window_offsets = self.causal_offsets + [o for o in square if o not in self.causal_offsets]
        # canvas padding: rows above / below, columns left / right of the tile
        self.pad_top = max(config.context_rows, r)
        self.pad_left = max(config.context_left, config.context_left_current, r)
        self.pad_bottom, self.pad_right = r, max(config.context_right, r)
        nc, nw = len(self.causal_offsets), len(self.window_offsets)
        self.n_in = [nc * 2 + (c * nw + nw if c > 0 else 0) for c in range(3)]
        D, Hh, K = config.hidden_size, config.head_hidden_size, config.num_mixtures
        self.input_proj = nn.ModuleList(nn.Linear(self.n_in[c], D) for c in range(3))
        n_trunks = 1 if share_trunk else 3
        self.blocks = nn.ModuleList(
            nn.ModuleList(nn.Linear(D, D) for _ in range(config.num_hidden_layers)) for _ in range(n_trunks))
        self.head_in = nn.ModuleList(nn.Linear(D, Hh) for _ in range(3))
        self.head_out = nn.ModuleList(nn.Linear(Hh, 3 * K) for _ in range(3))
        self.head_skip = nn.ModuleList(nn.Linear(self.n_in[c], 3 * K) for c in range(3))
        for m in self.modules():
            if isinstance(m, nn.Linear):  # same init as PixelContextCodecPreTrainedModel._init_weights
                nn.init.normal_(m.weight, std=config.initializer_range)
                nn.init.zeros_(m.bias)
        self._init_skip_predictor()

    def _feature_index(self, c: int, kind: str, off: tuple[int, int], ch: int) -> int:
        """Column of plane ``c``'s feature vector holding ``kind`` ('causal' value/flag of channel c, 'win' value of
        plane ``ch < c`` or 'winflag') at offset ``off``. Layout: causal ``[v_c, flag] * nc``, then per window offset
        ``[v_0 .. v_{c-1}, flag]``."""
        nc = len(self.causal_offsets)
        if kind == "causal":
            return self.causal_offsets.index(off) * 2 + ch
        k = self.window_offsets.index(off)
        return nc * 2 + k * (c + 1) + (c if kind == "winflag" else ch)

    def _init_skip_predictor(self):
        K = self.config.num_mixtures
        with torch.no_grad():
            for c, lin in enumerate(self.head_skip):
                lin.weight.zero_()
                lin.bias.zero_()
                mu = lin.weight[K:2 * K]
                mu[:, self._feature_index(c, "causal", (0, -1), 0)] += 0.5
                mu[:, self._feature_index(c, "causal", (-1, 0), 0)] += 0.5
                if c > 0:  # + x_{c-1} - mean of the neighbours' plane c-1
                    mu[:, self._feature_index(c, "win", (0, 0), c - 1)] += 1.0
                    mu[:, self._feature_index(c, "win", (0, -1), c - 1)] -= 0.5
                    mu[:, self._feature_index(c, "win", (-1, 0), c - 1)] -= 0.5
                lin.bias[2 * K:] = -3.0

    def features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """``(B, H, W, 3)`` levels -> per plane ``c`` features ``(B, H*W, n_in[c])`` (outside the tile: 0, flag 0)."""
        b, h, w, _ = pixel_values.shape
        dtype = self.input_proj[0].weight.dtype
        canvas = torch.zeros(b, h + self.pad_top + self.pad_bottom, w + self.pad_left + self.pad_right, 4, dtype=dtype)
        canvas[:, self.pad_top:self.pad_top + h, self.pad_left:self.pad_left + w, :3] = pixels_to_unit(pixel_values).to(dtype)
        canvas[:, self.pad_top:self.pad_top + h, self.pad_left:self.pad_left + w, 3] = 1.0
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ys, xs = ys.reshape(-1), xs.reshape(-1)

        def gather(offsets):  # (B, HW, n_offsets, 4)
            o = torch.tensor(offsets)
            return canvas[:, ys[:, None] + o[None, :, 0] + self.pad_top, xs[:, None] + o[None, :, 1] + self.pad_left]

        causal, win = gather(self.causal_offsets), gather(self.window_offsets)
        out = []
        for c in range(3):
            f = [causal[..., [c, 3]].flatten(2)]
            if c > 0:
                f.append(win[..., list(range(c)) + [3]].flatten(2))
            out.append(torch.cat(f, dim=-1))
        return out

    def plane_params(self, c: int, feats: torch.Tensor) -> torch.Tensor:
        """Features ``(B, N, n_in[c])`` -> mixture params ``(B, N, 3, K)`` (logit_pi, mu, log_s) of plane ``c``."""
        h = F.relu(self.input_proj[c](feats))
        for blk in self.blocks[0 if self.share_trunk else c]:
            h = h + F.relu(blk(h))
        g = F.relu(self.head_in[c](h))
        with torch.autocast(device_type=g.device.type, enabled=False):  # float32 output layer, as the shipped head
            out = self.head_out[c](g.float()) + self.head_skip[c](feats.float())
        out = out.unflatten(-1, (3, self.config.num_mixtures))
        return torch.stack([out[..., 0, :], out[..., 1, :], out[..., 2, :].clamp_min(self.config.min_log_scale)], dim=-2)

    def forward(self, pixel_values: torch.Tensor, reduction: str = "mean") -> types.SimpleNamespace:
        """Teacher-forced NLL in bits per sub-pixel (mean, or ``(B,)`` per tile with ``reduction="none"``)."""
        b, h, w, _ = pixel_values.shape
        feats = self.features(pixel_values)
        x = pixels_to_unit(pixel_values).reshape(b, h * w, 3)
        params = torch.stack([self.plane_params(c, feats[c]) for c in range(3)], dim=2)  # (B, HW, 3, 3, K)
        nll = discretized_logistic_mixture_nll(x, params[..., 0, :], params[..., 1, :], params[..., 2, :])
        loss = (nll.mean() if reduction == "mean" else nll.mean(dim=(1, 2))) / math.log(2.0)
        return types.SimpleNamespace(loss=loss, params=params)


# ---- ImageGPT over raw sub-pixels -----------------------------------------------------------------------------------
def _sdpa_attn(self, query, key, value, attention_mask=None):
    """Drop-in for ``ImageGPTAttention._attn`` (causal self-attention) via ``scaled_dot_product_attention``."""
    if attention_mask is not None or self.is_cross_attention or self.reorder_and_upcast_attn:
        raise NotImplementedError("the SDPA attention swap covers unmasked causal self-attention only; use attention=eager")
    scale = (1.0 / math.sqrt(value.size(-1))) if self.scale_attn_weights else 1.0
    if self.scale_attn_by_inverse_layer_idx:
        scale /= float(self.layer_idx + 1)
    q_len, k_len = query.size(-2), key.size(-2)
    if q_len == k_len:
        mask, causal = None, True
    else:  # cached decoding: query i sits at position k_len - q_len + i
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
        causal = False
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=causal, scale=scale,
                                         dropout_p=self.attn_dropout.p if self.training else 0.0)
    return out, None


class ImageGPTSubpixelModel(nn.Module):
    """``ImageGPTForCausalImageModeling`` over a tile's ``H*W*3`` raw sub-pixel values (raster, RGB interleaved).

    ``input_ids = [256, v_0, ..., v_{3071}]`` (256 = start token, ``vocab_size = 257``); the logits at position t
    (``lm_head``: 256 classes, run in float32) predict ``v_t``.
    """

    START = 256

    def __init__(self, n_embd: int, n_layer: int, n_head: int, tile_size: int = 32, attention: str = "sdpa"):
        super().__init__()
        from transformers import ImageGPTConfig, ImageGPTForCausalImageModeling

        if attention not in ("sdpa", "eager"):
            raise ValueError(f"imagegpt.attention must be 'sdpa' or 'eager', got {attention!r}")
        cfg = ImageGPTConfig(vocab_size=257, n_positions=tile_size * tile_size * 3 + 1, n_embd=n_embd, n_layer=n_layer,
                             n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False)
        try:  # transformers may grow native SDPA support for ImageGPT; use it when it does
            self.gpt = ImageGPTForCausalImageModeling._from_config(cfg, attn_implementation=attention)
            self.attention = attention
        except (ValueError, ImportError):
            self.gpt = ImageGPTForCausalImageModeling._from_config(cfg, attn_implementation="eager")
            self.attention = "eager"
            if attention == "sdpa":
                for blk in self.gpt.transformer.h:
                    blk.attn._attn = types.MethodType(_sdpa_attn, blk.attn)
                self.attention = "sdpa (ImageGPTAttention._attn swapped for F.scaled_dot_product_attention)"
        self.config = self.gpt.config

    def forward(self, pixel_values: torch.Tensor, reduction: str = "mean") -> types.SimpleNamespace:
        """``(B, H, W, 3)`` levels -> NLL in bits per sub-pixel (mean, or ``(B,)`` per tile); ``logits`` ``(B, 3072, 256)``."""
        b = pixel_values.shape[0]
        target = pixel_values.reshape(b, -1).long()
        ids = torch.cat([torch.full((b, 1), self.START, dtype=torch.long), target[:, :-1]], dim=1)
        hid = self.gpt.transformer(input_ids=ids, use_cache=False).last_hidden_state
        with torch.autocast(device_type=hid.device.type, enabled=False):
            logits = self.gpt.lm_head(hid.float())
            nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # (B, 3072) nats
        loss = (nll.mean() if reduction == "mean" else nll.mean(dim=1)) / math.log(2.0)
        return types.SimpleNamespace(loss=loss, logits=logits)


# ---- PxBy over raw sub-pixels ----------------------------------------------------------------------------------------
class PxBySubpixelModel(nn.Module):
    """:class:`PxByModel` (``PxByEmbed`` 3x3 windows + backbone) over a tile's ``H*W*3`` sub-pixels (raster, RGB
    interleaved), with a 256-way softmax head (float32) per sub-pixel.

    Sequence (PxBy's own vocabulary layout, ids 0-5 = its specials, so ``build_windows`` runs unchanged)::

        [BOS, row 0 (3W sub-pixel ids), ROW, row 1, ROW, ..., row H-1]          length H * (3W + 1)

    sub-pixel ``v`` of channel ``c`` -> id ``FIRST + 256 c + v`` (``channel_ids``; the LSTM has no positions, so the
    id tells it which channel it just read) or ``FIRST + v``; ``first_color_id = FIRST``, ``num_colors`` = 768 or 256,
    so every sub-pixel is a "colour" and each tile row is a 3W-wide pixel row. PxBy's window of position ``i`` holds
    only tokens ``<= i`` (0 = ``<pad>`` = not available)::

        [[above-left, above, above-right],   the 3W-wide row above (across exactly one ROW token)
         [left,       self,  0          ],   self = the sub-pixel just coded, left = the one before it in its row
         [0,          0,     0          ]]

    and its output predicts token ``i + 1`` (PxBy's next-token convention), so the prediction of every sub-pixel sees
    only coded ones; e.g. for G at pixel (y, x): self = R(y, x), left = B(y, x-1), above-right = G(y-1, x). Outputs in
    front of a ROW token are dropped (the separator is known); ``logits`` cover exactly the ``H*W*3`` sub-pixels.
    """

    FIRST = 6  # after PxByConfig's default specials: pad 0, bos 1, eos 2, (3), row 4, segment 5
    # the vocabulary layout is fixed by the sequence format above, not a knob
    LAYOUT_KEYS = ("vocab_size", "first_color_id", "num_colors", "pad_token_id", "bos_token_id", "eos_token_id",
                   "row_token_id", "segment_token_id", "use_cache", "tie_word_embeddings")

    def __init__(self, channel_ids: bool = True, **pxby_config):
        super().__init__()
        fixed = sorted(set(pxby_config) & set(self.LAYOUT_KEYS))
        if fixed:
            raise ValueError(f"pxby.{fixed[0]} is set by the sub-pixel sequence format and cannot be overridden")
        self.channel_ids = bool(channel_ids)
        n_ids = 768 if self.channel_ids else 256
        cfg = PxByConfig(vocab_size=self.FIRST + n_ids, first_color_id=self.FIRST, num_colors=n_ids, use_cache=False,
                         **pxby_config)
        self.pxby = PxByModel(cfg)
        self.config = cfg
        self.lm_head = nn.Linear(self.pxby.output_size, 256)
        nn.init.normal_(self.lm_head.weight, std=cfg.initializer_range)  # as PxByForCausalLM's head under post_init
        nn.init.zeros_(self.lm_head.bias)

    @staticmethod
    def output_index(h: int, w: int) -> torch.Tensor:
        """``(h*w*3,)`` sequence positions whose outputs predict the sub-pixels, in raster order: sub-pixel ``j`` of row
        ``y`` sits at ``1 + y (3w + 1) + j`` and is predicted by the position before it."""
        return (torch.arange(h)[:, None] * (3 * w + 1) + torch.arange(3 * w)[None, :]).reshape(-1)

    def input_ids(self, pixel_values: torch.Tensor) -> torch.LongTensor:
        """``(B, H, W, 3)`` levels -> ``(B, H * (3W + 1))`` PxBy ids (layout in the class docstring)."""
        b, h, w, _ = pixel_values.shape
        v = pixel_values.long() + self.FIRST
        if self.channel_ids:
            v = v + 256 * torch.arange(3)
        rows = torch.cat([v.reshape(b, h, 3 * w), torch.full((b, h, 1), self.config.row_token_id)], dim=2)
        return torch.cat([torch.full((b, 1), self.config.bos_token_id), rows.reshape(b, -1)[:, :-1]], dim=1)

    def windows(self, pixel_values: torch.Tensor) -> torch.LongTensor:
        """``(B, H, W, 3)`` levels -> ``(B, H * (3W + 1), 3, 3)`` windows, by PxBy's own ``build_windows``."""
        return self.pxby.windows(self.input_ids(pixel_values))

    def forward(self, pixel_values: torch.Tensor, reduction: str = "mean") -> types.SimpleNamespace:
        """``(B, H, W, 3)`` levels -> NLL in bits per sub-pixel (mean, or ``(B,)`` per tile); ``logits`` ``(B, H*W*3, 256)``."""
        b, h, w, _ = pixel_values.shape
        hid = self.pxby(input_ids=self.input_ids(pixel_values), use_cache=False).last_hidden_state
        hid = hid[:, self.output_index(h, w)]
        target = pixel_values.reshape(b, -1).long()
        with torch.autocast(device_type=hid.device.type, enabled=False):
            logits = self.lm_head(hid.float())
            nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # (B, H*W*3) nats
        loss = (nll.mean() if reduction == "mean" else nll.mean(dim=1)) / math.log(2.0)
        return types.SimpleNamespace(loss=loss, logits=logits)


# ---- decode-cost estimates --------------------------------------------------------------------------------------------
def _weights(mods) -> int:
    return sum(m.weight.numel() for m in mods)


def decode_cost(name: str, model: nn.Module, h: int, w: int) -> dict:
    """Sequential network evaluations and multiply-accumulates (Linear / attention only) to decode one tile.

    Context models decode in wavefront order (``x + slope*y = t``, all tiles of a batch at once); each wavefront
    needs 3 dependent head evaluations (interleaved: one trunk + R, G|R, B|R,G heads; channel-major: each plane
    re-runs its trunk, and the planes follow each other). ImageGPT needs one step per sub-pixel, each attending to a
    KV cache of everything before it. PxBy needs one backbone step per sequence position but the last (BOS, the
    sub-pixels and the ``H - 1`` ROW tokens: ``H (3W + 1) - 1``), each the folded window embedding
    (``PxByEmbed.folded``: one ``9E x D`` matrix) plus every backbone weight of rank >= 2 once (LSTM ``W_ih``,
    ``W_hh``; Transformer attention over its cache added as for ImageGPT), and the 256-way head per sub-pixel.
    """
    if name.startswith("context"):
        slope = model.config.context_right + 1
        wavefronts = (w - 1) + slope * (h - 1) + 1
        if name == "context-interleaved":
            per_pixel = _weights([model.input_proj, *model.blocks, *model.head_in, *model.head_out, *model.head_skip])
        else:
            per_pixel = sum(_weights([model.input_proj[c], *model.blocks[0 if model.share_trunk else c],
                                      model.head_in[c], model.head_out[c], model.head_skip[c]]) for c in range(3))
        return {"sequential_steps": 3 * wavefronts, "macs_per_tile": per_pixel * h * w}
    if name == "pxby-interleaved":
        cfg = model.config
        steps = h * (3 * w + 1) - 1
        embed = 9 * cfg.embed_dim * cfg.hidden_size if cfg.embedding_type == "pxby" else 0  # "center": a lookup
        per_step = embed + sum(p.numel() for p in model.pxby.backbone.parameters() if p.dim() >= 2)
        attn = 0
        if cfg.backbone == "transformer":  # q.k and p.v over a growing cache, as for ImageGPT
            attn = cfg.num_hidden_layers * 2 * cfg.hidden_size * steps * (steps + 1) // 2
        head = _weights([model.lm_head]) * h * w * 3
        return {"sequential_steps": steps, "macs_per_tile": per_step * steps + head + attn}
    cfg = model.config
    d, n_layer, t = cfg.n_embd, cfg.n_layer, h * w * 3
    inner = cfg.n_inner or 4 * d
    per_token = n_layer * (4 * d * d + 2 * d * inner) + d * 256  # qkv + proj + MLP, lm_head
    attn = n_layer * 2 * d * t * (t + 1) // 2  # q.k and p.v over a growing cache (start token included)
    return {"sequential_steps": t, "macs_per_tile": per_token * t + attn}


# ---- training / evaluation ------------------------------------------------------------------------------------------
def build(name: str, cfg: dict) -> tuple[nn.Module, dict]:
    """Model of variant ``name`` (seeded with ``train.seed``) and its training options."""
    torch.manual_seed(cfg["train"]["seed"])
    train = dict(cfg["train"])
    if name == "context-interleaved":
        model = PixelContextCodecModel(PixelContextCodecConfig(**cfg["context"]))
    elif name == "context-channel-major":
        model = ChannelMajorContextModel(PixelContextCodecConfig(**cfg["context"]), **cfg["channel_major"])
    elif name == "imagegpt-interleaved":
        ig = cfg["imagegpt"]
        model = ImageGPTSubpixelModel(ig["n_embd"], ig["n_layer"], ig["n_head"], cfg["data"]["tile_size"], ig["attention"])
        # its own batch sizes; learning rate null = train.learning_rate
        train.update({k: ig[k] for k in VARIANT_TRAIN_KEYS if ig.get(k) is not None})
    elif name == "pxby-interleaved":
        px = dict(cfg["pxby"])
        opts = {k: px.pop(k) for k in VARIANT_TRAIN_KEYS}
        model = PxBySubpixelModel(px.pop("channel_ids"), **{k: v for k, v in px.items() if v is not None})
        train.update({k: v for k, v in opts.items() if v is not None})
    else:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return model, train


def tile_stream(n: int, seed: int):
    """Indices of the training tiles in one fixed order (a fresh seeded permutation per epoch), same for every variant."""
    epoch = 0
    while True:
        yield from np.random.default_rng([seed, epoch]).permutation(n)
        epoch += 1


def train_for(model: nn.Module, tiles: np.ndarray, minutes: float, opts: dict, desc: str) -> dict:
    """AdamW + bf16 autocast for ``minutes`` of wall clock; LR: linear warm-up over ``warmup_frac`` of the budget
    (from 1% of the peak), then cosine to 0 at the end of the budget."""
    budget = minutes * 60.0
    opt = torch.optim.AdamW(model.parameters(), lr=opts["learning_rate"], weight_decay=opts["weight_decay"])
    stream, bs = tile_stream(len(tiles), opts["seed"]), int(opts["batch_size"])
    model.train()
    steps, seen, ema = 0, 0, None
    bar = tqdm(total=round(budget, 1), desc=desc, unit="s", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}")
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < budget:
        frac = elapsed / budget
        lr = opts["learning_rate"] * min(1.0, max(0.01, frac / opts["warmup_frac"])) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = torch.from_numpy(tiles[[next(stream) for _ in range(bs)]]).long()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opts["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        steps, seen = steps + 1, seen + bs
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        bar.n = min(time.perf_counter() - t0, budget)
        bar.set_postfix_str(f"step {steps} bpsp {ema:.3f} lr {lr:.1e}")
    seconds = time.perf_counter() - t0
    bar.close()
    return {"steps": steps, "train_tiles_seen": seen, "train_seconds": seconds, "train_tiles_per_s": seen / seconds,
            "final_train_bpsp_ema": ema}


@torch.no_grad()
def evaluate(model: nn.Module, tiles: np.ndarray, batch_size: int, desc: str) -> tuple[float, float]:
    """Held-out bits per sub-pixel in float32 (mean over tiles) and evaluation tiles/s."""
    model.eval()
    per_tile = []
    t0 = time.perf_counter()
    for i in tqdm(range(0, len(tiles), batch_size), desc=desc, leave=False):
        per_tile.append(model(torch.from_numpy(tiles[i:i + batch_size]).long(), reduction="none").loss.double())
    seconds = time.perf_counter() - t0
    model.train()
    return float(torch.cat(per_tile).mean()), len(tiles) / seconds


# ---- CLI --------------------------------------------------------------------------------------------------------------
def default_config(config_path: str) -> dict:
    with open(config_path) as f:
        y = yaml.safe_load(f)
    tr = y.get("train", {})
    return {
        "context": dict(y["model"]),
        "channel_major": {"window_radius": 2, "share_trunk": True},
        "imagegpt": {"n_embd": 128, "n_layer": 3, "n_head": 4, "attention": "sdpa", "batch_size": 8,
                     "eval_batch_size": 8, "learning_rate": None},
        # PxByConfig fields (any of them but the vocabulary layout; null = PxByConfig's default) + channel_ids +
        # training options (null = train.*)
        "pxby": {"backbone": "lstm", "bidirectional": False, "hidden_size": 128, "embed_dim": None, "use_conv": True,
                 "kernel_size": 3, "state_size": 224, "num_hidden_layers": 2, "dropout": 0.0, "channel_ids": True,
                 "batch_size": 8, "eval_batch_size": 8, "learning_rate": None},
        "train": {"seed": int(tr.get("seed", 0)), "batch_size": int(tr.get("batch_size", 32)),
                  "learning_rate": float(tr.get("learning_rate", 1e-3)), "weight_decay": float(tr.get("weight_decay", 0.0)),
                  "warmup_frac": 0.05, "grad_clip": 1.0, "eval_batch_size": 64},
        "data": dict(y["data"]),
    }


def apply_overrides(cfg: dict, sets: list[str]) -> dict:
    """``SECTION.KEY=VALUE`` (VALUE parsed as YAML) into ``cfg``; unknown sections / keys are errors."""
    for s in sets:
        key, sep, value = s.partition("=")
        section, dot, k = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"--set expects SECTION.KEY=VALUE, got {s!r}")
        if section not in cfg:
            raise ValueError(f"--set {s!r}: unknown section {section!r} (sections: {', '.join(cfg)})")
        known = set(cfg[section]) | (set(PixelContextCodecConfig().to_dict()) if section == "context" else set())
        if section == "pxby":
            if k in PxBySubpixelModel.LAYOUT_KEYS:
                raise ValueError(f"--set {s!r}: {k!r} is fixed by the sub-pixel sequence format (see PxBySubpixelModel)")
            known |= set(PxByConfig.__annotations__)
        if k not in known:
            raise ValueError(f"--set {s!r}: unknown key {k!r} in {section!r} (keys: {', '.join(sorted(cfg[section]))})")
        cfg[section][k] = yaml.safe_load(value)
    return cfg


def load_tiles(dc: dict, seed: int, eval_tiles: int, wallpaper_dir: str | None, backgrounds_dir: str | None):
    """Training and held-out tiles as in ``recipes/train_codec.py`` (wallpapers / backgrounds only when their folder
    is given, else the scikit-image photos alone)."""
    dc = {**dc, "train_backgrounds": dc.get("train_backgrounds", []) if backgrounds_dir else []}
    for k in ("train_wallpapers", "heldout_wallpapers"):
        dc[k] = dc.get(k, []) if wallpaper_dir else []
    train, held = load_crops(dc, seed, wallpaper_dir, backgrounds_dir)
    size = dc["tile_size"]
    held = held[np.random.default_rng(seed + 2).permutation(len(held))[:eval_tiles]]
    if len(train) == 0 or len(held) == 0:
        raise ValueError(f"no full {size}x{size} tiles: {len(train)} training, {len(held)} held-out")
    train_photos, held_photos = photo_refs(dc)
    return train, held, sorted(train_photos), sorted(held_photos)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG, help="codec recipe config: model / data / train sections")
    p.add_argument("--minutes", type=float, default=12.0, help="wall-clock training budget per variant")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval_tiles", type=int, default=None, help="held-out tiles (default: data.eval_tiles)")
    p.add_argument("--wallpaper_dir", default=os.environ.get("PIXELTOK_WALLPAPERS"))
    p.add_argument("--backgrounds_dir", default=os.environ.get("PIXELTOK_BACKGROUNDS"))
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value; sections: context, channel_major, imagegpt, pxby, train, data")
    p.add_argument("--out", default="bench_codec_models.json")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        p.error(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    cfg = apply_overrides(default_config(args.config), args.set)
    dc, seed = cfg["data"], cfg["train"]["seed"]
    eval_tiles = args.eval_tiles if args.eval_tiles is not None else int(dc["eval_tiles"])

    train, held, train_names, held_names = load_tiles(dc, seed, eval_tiles, args.wallpaper_dir, args.backgrounds_dir)
    print(f"{len(train):,} training tiles from {len(train_names)} photos, {len(held)} held-out tiles from "
          f"{len(held_names)} photos; {args.minutes:g} min per variant, {args.threads} threads")

    results = {}
    for name in variants:
        model, opts = build(name, cfg)
        n_params = sum(t.numel() for t in model.parameters())
        r = {"params": n_params, "batch_size": int(opts["batch_size"]), "learning_rate": float(opts["learning_rate"])}
        r.update(train_for(model, train, args.minutes, opts, desc=name))
        r["heldout_bpsp"], r["eval_tiles_per_s"] = evaluate(model, held, int(opts["eval_batch_size"]), f"eval {name}")
        r.update(decode_cost(name, model, dc["tile_size"], dc["tile_size"]))
        if name == "imagegpt-interleaved":
            r["attention"] = model.attention
        elif name == "pxby-interleaved":
            r["pxby_config"] = model.config.to_diff_dict()
        results[name] = r
        print(f"{name}: held-out {r['heldout_bpsp']:.4f} bpsp after {r['steps']} steps ({r['train_tiles_per_s']:.1f} tiles/s)",
              flush=True)
        del model

    base = results.get(BASELINE, {}).get("heldout_bpsp")
    for r in results.values():
        r["vs_context_interleaved"] = r["heldout_bpsp"] / base if base else None
    print(f"\n{'variant':<23} {'params':>9} {'steps':>6} {'tiles/s':>8} {'held bpsp':>9} {'x base':>7} "
          f"{'dec steps':>9} {'dec GMAC':>8}")
    for name, r in results.items():
        ratio = f"{r['vs_context_interleaved']:.3f}" if base else "-"
        print(f"{name:<23} {r['params']:>9,} {r['steps']:>6} {r['train_tiles_per_s']:>8.1f} {r['heldout_bpsp']:>9.4f} "
              f"{ratio:>7} {r['sequential_steps']:>9} {r['macs_per_tile'] / 1e9:>8.3f}")
    print(f"(held-out: teacher-forced -mean log2 p over {len(held)} tiles; x base = ratio to {BASELINE} in this run; "
          "dec steps / GMAC = sequential network evaluations / multiply-accumulates to decode one tile)")

    out = {"variants": results, "minutes_per_variant": args.minutes, "threads": args.threads,
           "train_tiles": int(len(train)), "eval_tiles": int(len(held)), "train_photos": train_names,
           "heldout_photos": held_names, "config": cfg, "config_file": os.path.relpath(args.config, ROOT),
           "torch": torch.__version__, "cpu": platform.processor() or platform.machine()}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
