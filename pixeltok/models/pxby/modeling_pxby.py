"""PxBy: the PixelBytes unified text + pixel model (Furfaro 2024, "PixelBytes: Catching Unified Embedding for
Multimodal Generation"), as a transformers model family.

Every position of a mixed byte + palette sequence is embedded from a 3x3 window of ids (``PxByEmbed``), a causal
backbone (LSTM, Transformer or Mamba) reads the embeddings, and a linear head predicts the next id at EVERY position.

Window of position ``i`` (only tokens at positions ``<= i``; 0 = ``<pad>`` = nothing)::

    [[above-left, above, above-right],    pixel (colour id) at column c: the row above is the previous pixel row
     [left,       self,  0          ],    when exactly one row separator lies between the two rows; left = the
     [0,          0,     0          ]]    pixel at c - 1 (0 for a row's first pixel). Any other token: left = the
                                          previous token, self; the top row is 0.

Differences from the reference code (on purpose): every position is supervised; ``<pad>`` is its own id with attention
masks; the Transformer has sinusoidal positions and a causal mask; Mamba layers are transformers' ``MambaBlock``
(pre-RMSNorm + residual) with a final norm; generation keeps recurrent state / KV cache (``PxByCache``) and builds each
new token's window incrementally (``WindowState``) instead of re-running the sequence.

This file only needs torch and transformers, so a saved folder loads with ``trust_remote_code=True`` anywhere.
"""

from __future__ import annotations

import inspect
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.models.mamba.configuration_mamba import MambaConfig
from transformers.models.mamba.modeling_mamba import MambaBlock, MambaMixer, MambaRMSNorm

from .configuration_pxby import PxByConfig

# transformers 5.24 renamed the generation cache argument and output field ``past_key_values`` (and Mamba's
# ``cache_params``) to ``cache``, and warns on the old names; earlier 5.x only know the old ones. Use whichever this
# install has, so generate() hands us our cache back on both sides of the rename, without a warning.
CACHE_NAME = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
_MAMBA_CACHE_NAME = "cache" if "cache" in inspect.signature(MambaBlock.forward).parameters else "cache_params"


def _take_cache(cache, kwargs: dict):
    """The cache passed under either name (``cache`` or ``past_key_values``); both at once is an error."""
    for name in ("cache", "past_key_values"):
        if kwargs.get(name) is not None:
            if cache is not None and kwargs[name] is not cache:
                raise ValueError("PxBy: pass the cache once, as `cache` or `past_key_values`")
            cache = kwargs[name]
        kwargs.pop(name, None)
    return cache


# ---------------------------------------------------------------------------------------------------------------------
# Windows: offline (whole sequence, vectorized) and incremental (one token per step, for generation)
# ---------------------------------------------------------------------------------------------------------------------
def build_windows(input_ids: torch.LongTensor, first_color_id: int, num_colors: int, row_id: int) -> torch.LongTensor:
    """``(B, L)`` ids -> ``(B, L, 3, 3)`` causal windows (layout in the module docstring). Vectorized over B and L."""
    B, L = input_ids.shape
    ids = input_ids
    out = ids.new_zeros(B, L, 3, 3)
    pos = torch.arange(L, device=ids.device).expand(B, L)
    prev = F.pad(ids, (1, 0))[:, :L]  # previous token (0 before the first)
    is_pix = (ids >= first_color_id) & (ids < first_color_id + num_colors)
    starts = is_pix & ~F.pad(is_pix, (1, 0))[:, :L]
    start_pos = torch.cummax(torch.where(starts, pos, -1), dim=1).values  # start of the current pixel row
    col = pos - start_pos
    s = start_pos.clamp(min=0)
    # the row above = the pixel run that ends just before one row separator in front of this row
    sep = ids.gather(1, (s - 1).clamp(min=0))
    prev_is_pix = is_pix.gather(1, (s - 2).clamp(min=0))
    has_above = is_pix & (start_pos >= 2) & (sep == row_id) & prev_is_pix
    above_start = start_pos.gather(1, (s - 2).clamp(min=0))
    above_len = torch.where(has_above, s - 1 - above_start, 0)
    for j, dc in enumerate((-1, 0, 1)):
        c = col + dc
        ok = has_above & (c >= 0) & (c < above_len)
        out[:, :, 0, j] = torch.where(ok, ids.gather(1, (above_start + c).clamp(0, max(L - 1, 0))), 0)
    out[:, :, 1, 0] = torch.where(is_pix & (col == 0), 0, prev)
    out[:, :, 1, 1] = ids
    return out


class _RowState:
    __slots__ = ("last", "cur", "above", "prev", "sep_ok")

    def __init__(self):
        self.last, self.cur, self.above, self.prev, self.sep_ok = 0, [], [], [], False

    def copy(self) -> "_RowState":
        r = _RowState()
        r.last, r.cur, r.above, r.prev, r.sep_ok = self.last, list(self.cur), self.above, self.prev, self.sep_ok
        return r


class WindowState:
    """What generation needs to build the next token's window without the past sequence: per batch row, the pixels
    of the current row, the row above it, the last finished row, and whether exactly one row separator followed it.

    ``step(tokens)`` returns the ``(B, 3, 3)`` windows of the new tokens, equal to ``build_windows`` of the whole
    sequence at those positions (tested), including a row's first pixel and rows of unequal length. The state is
    plain Python per row: a generation step touches a handful of ints, far cheaper than tensor ops of size B.
    """

    def __init__(self, batch_size: int, first_color_id: int, num_colors: int, row_id: int):
        self.c0, self.c1, self.row_id = first_color_id, first_color_id + num_colors, row_id
        self.rows = [_RowState() for _ in range(batch_size)]

    @classmethod
    def from_prefix(cls, input_ids: torch.LongTensor, first_color_id: int, num_colors: int, row_id: int) -> "WindowState":
        """The state after reading ``(B, L)`` ids (O(L) integer work per row)."""
        st = cls(input_ids.shape[0], first_color_id, num_colors, row_id)
        for r, ids in zip(st.rows, input_ids.tolist()):
            for t in ids:
                st._advance(r, t)
        return st

    def _advance(self, r: _RowState, t: int) -> list:
        if self.c0 <= t < self.c1:  # a pixel: neighbours from the row above and the current row
            c = len(r.cur)
            if c == 0:  # a new row: the previous one is "above" only across exactly one row separator
                r.above = r.prev if r.sep_ok else []
            a, n = r.above, len(r.above)
            win = [[a[c - 1] if 1 <= c <= n else 0, a[c] if c < n else 0, a[c + 1] if c + 1 < n else 0],
                   [r.cur[-1] if c else 0, t, 0], [0, 0, 0]]
            r.cur.append(t)
        else:  # text, separators, specials: previous token and itself
            win = [[0, 0, 0], [r.last, t, 0], [0, 0, 0]]
            if r.cur:
                r.prev, r.cur, r.sep_ok = r.cur, [], t == self.row_id
            else:
                r.sep_ok = False
        r.last = t
        return win

    def step(self, tokens: torch.LongTensor) -> torch.LongTensor:
        """Append ``(B,)`` new tokens; return their ``(B, 3, 3)`` windows (on the tokens' device)."""
        wins = [self._advance(r, t) for r, t in zip(self.rows, tokens.tolist())]
        return torch.tensor(wins, dtype=torch.long, device=tokens.device)

    def index_select(self, idx: torch.LongTensor) -> None:
        self.rows = [self.rows[i].copy() for i in idx.tolist()]

    @property
    def batch_size(self) -> int:
        return len(self.rows)


# ---------------------------------------------------------------------------------------------------------------------
# Cache: backbone state + window state
# ---------------------------------------------------------------------------------------------------------------------
class PxByCache(Cache):
    """Generation state of a PxBy model: LSTM ``(h, c)`` per layer (each ``(B, H)``), or Transformer keys/values per
    layer (a preallocated ``(2, B, heads, capacity, head_dim)`` buffer, grown by doubling, so a step writes one slot
    instead of copying the whole past), or Mamba conv and SSM states (a transformers ``DynamicCache``), plus the
    :class:`WindowState` and the number of tokens seen."""

    is_compileable = False
    is_croppable = False

    def __init__(self):
        super().__init__(layers=[])
        self.seen_tokens = 0
        self.windows: WindowState | None = None
        self.lstm: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.key_values: list[list[torch.Tensor]] | None = None  # per layer [keys+values buffer]
        self.key_mask: torch.Tensor | None = None  # (B, seen) 1 = real token; None while no padding was seen
        self.mamba: DynamicCache | None = None
        self.embed_folded: tuple[torch.Tensor, torch.Tensor] | None = None  # PxByEmbed.folded(), for decode steps

    def __repr__(self):
        return f"PxByCache(seen_tokens={self.seen_tokens})"

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    @property
    def is_initialized(self) -> bool:
        return self.seen_tokens > 0

    def _apply(self, fn_tensor, fn_mamba, fn_windows) -> None:
        if self.lstm is not None:
            self.lstm = [(fn_tensor(h, 0), fn_tensor(c, 0)) for h, c in self.lstm]  # (B, H)
        if self.key_values is not None:
            self.key_values = [[fn_tensor(t, 1) for t in kv] for kv in self.key_values]  # (2, B, h, capacity, d)
        if self.key_mask is not None:
            self.key_mask = fn_tensor(self.key_mask, 0)
        if self.mamba is not None:
            fn_mamba(self.mamba)
        if self.windows is not None:
            fn_windows(self.windows)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._apply(lambda t, d: t.index_select(d, beam_idx.to(t.device)), lambda m: m.reorder_cache(beam_idx),
                    lambda w: w.index_select(beam_idx))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.windows is None:
            return
        B = self.windows.batch_size
        self.reorder_cache(torch.arange(B).repeat_interleave(repeats))


# ---------------------------------------------------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------------------------------------------------
class PxByEmbed(nn.Module):
    """3x3 window of ids -> ``D`` features (paper's PxByEmbed).

    ``pxby``: ``Embedding(V, E)`` per cell -> ``(B*L, E, 3, 3)``; with ``use_conv``,
    ``x = sigmoid(alpha) * x + (1 - sigmoid(alpha)) * Conv2d(E, E, k, pad k//2)(x)`` with ``alpha`` of shape
    ``(1, 1, 3, 3)``; flatten ``9E`` -> ``Linear(9E, D)`` -> ``LayerNorm``. ``center``: ``Embedding(V, D)`` of the
    window's centre -> ``LayerNorm`` (the baseline).
    """

    def __init__(self, config: PxByConfig):
        super().__init__()
        self.kind = config.embedding_type
        V, D, E = config.vocab_size, config.hidden_size, config.embed_dim
        if self.kind == "pxby":
            self.embed = nn.Embedding(V, E, padding_idx=config.pad_token_id)
            self.conv = nn.Conv2d(E, E, config.kernel_size, padding=config.kernel_size // 2) if config.use_conv else None
            self.alpha = nn.Parameter(torch.zeros(1, 1, 3, 3)) if config.use_conv else None
            self.proj = nn.Linear(9 * E, D)
        else:
            self.embed = nn.Embedding(V, D, padding_idx=config.pad_token_id)
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)

    @torch.no_grad()
    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W (D, 9E), b (D,))`` with ``forward(w) == LayerNorm(W @ cells + b)``, ``cells`` = the window's 9 cell
        embeddings flattened in ``(3, 3, E)`` order: the alpha blend, the convolution and the projection are all
        linear, so for generation (fixed weights) they collapse into one matrix; computed once per generation."""
        E = self.embed.embedding_dim
        basis = torch.eye(9 * E, device=self.proj.weight.device, dtype=self.proj.weight.dtype)
        basis = basis.reshape(9 * E, 3, 3, E).permute(0, 3, 1, 2)  # (9E, E, 3, 3): one unit cell value each
        b = self._mix_project(basis.new_zeros(1, E, 3, 3))[0]
        return (self._mix_project(basis) - b).T.contiguous(), b

    def _mix_project(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, E, 3, 3)`` -> ``(N, D)`` before the norm."""
        if self.conv is not None:
            a = torch.sigmoid(self.alpha)
            x = a * x + (1 - a) * self.conv(x)
        return self.proj(x.reshape(x.shape[0], -1))

    def forward(self, windows: torch.LongTensor, folded: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``(B, L, 3, 3)`` ids -> ``(B, L, D)``; ``folded``: :meth:`folded`'s ``(W, b)`` (no-grad generation)."""
        if self.kind == "center":
            return self.norm(self.embed(windows[:, :, 1, 1]))
        B, L = windows.shape[:2]
        if folded is not None:
            return self.norm(F.linear(self.embed(windows).reshape(B, L, -1), *folded))
        x = self.embed(windows.reshape(B * L, 3, 3)).permute(0, 3, 1, 2)  # (B*L, E, 3, 3)
        return self.norm(self._mix_project(x).reshape(B, L, -1))


# ---------------------------------------------------------------------------------------------------------------------
# Backbones
# ---------------------------------------------------------------------------------------------------------------------
def _padding_layout(mask: torch.Tensor):
    """``(B, L)`` 0/1 mask -> (left pads, valid length) per row; only one contiguous block of ones per row is allowed."""
    mask = mask.long()
    L = mask.shape[1]
    n_left = (mask.cumsum(1) == 0).sum(1)
    n_valid = mask.sum(1)
    pos = torch.arange(L, device=mask.device)
    expected = (pos >= n_left[:, None]) & (pos < (n_left + n_valid)[:, None])
    if not torch.equal(expected.long(), mask):
        raise ValueError("PxBy: attention_mask must be one contiguous block of ones per row (left or right padding)")
    return n_left, n_valid


class PxByBackwardCell(nn.Module):
    """The backward direction of a causal bi-LSTM layer, read where it starts: an LSTM cell fed one input from a zero
    state, ``h = sigmoid(o) * tanh(sigmoid(i) * tanh(g))`` with ``[i, g, o] = W x + b``. That is exactly what the
    reverse half of ``nn.LSTM(bidirectional=True)`` outputs at the last position of the sequence it is run on
    (``W`` = its input-gate/cell/output rows of ``weight_ih_l0_reverse``, ``b`` = the same rows of
    ``bias_ih_l0_reverse + bias_hh_l0_reverse``); the recurrent weights and the forget gate multiply a zero state, so
    they are left out: every parameter here gets a gradient (DDP needs no ``find_unused_parameters``)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(3 * hidden_size, input_size))  # rows: i, g, o
        self.bias = nn.Parameter(torch.zeros(3 * hidden_size))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., input_size)`` -> ``(..., hidden_size)``."""
        i, g, o = F.linear(x, self.weight, self.bias).chunk(3, -1)
        return torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))


class PxByLSTM(nn.Module):
    """Stack of LSTM layers. With ``bidirectional``, each layer concatenates to its forward LSTM the backward LSTM of
    ``nn.LSTM(bidirectional=True)`` as the reference reads it: the reference runs the bi-LSTM over the known context
    ``x[:t+1]`` and takes the output at the last position ``t``, where the backward pass has just started and has
    seen only ``x[t]`` -> :class:`PxByBackwardCell` (one step from a zero state). So at every position ``t`` our
    output equals that last output of ``nn.LSTM(bidirectional=True)`` on ``x[:t+1]`` (tested), computed for all
    positions in one pass and cached for generation; what is "bidirectional" is only this zero-state backward read of
    the current input (the backward pass never sees another position, and never a future one)."""

    def __init__(self, config: PxByConfig):
        super().__init__()
        H, D = config.state_size, config.hidden_size
        self.dirs = 2 if config.bidirectional else 1
        ins = [D] + [H * self.dirs] * (config.num_hidden_layers - 1)
        self.fwd = nn.ModuleList(nn.LSTM(i, H, batch_first=True) for i in ins)
        self.bwd = nn.ModuleList(PxByBackwardCell(i, H) for i in ins) if self.dirs == 2 else None
        self.drop = nn.Dropout(config.dropout)
        self.output_size = H * self.dirs

    def forward(self, x, state=None, attention_mask=None, need_state=True):
        """``x (B, L, in)``, ``state``: per layer ``(h, c)`` each ``(B, H)`` or None -> ``(B, L, output_size)``, new
        state (None unless ``need_state``). ``L == 1`` (a generation step) is one fused ``torch.lstm_cell`` per layer.

        Padding: each row's tokens are moved to the front (left padding) so every row starts from the initial state.
        The outputs at real tokens never depend on the padding after them (causal), so without a state to return
        the padded batch runs as is; only when the final state is needed (a cache) are the rows packed, which on CPU
        costs ~15x in the backward pass."""
        B, L, _ = x.shape
        if L == 1 and attention_mask is None:
            y, new_state = self.step(x[:, 0], state)
            return y[:, None], new_state
        shift = packed = False
        if attention_mask is not None and not bool(attention_mask.all()):
            n_left, n_valid = _padding_layout(attention_mask)
            if state is not None and bool((n_left > 0).any()):
                raise ValueError("PxBy LSTM: left padding is only allowed in the first (prefill) call")
            shift = bool((n_left > 0).any())
            if shift:  # move each row's tokens to the front: every row starts from the initial state
                pos = torch.arange(L, device=x.device)
                x = x.gather(1, ((pos + n_left[:, None]) % L)[:, :, None].expand_as(x))
            packed = need_state  # the state after each row's last real token needs packing
        new_state = []
        for i, lstm in enumerate(self.fwd):
            h0 = (state[i][0][None], state[i][1][None]) if state is not None else None
            if packed:
                p = nn.utils.rnn.pack_padded_sequence(x, n_valid.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
                y, hc = lstm(p, h0)
                y = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=L)[0]
            else:
                y, hc = lstm(x, h0)
            if self.bwd is not None:  # backward pass over the known context, read where it starts: one step from zero
                y = torch.cat([y, self.bwd[i](x)], -1)
            new_state.append((hc[0][0], hc[1][0]))
            x = self.drop(y) if i < len(self.fwd) - 1 else y
        if shift:
            x = x.gather(1, ((pos - n_left[:, None]) % L)[:, :, None].expand_as(x))
        return x, new_state if need_state else None

    def step(self, x: torch.Tensor, state=None):
        """One generation step: ``x (B, in)`` -> ``(B, output_size)``, new state (per layer ``(h, c)``)."""
        new_state = []
        for i, lstm in enumerate(self.fwd):
            hc = state[i] if state is not None else (x.new_zeros(x.shape[0], lstm.hidden_size),) * 2
            hc = torch.lstm_cell(x, hc, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
            new_state.append(hc)
            y = hc[0] if self.bwd is None else torch.cat([hc[0], self.bwd[i](x)], -1)
            x = self.drop(y) if self.training and i < len(self.fwd) - 1 else y
        return x, new_state


class PxByAttention(nn.Module):
    def __init__(self, config: PxByConfig):
        super().__init__()
        self.n_head, self.D = config.num_attention_heads, config.hidden_size
        self.qkv = nn.Linear(self.D, 3 * self.D)
        self.out = nn.Linear(self.D, self.D)
        self.p = config.dropout

    def forward(self, x, mask=None, is_causal=False, kv=None, past_len=0):
        """``x (B, L, D)``; ``mask``: bool, broadcastable to ``(B, heads, L, past_len + L)``, or None; ``kv``: this
        layer's ``[keys+values buffer]`` in a cache (``[]`` before the first call), written in place."""
        B, L, D = x.shape
        qkv = F.linear(x, self.qkv.weight, self.qkv.bias)  # functional: no module dispatch per generation step
        qkv = qkv.view(B, L, 3, self.n_head, D // self.n_head).permute(2, 0, 3, 1, 4)  # (3, B, h, L, d)
        q, k, v = qkv
        if kv is not None:  # kv = [buffer (2, B, h, capacity, d)]: keys and values written with one copy
            end = past_len + L
            if not kv or kv[0].shape[3] < end:  # (re)allocate with room to grow: a step then writes one slot
                grown = k.new_empty(2, B, self.n_head, max(2 * end, 64), k.shape[-1])
                if kv:
                    grown[:, :, :, :past_len] = kv[0][:, :, :, :past_len]
                kv[:] = [grown]
            kv[0][:, :, :, past_len:end] = qkv[1:]
            k, v = kv[0][:, :, :, :end]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.p if self.training else 0.0)
        return F.linear(y.transpose(1, 2).reshape(B, L, D), self.out.weight, self.out.bias)


class PxByTransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + attn(ln(x))``, ``x + mlp(ln(x))``."""

    def __init__(self, config: PxByConfig):
        super().__init__()
        D = config.hidden_size
        self.ln_1 = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.attn = PxByAttention(config)
        self.ln_2 = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(D, config.intermediate_size), nn.GELU(), nn.Linear(config.intermediate_size, D),
                                 nn.Dropout(config.dropout))

    def forward(self, x, mask=None, is_causal=False, kv=None, past_len=0):
        # the submodules' weights through functional calls: the same maths without a dozen module dispatches, which
        # dominate a one-token generation step at this size
        x = x + self.attn(_layer_norm(self.ln_1, x), mask, is_causal, kv, past_len)
        fc1, _, fc2, drop = self.mlp
        h = F.linear(F.gelu(F.linear(_layer_norm(self.ln_2, x), fc1.weight, fc1.bias)), fc2.weight, fc2.bias)
        return x + (drop(h) if self.training else h)


def _layer_norm(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


_SINUSOIDS: dict = {}


def sinusoid_table(n: int, dim: int, device) -> torch.Tensor:
    """``(>= n, dim)`` fixed sin/cos features of positions ``0..``; built once and grown by doubling, so a generation
    step reads one row instead of recomputing sin/cos."""
    key = (dim, torch.device(device))
    table = _SINUSOIDS.get(key)
    if table is None or table.shape[0] < n:
        size = max(n, 2 * table.shape[0] if table is not None else 1024)
        half = (dim + 1) // 2
        inv_freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / half)
        ang = torch.arange(size, device=device, dtype=torch.float32)[:, None] * inv_freq
        table = _SINUSOIDS[key] = torch.cat([ang.sin(), ang.cos()], -1)[:, :dim].contiguous()
    return table


def sinusoidal_positions(position_ids: torch.LongTensor, dim: int) -> torch.Tensor:
    """``(B, L)`` positions -> ``(B, L, dim)`` fixed sin/cos features (no learned table, any length)."""
    n = int(position_ids.max()) + 1 if position_ids.numel() else 1
    return sinusoid_table(n, dim, position_ids.device)[position_ids]


class PxByTransformer(nn.Module):
    """Causal Transformer: sinusoidal positions (from the attention mask, so left padding is handled), causal +
    padding mask, keys/values cached for generation."""

    def __init__(self, config: PxByConfig):
        super().__init__()
        self.blocks = nn.ModuleList(PxByTransformerBlock(config) for _ in range(config.num_hidden_layers))
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.output_size = config.hidden_size

    def forward(self, x, key_mask=None, past_len=0, kv=None):
        """x: ``(B, L, D)`` new tokens after ``past_len`` cached ones; key_mask: ``(B, past_len + L)`` 0/1 over past +
        new tokens, or None when none is padding; kv: the cache's per-layer buffers (or None: no cache)."""
        B, L, D = x.shape
        P, dev = past_len, x.device
        mask, is_causal = None, False
        if key_mask is None:  # no padding: positions count from 0; a single new query needs no mask at all
            pe = sinusoid_table(P + L, D, dev)[P:P + L]
            if L > 1 and P == 0:
                is_causal = True
            elif L > 1:
                mask = torch.arange(P + L, device=dev)[None, :] <= torch.arange(P, P + L, device=dev)[:, None]
        else:
            pe = sinusoidal_positions((key_mask.long().cumsum(1) - 1).clamp(min=0)[:, P:], D)
            q_idx = torch.arange(L, device=dev)[:, None] + P
            k_idx = torch.arange(P + L, device=dev)[None, :]
            mask = (k_idx <= q_idx)[None, None] & key_mask.bool()[:, None, None, :]
            mask = mask | (k_idx == q_idx)[None, None]  # a padding query attends itself (no empty rows -> no NaN)
        x = x + pe.to(x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, is_causal, kv[i] if kv is not None else None, P)
        return _layer_norm(self.ln_f, x)


def _drop_cpu_kernel_advice(record: logging.LogRecord) -> bool:
    # transformers advises installing the CUDA-only mamba kernels whenever it runs the reference scan; with no CUDA
    # device there is nothing to install, so on CPU that line is noise on every PxBy Mamba run
    return "falling back to its reference PyTorch implementation" not in record.getMessage()


class PxByMamba(nn.Module):
    """transformers' Mamba: ``MambaBlock`` layers (RMSNorm -> ``MambaMixer`` -> residual) and a final RMSNorm; runs on
    CPU through the reference PyTorch scan, on GPU through the CUDA kernels when installed."""

    def __init__(self, config: PxByConfig):
        super().__init__()
        if not torch.cuda.is_available():
            kernel_logger = logging.getLogger("transformers.integrations.hub_kernels")
            if _drop_cpu_kernel_advice not in kernel_logger.filters:
                kernel_logger.addFilter(_drop_cpu_kernel_advice)
        self.mamba_config = mamba_config(config)
        self.layers = nn.ModuleList(MambaBlock(self.mamba_config, layer_idx=i) for i in range(config.num_hidden_layers))
        self.norm_f = MambaRMSNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.output_size = config.hidden_size

    def forward(self, x, cache=None, attention_mask=None):
        for layer in self.layers:
            x = layer(x, attention_mask=attention_mask, **{_MAMBA_CACHE_NAME: cache})
        return self.norm_f(x.to(self.norm_f.weight.dtype))


def mamba_config(config: PxByConfig) -> MambaConfig:
    return MambaConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size, state_size=config.state_size,
                       num_hidden_layers=config.num_hidden_layers, expand=config.mamba_expand,
                       conv_kernel=config.mamba_conv_kernel, layer_norm_epsilon=config.layer_norm_eps,
                       pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id,
                       eos_token_id=config.eos_token_id, use_bias=False, residual_in_fp32=True,
                       use_mambapy=config.mamba_use_mambapy)


# ---------------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------------
class PxByPreTrainedModel(PreTrainedModel):
    config_class = PxByConfig
    config: PxByConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _is_stateful = True  # recurrent state cannot be rolled back (no assisted generation)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, PxByEmbed) and module.alpha is not None:
            init.zeros_(module.alpha)  # start at an even blend of the raw and the convolved window
        elif isinstance(module, PxByBackwardCell):  # as nn.LSTM's input weights under the base init
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            for name, p in module.named_parameters():
                if name.startswith("bias_ih"):  # forget-gate bias 1: remember by default
                    H = p.shape[0] // 4
                    init.constant_(p, 0.0)
                    p[H:2 * H] = 1.0
        elif isinstance(module, MambaMixer):  # as in MambaPreTrainedModel (children are initialised before parents)
            module.init_mamba_weights()
            init.kaiming_uniform_(module.conv1d.weight, a=math.sqrt(5))
            if module.conv1d.bias is not None:
                init.zeros_(module.conv1d.bias)
            init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))


class PxByModel(PxByPreTrainedModel):
    """Window embedding + backbone; returns ``last_hidden_state`` ``(B, L, output_size)`` and the cache."""

    def __init__(self, config: PxByConfig):
        super().__init__(config)
        self.embed = PxByEmbed(config)
        self.drop = nn.Dropout(config.dropout)
        if config.backbone == "lstm":
            self.backbone = PxByLSTM(config)
        elif config.backbone == "transformer":
            self.backbone = PxByTransformer(config)
        else:
            self.backbone = PxByMamba(config)
        self.output_size = self.backbone.output_size
        self.post_init()

    def get_input_embeddings(self):
        return self.embed.embed

    def set_input_embeddings(self, value):
        self.embed.embed = value

    def windows(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """``(B, L)`` ids -> ``(B, L, 3, 3)`` windows with this config's vocabulary layout."""
        c = self.config
        return build_windows(input_ids, c.first_color_id, c.num_colors, c.row_token_id)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_windows: torch.LongTensor | None = None,
        cache: PxByCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""
        input_ids: ``(B, L)`` unified byte + palette ids (for generation with a cache: only the new tokens).
        attention_mask: ``(B, L)`` or ``(B, past + L)``; 1 = token, 0 = padding (one contiguous block of ones per row).
        input_windows: ``(B, L, 3, 3)`` precomputed windows (else built from ``input_ids``).
        cache: a :class:`PxByCache` from a previous call (``use_cache=True`` creates one); also accepted as
            ``past_key_values``, the name before transformers 5.24.
        return_dict: ``False`` returns the tuple ``(last_hidden_state, cache or None)``.
        """
        c = self.config
        if input_ids is None and input_windows is None:
            raise ValueError("PxByModel: pass input_ids (B, L) or input_windows (B, L, 3, 3)")
        if input_windows is not None and input_windows.shape[-2:] != (3, 3):
            raise ValueError(f"PxByModel: input_windows must be (B, L, 3, 3), got {tuple(input_windows.shape)}")
        if input_ids is not None and input_ids.dim() != 2:
            raise ValueError(f"PxByModel: input_ids must be (B, L), got {tuple(input_ids.shape)}")
        use_cache = use_cache if use_cache is not None else (c.use_cache and not self.training)
        cache = _take_cache(cache, kwargs)
        if cache is not None and not isinstance(cache, PxByCache):
            if cache.get_seq_length() > 0:
                raise TypeError(f"PxByModel: the cache must be a PxByCache, got {type(cache).__name__}")
            cache = None  # an empty generic cache (e.g. made by generate for us): replace it
        if use_cache and cache is None:
            cache = PxByCache()
        B, L = (input_ids if input_ids is not None else input_windows[..., 1, 1]).shape
        past = cache.seen_tokens if cache is not None else 0
        ids = input_ids if input_ids is not None else input_windows[..., 1, 1]

        # windows: offline for the prompt, incrementally from the window state afterwards
        if input_windows is None:
            if cache is not None and cache.windows is not None:
                input_windows = torch.stack([cache.windows.step(ids[:, t]) for t in range(L)], 1) if L > 1 \
                    else cache.windows.step(ids[:, 0])[:, None]
            else:
                input_windows = build_windows(ids, c.first_color_id, c.num_colors, c.row_token_id)
                if cache is not None:
                    cache.windows = WindowState.from_prefix(ids, c.first_color_id, c.num_colors, c.row_token_id)
        elif cache is not None:
            if cache.windows is None:
                cache.windows = WindowState.from_prefix(ids, c.first_color_id, c.num_colors, c.row_token_id)
            else:
                for t in range(L):
                    cache.windows.step(ids[:, t])

        mask = None  # (B, L) for the new tokens, only when some are padding
        if attention_mask is not None:
            if attention_mask.shape[1] not in (L, past + L):
                raise ValueError(f"PxByModel: attention_mask length {attention_mask.shape[1]} is neither L={L} nor past+L={past + L}")
            mask = attention_mask[:, -L:]
            if bool(mask.all()):
                mask = None
            else:  # windows and recurrences need each row's tokens to be contiguous
                right_padded_only = not bool((_padding_layout(mask)[0] > 0).any())

        folded = None
        if cache is not None and L == 1 and c.embedding_type == "pxby" and not torch.is_grad_enabled():
            if cache.embed_folded is None:  # a generation step: the embedding as one matrix (exact up to rounding)
                cache.embed_folded = self.embed.folded()
            folded = cache.embed_folded
        x = self.drop(self.embed(input_windows, folded))
        if c.backbone == "lstm":
            h, state = self.backbone(x, cache.lstm if cache is not None else None, mask, need_state=cache is not None)
            if cache is not None:
                cache.lstm = state
        elif c.backbone == "transformer":
            key_mask = cache.key_mask if cache is not None else None  # None = no padding so far
            # right padding without a cache (training, scoring): causal attention never reaches the padding keys
            # and positions count from 0 anyway, so the faster unmasked causal path gives the same real outputs
            if key_mask is not None or (mask is not None and (cache is not None or not right_padded_only)):
                key_mask = torch.cat([key_mask if key_mask is not None else x.new_ones(B, past, dtype=torch.long),
                                      mask.long() if mask is not None else x.new_ones(B, L, dtype=torch.long)], 1)
            if cache is not None and cache.key_values is None:
                cache.key_values = [[] for _ in self.backbone.blocks]
            h = self.backbone(x, key_mask, past, cache.key_values if cache is not None else None)
            if cache is not None:
                cache.key_mask = key_mask
        else:
            if cache is not None and cache.mamba is None:
                cache.mamba = DynamicCache(config=self.backbone.mamba_config)
            if mask is not None and cache is not None and past > 0:
                raise ValueError("PxBy Mamba: padding is only allowed in the first (prefill) call")
            h = self.backbone(x, cache.mamba if cache is not None else None, mask)
        if cache is not None:
            cache.seen_tokens += L
        if return_dict is False:
            return h, cache if use_cache else None
        return BaseModelOutputWithPast(last_hidden_state=h, **{CACHE_NAME: cache if use_cache else None})


class PxByForCausalLM(PxByPreTrainedModel, GenerationMixin):
    """PxBy with a next-token head; the loss covers every position (labels shifted inside, -100 ignored)."""

    def __init__(self, config: PxByConfig):
        super().__init__(config)
        self.model = PxByModel(config)
        self.lm_head = nn.Linear(self.model.output_size, config.vocab_size)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        # our state is not a stack of key/value layers: give generate a PxByCache instead of a DynamicCache
        cache = _take_cache(None, model_kwargs)
        if cache is None and generation_config.use_cache is not False:
            cache = PxByCache()
        elif cache is not None:
            cache._is_user_defined = True
        if cache is not None:
            model_kwargs[CACHE_NAME] = cache

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, attention_mask=None,
                                      is_first_iteration=False, **kwargs):
        # lean on purpose: with a cache only the new token goes in; the window state rebuilds its 3x3 neighbourhood
        cache = _take_cache(cache, kwargs)
        if next_sequence_length is not None:
            input_ids = input_ids[:, -next_sequence_length:]
        inputs = {"input_ids": input_ids, CACHE_NAME: cache, "attention_mask": attention_mask}
        for k, v in kwargs.items():
            if k not in ("labels", "position_ids", "cache_position", "inputs_embeds") and k not in inputs:
                inputs[k] = v
        return inputs

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_windows: torch.LongTensor | None = None,
        cache: PxByCache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""
        labels: ``(B, L)`` next-token targets aligned with ``input_ids`` (shifted inside; -100 = ignored), e.g.
            ``input_ids`` with padding set to -100.
        logits_to_keep: compute logits only for the last ``n`` positions (0 = all).
        """
        kwargs.pop("position_ids", None)
        kwargs.pop("cache_position", None)
        cache = _take_cache(cache, kwargs)
        h, cache = self.model(input_ids=input_ids, attention_mask=attention_mask, input_windows=input_windows,
                              cache=cache, use_cache=use_cache, return_dict=False)
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            h = h[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            h = h[:, logits_to_keep]
        logits = self.lm_head(h).float()
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_NAME: cache})


# -- registration: at import of the package module only (a copy loaded through trust_remote_code leaves the mapping
# alone), idempotent via exist_ok --------------------------------------------------------------------------------------
PxByConfig.register_for_auto_class()
PxByModel.register_for_auto_class("AutoModel")
PxByForCausalLM.register_for_auto_class("AutoModelForCausalLM")
if __name__.startswith("pixeltok."):
    AutoModel.register(PxByConfig, PxByModel, exist_ok=True)
    AutoModelForCausalLM.register(PxByConfig, PxByForCausalLM, exist_ok=True)
