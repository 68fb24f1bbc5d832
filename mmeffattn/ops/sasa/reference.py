"""The naive SASA implementation: unfold k^2 copies of keys and values.

This is what the public re-implementations do (memory ``C * k^2 * HW``). It is
the benchmark's baseline and a second reference in the tests, not a path of
the models.
"""
from typing import Optional

import torch

from .local_attention import local_attention2d_weights, unfold_windows


def local_attention2d_unfold(q, k, v, rel_row, rel_col, kernel_size: int,
                             border: str = 'zero',
                             scale: Optional[float] = None) -> torch.Tensor:
    """Same contract as :func:`mmeffattn.ops.local_attention2d`."""
    bsz, heads, height, width, d = v.shape
    attn = local_attention2d_weights(q, k, rel_row, rel_col, kernel_size,
                                     border, scale)
    # (B, h, d, H*W)
    out = (attn[:, :, None] * unfold_windows(v, kernel_size)).sum(3)
    return out.view(bsz, heads, d, height, width).permute(0, 1, 3, 4, 2)
