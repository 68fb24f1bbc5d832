"""Non-overlapping local window attention on 2-D maps (AlterNet's MSA).

Each ``w x w`` window attends within itself, with one learned relative
position bias shared by every head and window. Maps that ``w`` does not
divide are padded at the bottom/right and the padded keys are masked, so any
H x W works (the reference code requires H, W divisible by ``w``). All
windows of all images go through one ``scaled_dot_product_attention`` call.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def relative_position_index(window_size: int) -> Tensor:
    """(w^2, w^2) index into a flattened (2w-1, 2w-1) table.

    Entry [i, j] is the offset of key j from query i: row offset
    ``(r_j - r_i + w - 1)`` times ``2w - 1`` plus column offset
    ``(c_j - c_i + w - 1)``.
    """
    coords = torch.stack(torch.meshgrid(
        torch.arange(window_size), torch.arange(window_size),
        indexing='ij')).flatten(1)                      # (2, w^2)
    delta = coords[:, None, :] - coords[:, :, None] + window_size - 1
    return delta[0] * (2 * window_size - 1) + delta[1]


def window_partition(x: Tensor, window_size: int) -> Tuple[Tensor, int, int]:
    """(B, C, H, W) -> (B, nH * nW, w * w, C), zero-padded bottom/right.

    Returns the windows and the padded height and width.
    """
    b, c, h, w = x.shape
    ws = window_size
    pad_h, pad_w = (-h) % ws, (-w) % ws
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, c, hp // ws, ws, wp // ws, ws)
    x = x.permute(0, 2, 4, 3, 5, 1).reshape(b, -1, ws * ws, c)
    return x, hp, wp


def window_merge(x: Tensor, window_size: int, height: int, width: int,
                 padded_height: int, padded_width: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B, nW, w*w, C) -> (B, C, H, W)."""
    b, c, ws = x.shape[0], x.shape[-1], window_size
    x = x.view(b, padded_height // ws, padded_width // ws, ws, ws, c)
    x = x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, padded_height,
                                            padded_width)
    return x[:, :, :height, :width]


def padding_mask(height: int, width: int, window_size: int,
                 device=None) -> Tensor:
    """(nH * nW, 1, 1, w * w) bool: True where a window's key is a real
    pixel, False on the bottom/right padding."""
    ws = window_size
    valid = torch.ones(1, 1, height, width, device=device)
    valid, _, _ = window_partition(valid, ws)            # (1, nW, w*w, 1)
    return valid[0, :, None, None, :, 0] > 0


def window_attention2d(q: Tensor, k: Tensor, v: Tensor, window_size: int,
                       rel_bias: Tensor = None, num_heads: int = 1,
                       scale: float = None) -> Tensor:
    """Multi-head attention within non-overlapping windows.

    Args:
        q, k, v (Tensor): (B, heads * d, H, W) maps (v may have another d).
        window_size (int): window edge ``w``.
        rel_bias (Tensor, optional): (2w-1, 2w-1) relative position bias
            table, added to every head's logits.
        num_heads (int): heads; channels split as (heads, d).
        scale (float, optional): logit scale; default 1/sqrt(d).

    Returns:
        Tensor: (B, heads * d_v, H, W).
    """
    if q.dim() != 4 or q.shape != k.shape or q.shape[-2:] != v.shape[-2:]:
        raise ValueError('window_attention2d expects q, k of one (B, C, H, W)'
                         f' shape and v of the same H, W; got {tuple(q.shape)}'
                         f', {tuple(k.shape)}, {tuple(v.shape)}')
    if q.shape[1] % num_heads or v.shape[1] % num_heads:
        raise ValueError(f'channels {q.shape[1]}/{v.shape[1]} are not '
                         f'divisible by num_heads={num_heads}')
    if rel_bias is not None and tuple(rel_bias.shape) != (
            2 * window_size - 1, ) * 2:
        raise ValueError(f'rel_bias must be ({2 * window_size - 1}, '
                         f'{2 * window_size - 1}) for window {window_size}, '
                         f'got {tuple(rel_bias.shape)}')
    b, _, h, w = q.shape
    ws = window_size
    heads = num_heads

    def split(t):  # (B, nW, w*w, heads*d) -> (B, nW, heads, w*w, d)
        t, hp, wp = window_partition(t, ws)
        return t.unflatten(-1, (heads, -1)).transpose(2, 3), hp, wp

    (qw, hp, wp), (kw, _, _), (vw, _, _) = split(q), split(k), split(v)
    mask = None
    if rel_bias is not None:
        index = relative_position_index(ws).to(q.device)
        mask = rel_bias.flatten()[index].to(q.dtype)       # (w*w, w*w)
    if hp != h or wp != w:
        valid = padding_mask(h, w, ws, q.device)           # (nW,1,1,w*w)
        neg = torch.zeros(valid.shape, dtype=q.dtype, device=q.device)
        neg = neg.masked_fill(~valid, float('-inf'))
        mask = neg if mask is None else mask + neg
    # windows into the batch: 4-D SDPA (what the ONNX exporter supports)
    num_windows = qw.shape[1]
    if mask is not None and mask.dim() == 4:               # per window
        mask = mask.expand(b, -1, -1, -1, -1).flatten(0, 1)
    out = F.scaled_dot_product_attention(
        qw.flatten(0, 1), kw.flatten(0, 1), vw.flatten(0, 1),
        attn_mask=mask, scale=scale).unflatten(0, (b, num_windows))
    out = out.transpose(2, 3).flatten(-2)                  # (B,nW,w*w,C)
    return window_merge(out, ws, h, w, hp, wp)


def window_attention2d_flops(batch: int, heads: int, height: int, width: int,
                             head_dim: int, window_size: int,
                             value_dim: int = None) -> int:
    """MACs of :func:`window_attention2d`: q k^T and attn v over the padded
    windows (what the SDPA call computes)."""
    ws = window_size
    windows = (-(-height // ws)) * (-(-width // ws))
    area = ws * ws
    value_dim = head_dim if value_dim is None else value_dim
    return batch * heads * windows * area * area * (head_dim + value_dim)
