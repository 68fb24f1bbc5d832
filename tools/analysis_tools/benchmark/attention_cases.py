"""Attention-layer cases: each builds one layer of the case's ``impl`` and
its input.

- ``sasa``: a SASA layer on our op (``ours``) or on the naive unfold
  (``unfold``), or a 3x3 conv of the same width (``conv3x3``).
- ``window``: AlterNet's window attention (``ours``), the reference code's
  explicit einsum per window (``einsum``) or global SDPA (``global``).
- ``set``: SeT attention (``set``) or global softmax attention with the
  same projections (``sdpa``) on a token grid.

This module imports nothing of its package (the tests load it by its path).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SASALayer(nn.Module):
    """1x1 q/k/v projections (one conv) + local attention: ``ours`` (the
    layer's path, :func:`local_attention2d_qkv`) or ``unfold`` (naive)."""

    def __init__(self, channels, kernel_size, heads, impl):
        super().__init__()
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        d = channels // heads
        self.rel_row = nn.Parameter(torch.randn(kernel_size, d // 2))
        self.rel_col = nn.Parameter(torch.randn(kernel_size, d // 2))
        self.k, self.heads, self.impl = kernel_size, heads, impl

    def forward(self, x):
        from mmeffattn.ops import (local_attention2d_qkv,
                                   local_attention2d_unfold)
        qkv = self.qkv(x)
        if self.impl == 'ours':
            return local_attention2d_qkv(qkv, self.heads, self.rel_row,
                                         self.rel_col, self.k)
        b, c, h, w = x.shape
        q, k, v = qkv.view(b, 3, self.heads, c // self.heads, h,
                           w).permute(1, 0, 2, 4, 5, 3)
        out = local_attention2d_unfold(q, k, v, self.rel_row, self.rel_col,
                                       self.k)
        return out.permute(0, 1, 4, 2, 3).reshape(b, c, h, w)


class WindowAttentionCase(nn.Module):
    """AlterNet's window attention on a (B, 3C, H, W) q|k|v map: ``ours``
    (one masked SDPA call over padded windows), ``einsum`` (the reference
    code's explicit logits + softmax per window, same padding and mask) or
    ``global`` (SDPA over the whole map: what the window replaces)."""

    def __init__(self, heads, window, impl):
        super().__init__()
        self.heads, self.window, self.impl = heads, window, impl
        self.table = nn.Parameter(torch.randn(2 * window - 1, 2 * window - 1))

    def forward(self, x):
        from mmeffattn.ops import (padding_mask, relative_position_index,
                                   window_attention2d, window_merge,
                                   window_partition)
        q, k, v = x.chunk(3, dim=1)
        if self.impl == 'ours':
            return window_attention2d(q, k, v, self.window, self.table,
                                      self.heads)
        b, c, h, w = q.shape
        if self.impl == 'global':
            def split(t):
                return t.view(b, self.heads, -1, h * w).transpose(-1, -2)
            out = F.scaled_dot_product_attention(split(q), split(k),
                                                 split(v))
            return out.transpose(-1, -2).reshape(b, c, h, w)
        ws = self.window
        (qw, hp, wp), (kw, _, _), (vw, _, _) = (
            window_partition(t, ws) for t in (q, k, v))
        qw, kw, vw = (t.unflatten(-1, (self.heads, -1)) for t in (qw, kw, vw))
        logits = torch.einsum('bnihd,bnjhd->bnhij', qw, kw) * qw.shape[-1]**-.5
        logits = logits + self.table.flatten()[relative_position_index(
            ws).to(x.device)]
        if (hp, wp) != (h, w):
            valid = padding_mask(h, w, ws, x.device)       # (nW,1,1,w*w)
            logits = logits.masked_fill(~valid, float('-inf'))
        out = torch.einsum('bnhij,bnjhd->bnihd', logits.softmax(-1), vw)
        return window_merge(out.flatten(-2), ws, h, w, hp, wp)


class SDPAAttention(nn.Module):
    """Global multi-head softmax attention with the same projections."""

    def __init__(self, channels, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x, hw_shape=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads) \
            .permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class WithShape(nn.Module):
    """A token-grid attention ``attn(x, hw_shape)`` called as ``(x)``."""

    def __init__(self, attn, hw_shape):
        super().__init__()
        self.attn, self.hw_shape = attn, hw_shape

    def forward(self, x):
        return self.attn(x, self.hw_shape)


def build_window_case(case):
    b, c, h, w = case['B'], case['C'], case['H'], case['W']
    layer = WindowAttentionCase(case['heads'], case['window'], case['impl'])
    return layer, torch.randn(b, 3 * c, h, w)


def build_sasa_case(case):
    b, c, h, w = case['B'], case['C'], case['H'], case['W']
    if case['impl'] == 'conv3x3':
        layer = nn.Conv2d(c, c, 3, padding=1, bias=False)
    else:
        layer = SASALayer(c, case['k'], case['heads'], case['impl'])
    return layer, torch.randn(b, c, h, w)


def build_set_case(case):
    from mmeffattn.models import SeTAttention
    c, heads = case['C'], case['heads']
    hw = (case['H'], case['W'])
    if case['impl'] == 'set':
        attn = SeTAttention(c, heads)
    else:
        attn = SDPAAttention(c, heads)
    return WithShape(attn, hw), torch.randn(case['B'], hw[0] * hw[1], c)


class PerForwardNystrom(nn.Module):
    """``model`` with the Nystrom basis of each of its SeT attention layers
    (unit anchors and ``K_ZZ^(-1/2)``, an eigendecomposition) computed in
    every forward, in eval as in training, by the op
    :func:`mmeffattn.ops.nystrom_basis`: the cost of SeT attention without
    the basis that ``eval()`` caches (case key ``nystrom_cache=False``). The
    layers compute with their cached basis, which holds the same values."""

    def __init__(self, model):
        super().__init__()
        from mmeffattn.models import SeTAttention
        self.model, self.training = model, model.training
        self.set_layers = [
            m for m in model.modules()
            if isinstance(m, SeTAttention) and m.feature_map == 'nystrom']
        if not self.set_layers:
            raise ValueError('nystrom_cache=False: the model has no SeT '
                             'attention with Nystrom features')

    def forward(self, *args, **kwargs):
        from mmeffattn.ops import nystrom_basis
        for layer in self.set_layers:
            if not layer.training:  # in training the layer computes it
                nystrom_basis(layer.anchors, layer.kernel_sigma)
        return self.model(*args, **kwargs)
