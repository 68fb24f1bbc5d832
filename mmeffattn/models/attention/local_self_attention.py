"""SASA layer: local self-attention that replaces a k x k convolution."""
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmeffattn.models.utils.backbone import check_int
from mmeffattn.ops import local_attention2d_qkv, local_attention2d_weights
from mmeffattn.registry import MODELS


def query_key_fp32(query: nn.Module, key: nn.Module, x: torch.Tensor):
    """``query(x), key(x)`` computed in fp32 even under autocast.

    Attention logits are products of two projections; in bf16 (8 bits of
    mantissa) their rounding moves large logits by whole units and flips
    the softmax. Under autocast only these two projections leave low
    precision (the value projection and the rest of the network do not).
    """
    if not torch.is_autocast_enabled(x.device.type):
        return query(x), key(x)
    with torch.autocast(x.device.type, enabled=False):
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return query(x), key(x)


@MODELS.register_module()
class LocalSelfAttention2d(BaseModule):
    """Stand-Alone Self-Attention (Ramachandran et al., 2019), Sec. 2.

    1x1 query/key/value projections (full width, no bias: this is what gives
    the paper's parameter counts, see docs/sasa.md), ``num_heads`` heads, a
    ``kernel_size`` window with learned row/col relative embeddings
    (``d/2`` each, shared across heads) and, for ``stride=2``, a 2x2 average
    pool after the attention.

    Args:
        in_channels (int): C_in.
        out_channels (int): C_out, divisible by ``2 * num_heads``.
        kernel_size (int): odd window size k in [1, 63]. Defaults to 7.
        num_heads (int): heads, >= 1. Defaults to 8.
        stride (int): 1 or 2. Defaults to 1.
        border (str): ``'zero'`` or ``'mask'``. Defaults to ``'zero'``.
        scale (float | str, optional): logit scale; None = 1 as in the paper,
            ``'head_dim'`` = 1/sqrt(d) (trains more easily from scratch).
        rel_init_std (float): std of the relative embeddings' normal init
            (not given in the paper). Defaults to 0.02.
        block_size (int): query block of the blocked GEMM (speed only).
        impl (str): op implementation, ``'auto'``, ``'cpp'`` or ``'halo'``.

    Shapes:
        x: (B, C_in, H, W) -> (B, C_out, ceil(H/stride), ceil(W/stride)).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 7,
                 num_heads: int = 8,
                 stride: int = 1,
                 border: str = 'zero',
                 scale: Union[float, str, None] = None,
                 qkv_bias: bool = False,
                 block_size: int = 8,
                 impl: str = 'auto',
                 value_init_std: Optional[float] = None,
                 rel_init_std: float = 0.02,
                 init_cfg=None):
        super().__init__(init_cfg)
        owner = 'LocalSelfAttention2d'
        check_int(owner, 'in_channels', in_channels)
        check_int(owner, 'out_channels', out_channels)
        check_int(owner, 'kernel_size', kernel_size, 1, 63, odd=True)
        check_int(owner, 'num_heads', num_heads)
        check_int(owner, 'block_size', block_size)
        if out_channels % (2 * num_heads):
            raise ValueError(f'out_channels={out_channels} must be divisible '
                             f'by 2 * num_heads={2 * num_heads}')
        if stride not in (1, 2):
            raise ValueError(f'stride must be 1 or 2, got {stride}')
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.num_heads = kernel_size, num_heads
        head_dim = out_channels // num_heads
        if scale == 'head_dim':
            scale = head_dim**-0.5
        elif not (scale is None or isinstance(scale, (int, float))):
            raise ValueError(f"scale must be None, a number or 'head_dim', "
                             f'got {scale!r}')
        self.stride, self.border, self.scale = stride, border, scale
        self.block_size, self.impl = block_size, impl
        self.value_init_std = value_init_std
        self.query = nn.Conv2d(in_channels, out_channels, 1, bias=qkv_bias)
        self.key = nn.Conv2d(in_channels, out_channels, 1, bias=qkv_bias)
        self.value = nn.Conv2d(in_channels, out_channels, 1, bias=qkv_bias)
        self.rel_row = nn.Parameter(
            torch.randn(kernel_size, head_dim // 2) * rel_init_std)
        self.rel_col = nn.Parameter(
            torch.randn(kernel_size, head_dim // 2) * rel_init_std)

    def init_weights(self):
        super().init_weights()
        # The layer owns its init: a parent's Kaiming(fan_out) init of all
        # Conv2d layers would make q.k logits huge and the softmax saturate.
        for proj in (self.query, self.key, self.value):
            proj.reset_parameters()
        if self.value_init_std is not None:  # RetinaNet heads: N(0, 0.01)
            nn.init.normal_(self.value.weight, std=self.value_init_std)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        bsz, _, height, width = x.shape
        return x.view(bsz, self.num_heads, -1, height, width).permute(
            0, 1, 3, 4, 2)

    def projections(self, x: torch.Tensor):
        """``query(x), key(x), value(x)``: one 1x1 conv (one GEMM) with the
        three weights stacked; under autocast, q and k in fp32 (see
        :func:`query_key_fp32`) and v in low precision."""
        if torch.is_autocast_enabled(x.device.type):
            query, key = query_key_fp32(self.query, self.key, x)
            return query, key, self.value(x)
        return self._stacked_projection(x).chunk(3, dim=1)

    def _stacked_projection(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, 3 C_out, H, W): q|k|v by one 1x1 conv."""
        projs = (self.query, self.key, self.value)
        weight = torch.cat([p.weight for p in projs])
        bias = None if self.query.bias is None else torch.cat(
            [p.bias for p in projs])
        return F.conv2d(x, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            qkv = torch.cat(self.projections(x), 1)
        else:  # one GEMM whose output the kernel reads in place
            qkv = self._stacked_projection(x)
        out = local_attention2d_qkv(qkv, self.num_heads, self.rel_row,
                                    self.rel_col, self.kernel_size,
                                    self.border, self.scale,
                                    self.block_size, self.impl)
        if self.stride == 2:
            out = F.avg_pool2d(out, 2, 2, ceil_mode=True)
        return out

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, heads, k*k, H, W): each query's softmax
        weights over its window (row-major offsets), as the forward uses
        them (before the stride-2 pooling)."""
        bsz, _, height, width = x.shape
        query, key = self.query(x), self.key(x)
        attn = local_attention2d_weights(
            self._heads(query), self._heads(key), self.rel_row, self.rel_col,
            self.kernel_size, self.border, self.scale)
        return attn.view(bsz, self.num_heads, -1, height, width)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, '
                f'kernel_size={self.kernel_size}, num_heads={self.num_heads}, '
                f'stride={self.stride}, border={self.border!r}')
