"""Linear-angular attention (Castling-ViT, You et al., CVPR 2023)."""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import build_dropout
from mmengine.model import BaseModule

from mmeffattn.models.utils.backbone import check_int
from mmeffattn.registry import MODELS


def linear_angular_attention(q: torch.Tensor, k: torch.Tensor,
                             v: torch.Tensor) -> torch.Tensor:
    """``0.5 v + (1/pi) q^ (k^T v)`` with unit-norm q^, k^ per head.

    The angular kernel ``1 - angle(q, k)/pi`` linearised to its first two
    terms, ``1/2 + q^.k^/pi``, without a normaliser; grouped as
    ``q^ (k^T v)`` it costs O(N d^2) and never forms N x N.
    Shapes: (B, h, N, d) each -> (B, h, N, d).
    """
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    kv = (k.transpose(-2, -1) @ v) / math.pi        # (B, h, d, d)
    return (q @ kv).add_(v, alpha=0.5)


def sequence_conv(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Depthwise convolution along the tokens, one filter per head shared
    over the head dimension: ``Conv2d(h, h, (k, 1), groups=h)`` on v.

    Computed as a grouped ``conv1d`` over (B, h*d, N), one group per
    channel: the same numbers as the Conv2d, about 3x faster on CPU.
    Shapes: v (B, h, N, d), weight (h, 1, k, 1) -> (B, h, N, d).
    """
    batch, heads, num_tokens, dims = v.shape
    taps = weight.shape[2]
    x = v.transpose(2, 3).reshape(batch, heads * dims, num_tokens)
    w = weight.reshape(heads, 1, taps).repeat_interleave(dims, dim=0)
    out = F.conv1d(x, w, padding=taps // 2, groups=heads * dims)
    return out.view(batch, heads, dims, num_tokens).transpose(2, 3)


def masked_softmax_attention(q: torch.Tensor, k: torch.Tensor,
                             v: torch.Tensor,
                             threshold: float) -> torch.Tensor:
    """Castling-ViT's training-only auxiliary branch:
    ``(softmax(q k^T / sqrt(d)) * [softmax > threshold]) v``.
    Shapes: (B, h, N, d) each -> (B, h, N, d); forms the N x N map."""
    attn = (q @ k.transpose(-2, -1) * q.shape[-1]**-0.5).softmax(dim=-1)
    return (attn * (attn > threshold)) @ v


@MODELS.register_module()
class LinearAngularAttention(BaseModule):
    """Castling-ViT's multi-head linear-angular attention.

    ``out = proj(normalize(0.5 v + q^(k^T v)/pi + a * aux) + dconv(v))``
    where ``aux`` is the masked softmax attention, used only in training
    with weight ``a = aux_weight`` (annealed to 0 by
    :class:`~mmeffattn.engine.LinearAngularAuxAnnealHook`), ``normalize``
    is L2 over the head dimension and ``dconv`` a depthwise 9x1 convolution
    along the token sequence, one filter per head shared over the head
    dimension. Inference never forms an N x N matrix.

    The parameter names (``qkv``, ``proj``) are those of mmpretrain's
    ``MultiheadAttention``; ``dconv`` is the one addition.

    Args:
        embed_dims (int): C.
        num_heads (int): h; C divisible by h.
        qkv_bias (bool): bias of the qkv projection. Defaults to False
            (the official default).
        dconv_kernel (int): taps of the sequence convolution. Defaults to 9.
        aux_threshold (float): softmax entries kept by the auxiliary mask
            (the released code's 0.02). Defaults to 0.02.
        aux_weight (float): initial weight of the auxiliary branch in
            training. Defaults to 0 (pure linear-angular, as inference).
        proj_drop (float), dropout_layer (dict): as mmpretrain's attention.

    Shapes:
        x: (B, N, C) -> (B, N, C).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = False,
                 dconv_kernel: int = 9,
                 aux_threshold: float = 0.02,
                 aux_weight: float = 0.0,
                 proj_drop: float = 0.,
                 dropout_layer: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        check_int('LinearAngularAttention', 'embed_dims', embed_dims)
        check_int('LinearAngularAttention', 'num_heads', num_heads)
        check_int('LinearAngularAttention', 'dconv_kernel', dconv_kernel,
                  odd=True)
        if embed_dims % num_heads:
            raise ValueError(f'LinearAngularAttention: embed_dims '
                             f'{embed_dims} is not divisible by num_heads '
                             f'{num_heads}')
        if dconv_kernel % 2 != 1:
            raise ValueError(f'LinearAngularAttention: dconv_kernel must be '
                             f'odd (same-length output), got {dconv_kernel}')
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.head_dims = embed_dims // num_heads
        self.aux_threshold, self.aux_weight = aux_threshold, aux_weight
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.dconv = nn.Conv2d(
            num_heads, num_heads, (dconv_kernel, 1),
            padding=(dconv_kernel // 2, 0), groups=num_heads, bias=False)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        self.out_drop = build_dropout(
            dropout_layer or dict(type='Dropout', drop_prob=0.))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, num_tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, num_tokens, 3, self.num_heads,
                                  self.head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]

        out = linear_angular_attention(q, k, v)
        if self.training and self.aux_weight > 0:
            out = out + self.aux_weight * masked_softmax_attention(
                q, k, v, self.aux_threshold)
        # self.dconv holds the filters; sequence_conv computes the same
        out = F.normalize(out, dim=-1) + sequence_conv(v, self.dconv.weight)
        out = out.transpose(1, 2).reshape(batch, num_tokens, self.embed_dims)
        return self.out_drop(self.proj_drop(self.proj(out)))
