"""Linear-angular attention (Castling-ViT, You et al., CVPR 2023)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import build_dropout
from mmengine.model import BaseModule

from mmeffattn.models.utils.backbone import check_int
from mmeffattn.ops import (linear_angular_attention, masked_softmax_attention,
                           sequence_conv)
from mmeffattn.registry import MODELS


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
