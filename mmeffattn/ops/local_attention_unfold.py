"""The naive SASA implementation: unfold k^2 copies of keys and values.

This is what the public re-implementations do (memory ``C * k^2 * HW``). It is
kept as the benchmark baseline and as a second reference in the tests.
"""
from typing import Optional

import torch
import torch.nn.functional as F


def local_attention2d_weights(q, k, rel_row, rel_col, kernel_size: int,
                              border: str = 'zero',
                              scale: Optional[float] = None) -> torch.Tensor:
    """The SASA softmax weights of every query over its k x k window.

    q, k: (B, h, H, W, d) -> (B, h, k^2, H*W); window offsets in row-major
    order (row -r..r, then column -r..r); each column sums to 1.
    """
    bsz, heads, height, width, d = q.shape
    r = kernel_size // 2
    kk = kernel_size * kernel_size
    if scale is not None:
        q = q * scale
    qf = q.permute(0, 1, 4, 2, 3).reshape(bsz, heads, d, 1, height * width)
    rel = torch.cat([
        rel_row[:, None, :].expand(kernel_size, kernel_size, d // 2),
        rel_col[None, :, :].expand(kernel_size, kernel_size, d // 2)
    ], -1).reshape(kk, d).t()  # (d, k^2)
    logits = (qf * (_unfold(k, kernel_size) + rel[:, :, None])).sum(2)
    if border == 'mask':
        ones = torch.ones(1, 1, height, width, dtype=q.dtype, device=q.device)
        inside = F.unfold(ones, kernel_size, padding=r).view(1, 1, kk, -1)
        logits = logits.masked_fill(inside == 0, float('-inf'))
    return logits.softmax(2)


def _unfold(x, kernel_size):  # (B,h,H,W,d) -> (B,h,d,k^2,H*W)
    bsz, heads, height, width, d = x.shape
    x = x.permute(0, 1, 4, 2, 3).reshape(bsz, heads * d, height, width)
    cols = F.unfold(x, kernel_size, padding=kernel_size // 2)
    return cols.view(bsz, heads, d, kernel_size * kernel_size,
                     height * width)


def local_attention2d_unfold(q, k, v, rel_row, rel_col, kernel_size: int,
                             border: str = 'zero',
                             scale: Optional[float] = None) -> torch.Tensor:
    """Same contract as :func:`mmeffattn.ops.local_attention2d`."""
    bsz, heads, height, width, d = v.shape
    attn = local_attention2d_weights(q, k, rel_row, rel_col, kernel_size,
                                     border, scale)
    out = (attn[:, :, None] * _unfold(v, kernel_size)).sum(3)  # (B,h,d,HW)
    return out.view(bsz, heads, d, height, width).permute(0, 1, 3, 4, 2)
