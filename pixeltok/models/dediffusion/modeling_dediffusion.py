"""De-Diffusion (Wei et al., CVPR 2024): an image -> text encoder trained through a FROZEN text -> image decoder.

The encoder reads an image and writes K discrete tokens of the decoder's own text vocabulary. Training passes them
to the frozen decoder as the text before the image; the decoder's likelihood of the image is the only loss, and
only the encoder learns, so the text becomes whatever lets the decoder rebuild the image: a complete description.

Here the decoder is a pixeltok causal LM that draws the image as exact pixel tokens (``recipes/train_lm.py`` with
``data.task: draw``), so the reconstruction loss is an exact code length (bits per image token) instead of FID.

    images (B, C, H, W)
      -> patch embedding + position                                   (B, N, D)   N = (H / p) * (W / p)
      -> trunk: num_trunk_layers self-attention layers                 (B, N, D)
      -> attention pooler: K learned queries, num_pooler_layers        (B, K, D)   (self-attention + cross-attention)
      -> head: logits over the decoder's text tokens                   (B, K, T)   T = len(config.text_token_ids)
      -> hard Gumbel-softmax, straight-through                         (B, K, T)   one-hot forward, soft backward
      -> one-hot @ decoder.input_embeddings[text_token_ids]            (B, K, d)   -> decoder(inputs_embeds=...)

The one-hot multiplies the decoder's INPUT embedding matrix (:meth:`DeDiffusionEncoder.embed_tokens`): the decoder
sees exactly the embedding of a real token in the forward pass, the encoder gets the full gradient in the backward
pass, and at inference the text is the argmax tokens, readable by any model with that tokenizer
(:meth:`DeDiffusionEncoder.describe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_dediffusion import DeDiffusionConfig


@dataclass
class DeDiffusionOutput(ModelOutput):
    """``logits`` ``(B, K, T)`` over the text tokens; ``tokens`` ``(B, K, T)`` the (straight-through) one-hot sample,
    or the argmax one-hot when not sampling; ``token_ids`` ``(B, K)`` their ids in the decoder's vocabulary."""

    logits: torch.FloatTensor | None = None
    tokens: torch.FloatTensor | None = None
    token_ids: torch.LongTensor | None = None


class DeDiffusionPreTrainedModel(PreTrainedModel):
    config_class = DeDiffusionConfig
    base_model_prefix = "dediffusion"
    main_input_name = "pixel_values"

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.MultiheadAttention):
            init.normal_(module.in_proj_weight, std=std)
            init.zeros_(module.in_proj_bias)
        elif isinstance(module, DeDiffusionEncoder):
            init.normal_(module.position_embeddings, std=std)
            init.normal_(module.queries, std=self.config.query_init_std)


def _layer(config: DeDiffusionConfig, cross: bool) -> nn.Module:
    cls = nn.TransformerDecoderLayer if cross else nn.TransformerEncoderLayer
    return cls(config.hidden_size, config.num_attention_heads, config.intermediate_size, config.dropout,
               activation="gelu", batch_first=True, norm_first=True)


class DeDiffusionEncoder(DeDiffusionPreTrainedModel):
    """Image -> K text tokens of a frozen decoder's vocabulary (see the module docstring for the shapes)."""

    def __init__(self, config: DeDiffusionConfig):
        super().__init__(config)
        if not config.text_token_ids:
            raise ValueError("DeDiffusionConfig.text_token_ids is empty: give the decoder's text token ids "
                             "(pixeltok.models.dediffusion.text_token_ids(processor))")
        D, p = config.hidden_size, config.patch_size
        n_patches = (config.image_height // p) * (config.image_width // p)
        self.patch_embed = nn.Conv2d(config.num_channels, D, kernel_size=p, stride=p)
        self.position_embeddings = nn.Parameter(torch.zeros(1, n_patches, D))
        self.trunk = nn.ModuleList([_layer(config, cross=False) for _ in range(config.num_trunk_layers)])
        self.queries = nn.Parameter(torch.zeros(1, config.num_queries, D))
        self.pooler = nn.ModuleList([_layer(config, cross=True) for _ in range(config.num_pooler_layers)])
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, len(config.text_token_ids))
        # saved with the weights: transformers 5 builds models on the meta device, where a non-persistent buffer
        # would come back uninitialised
        self.register_buffer("text_token_ids", torch.tensor(config.text_token_ids, dtype=torch.long))
        self.tokenizer = None  # set by from_pretrained when the folder has one, or by the user; used by describe()
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, tau: float | None = None, hard: bool | None = None,
                sample: bool | None = None, return_dict: bool = True):
        """``pixel_values`` ``(B, C, H, W)`` in [-1, 1] -> :class:`DeDiffusionOutput`.

        ``sample`` (default: ``self.training``) draws a Gumbel-softmax sample at temperature ``tau`` (default
        ``config.tau_end``), hard (straight-through) unless ``hard=False``; otherwise the tokens are the argmax."""
        x = self.patch_embed(pixel_values).flatten(2).transpose(1, 2) + self.position_embeddings  # (B, N, D)
        for layer in self.trunk:
            x = layer(x)
        q = self.queries.expand(x.shape[0], -1, -1)  # (B, K, D)
        for layer in self.pooler:
            q = layer(q, x)  # self-attention among the queries, cross-attention to the patches
        logits = self.head(self.norm(q)).float()  # (B, K, T)
        sample = self.training if sample is None else sample
        if sample:
            tau = self.config.tau_end if tau is None else tau
            tokens = F.gumbel_softmax(logits, tau=tau, hard=self.config.hard if hard is None else hard)
        else:
            tokens = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        token_ids = self.text_token_ids[tokens.argmax(-1)]
        out = DeDiffusionOutput(logits=logits, tokens=tokens, token_ids=token_ids)
        return out if return_dict else out.to_tuple()

    def embed_tokens(self, tokens: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        """``(B, K, T)`` one-hot (or soft) tokens @ the decoder's input embeddings of the text tokens -> ``(B, K, d)``:
        ``inputs_embeds`` for the text positions of the decoder (gradients flow to ``tokens`` only)."""
        return tokens.to(embedding_weight.dtype) @ embedding_weight[self.text_token_ids]

    # -- images in, strings out --------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence) -> torch.Tensor:
        """Images (PIL, arrays, paths, ``datasets`` image dicts) -> ``(B, C, H, W)`` float in [-1, 1], fitted to
        ``image_height`` x ``image_width`` (``config.fit``: "resize", or "line": height kept to scale, then padded
        on the right with the border colour)."""
        from PIL import Image

        from pixeltok.tokenization.image_io import composite_on, decode_image_input, prepare_reader_image, to_rgba

        H, W = self.config.image_height, self.config.image_width
        out = np.empty((len(images), H, W, 3), np.float32)
        for i, im in enumerate(images):
            if self.config.fit == "line":
                rgb = np.asarray(prepare_reader_image(im, H, max_width=W).convert("RGB"))
                border = np.median(np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]), 0)
                canvas = np.empty((H, W, 3), np.float32)
                canvas[:] = border
                canvas[:, :rgb.shape[1]] = rgb
                out[i] = canvas
            else:  # the same pixels whatever the input form (path, bytes, PIL, array), transparency over white
                rgb = composite_on(to_rgba(decode_image_input(im)))
                if rgb.shape[:2] != (H, W):
                    rgb = np.asarray(Image.fromarray(rgb, "RGB").resize((W, H), Image.BILINEAR))
                out[i] = rgb
        x = torch.from_numpy(out).permute(0, 3, 1, 2) / 127.5 - 1.0
        return x.to(self.device, self.dtype)

    @torch.no_grad()
    def describe(self, images: Sequence, tokenizer=None, return_ids: bool = False) -> list:
        """The text of each image: the argmax tokens, decoded with ``tokenizer`` (default: the one saved with the
        model). ``return_ids`` gives the decoder-vocabulary id arrays instead."""
        was_training = self.training
        self.eval()
        ids = self(self.preprocess(list(images)), sample=False).token_ids.cpu().numpy()
        self.train(was_training)
        if return_ids:
            return list(ids)
        tokenizer = tokenizer or self.tokenizer
        if tokenizer is None:
            raise ValueError("describe() needs the decoder's tokenizer: pass tokenizer=..., or load a folder saved "
                             "with it (recipes/train_dediffusion.py saves it)")
        return [tokenizer.decode(r.tolist(), skip_special_tokens=True) for r in ids]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        from transformers import AutoTokenizer

        hub = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
        try:
            model.tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **hub)
        except (OSError, ValueError):  # a folder without the decoder's tokenizer: describe() asks for one
            model.tokenizer = None
        return model


def batch_collapse(logits: torch.Tensor) -> torch.Tensor:
    """``(B, K, T)`` logits -> scalar in ``[0, log T]``: for each of the K positions, log T minus the information its
    token carries about the image within the batch, ``H(mean_b p_b) - mean_b H(p_b)``, meaned over K.

    It is log T when every image gets the same text (the collapse a straight-through encoder falls into: one text
    that helps the decoder on average) and also when every image's distribution is flat (spread probabilities would
    otherwise pass for diversity while the argmax stays the same); it falls as confident, different images' tokens
    differ. ``training.diversity_weight`` times it is added to the loss."""
    p = logits.float().softmax(-1)  # (B, K, T)
    mean = p.mean(0)  # (K, T)
    marginal = -(mean * mean.clamp_min(1e-12).log()).sum(-1)  # (K,)
    own = -(p * p.clamp_min(1e-12).log()).sum(-1).mean(0)  # (K,)
    return math.log(logits.shape[-1]) - (marginal - own).mean()


def text_repetition(logits: torch.Tensor) -> torch.Tensor:
    """``(B, K, T)`` logits -> scalar in ``[0, 1]``: the chance that two different positions of one text draw the
    same token (``p_k . p_k'`` over pairs ``k != k'``, meaned over pairs and images). 1 when all K positions write
    one token ("on grey" fifteen times: text no caption looks like, so the decoder draws worse than from no text);
    ``training.repetition_weight`` times it is added to the loss."""
    p = logits.float().softmax(-1)  # (B, K, T)
    k = p.shape[1]
    if k < 2:
        return p.new_zeros(())
    gram = p @ p.transpose(1, 2)  # (B, K, K)
    return (gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(-1)).mean() / (k * (k - 1))


def text_token_ids(processor) -> list[int]:
    """The decoder-vocabulary ids a De-Diffusion encoder may write: every token of ``processor.tokenizer`` that is
    not a pixel token, not a special token, and decodes on its own to non-empty printable text."""
    tok = processor.tokenizer
    excluded = set(processor.pixel_token_ids.tolist()) | set(tok.all_special_ids) | {
        processor.image_token_id, processor.boi_token_id, processor.eoi_token_id}
    keep = []
    for i in range(len(tok)):
        if i in excluded:
            continue
        s = tok.decode([i])
        if s.strip() and s.isprintable() and "\ufffd" not in s:
            keep.append(i)
    return keep


__all__ = ["DeDiffusionEncoder", "DeDiffusionOutput", "DeDiffusionPreTrainedModel", "batch_collapse",
           "text_repetition", "text_token_ids"]

DeDiffusionConfig.register_for_auto_class()
DeDiffusionEncoder.register_for_auto_class("AutoModel")
if __name__.startswith("pixeltok."):
    AutoModel.register(DeDiffusionConfig, DeDiffusionEncoder, exist_ok=True)
