"""The CPU backend of the fused attention stem: its two kernel passes
(``_ext/csrc/attention_stem_cpu.cpp``) as ``torch.library`` custom ops."""
from typing import List

import torch
from torch import Tensor

from .._ext import require_extension


def _extension():
    return require_extension('the attention stem')


@torch.library.custom_op('mmeffattn::attention_stem_forward',
                         mutates_args=(), device_types='cpu')
def attention_stem_forward(x: Tensor, w_query: Tensor, w_key: Tensor,
                           w_value: Tensor, rel_row: Tensor, rel_col: Tensor,
                           num_heads: int, block: int) -> List[Tensor]:
    """The patch attention output y, reduced: per-channel sum and sum of
    squares over the batch and every position ((C,) each, fp64), and per
    (image, channel, patch) its max and min ((B, C, nH, nW) each)."""
    return list(_extension().attention_stem_forward(
        x, w_query, w_key, w_value, rel_row, rel_col, num_heads, block))


@attention_stem_forward.register_fake
def _(x, w_query, w_key, w_value, rel_row, rel_col, num_heads, block):
    channels = w_query.shape[0]
    shape = (x.shape[0], channels, x.shape[2] // block, x.shape[3] // block)
    return [x.new_empty(channels, dtype=torch.float64),
            x.new_empty(channels, dtype=torch.float64), x.new_empty(shape),
            x.new_empty(shape)]


@torch.library.custom_op('mmeffattn::attention_stem_backward',
                         mutates_args=(), device_types='cpu')
def attention_stem_backward(x: Tensor, w_query: Tensor, w_key: Tensor,
                            w_value: Tensor, rel_row: Tensor,
                            rel_col: Tensor, grad_max: Tensor,
                            y_pooled: Tensor, alpha: Tensor, beta: Tensor,
                            gamma: Tensor, num_heads: int, block: int,
                            need_input_grad: bool) -> List[Tensor]:
    """Gradients (x or an empty tensor, w_query, w_key, w_value, rel_row,
    rel_col) for ``dL/dy_p = alpha grad_max [y_p = y_pooled] + beta +
    gamma y_p`` per channel (y recomputed; the first such p)."""
    return list(_extension().attention_stem_backward(
        x, w_query, w_key, w_value, rel_row, rel_col, grad_max, y_pooled,
        alpha, beta, gamma, num_heads, block, need_input_grad))


@attention_stem_backward.register_fake
def _(x, w_query, w_key, w_value, rel_row, rel_col, grad_max, y_pooled, alpha,
      beta, gamma, num_heads, block, need_input_grad):
    dx = torch.empty_like(x) if need_input_grad else x.new_empty(0)
    return [dx] + [torch.empty_like(t)
                   for t in (w_query, w_key, w_value, rel_row, rel_col)]
