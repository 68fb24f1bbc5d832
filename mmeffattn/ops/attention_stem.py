"""SASA's attention stem fused with its BatchNorm, ReLU and max pool (CPU).

The stem (paper Sec. 3.2) attends inside non-overlapping ``b x b`` patches at
full resolution, then applies BatchNorm, ReLU and a ``b x b`` max pool of
stride ``b``, whose windows are the patches. Unfused, every step writes and
reads several (B, C, H, W) maps at full resolution (C = 64 at 224^2: 103 MB
each at B = 8) and their gradients; that traffic, not the attention's
arithmetic, dominated a SASA-R50 training step. Fused
(``csrc/attention_stem_cpu.cpp``), each patch's projections, attention,
normalisation and pool happen in cache:

* forward: one pass gives BatchNorm's batch statistics (per-channel sum and
  sum of squares of the attention output y, in double) and each patch's
  max and min of y; BatchNorm's scale ``weight / std`` is per channel, so
  the pooled output is ``relu(scale * y + shift)`` at the max of y where
  the scale is >= 0 and at the min where it is negative;
* backward recomputes y per patch and applies BatchNorm's backward through
  its batch statistics (which needs sums over the pooled maxima only),
  then the attention's and projections' backward.

The same function as ``max_pool(relu(BatchNorm2d(patch_attention(...))))``
in values, gradients and running statistics (tests, fp64). Other norms,
devices and dtypes use that unfused path (:class:`AttentionStem`).
"""
from typing import List

import torch
import torch.nn as nn
from torch import Tensor

from .cpu_extension import load_cpu_extension

FUSED_BLOCKS = (4, 8)  # b^2 a multiple of 16 (and 8): the kernel's vectors


def _extension():
    ext = load_cpu_extension()
    if ext is None:
        raise RuntimeError('the CPU kernel of the attention stem could not be '
                           'built here')
    return ext


@torch.library.custom_op('mmeffattn::attention_stem_forward',
                         mutates_args=(), device_types='cpu')
def attention_stem_forward(x: Tensor, w_query: Tensor, w_key: Tensor,
                           w_value: Tensor, rel_row: Tensor, rel_col: Tensor,
                           num_heads: int, block: int) -> List[Tensor]:
    """The patch attention output y, reduced: per-channel sum and sum of
    squares over the batch and every position ((C,) each, fp64), and per
    (image, channel, patch) its max and min ((B, C, nH, nW) each)."""
    return list(_extension().stem_forward(x, w_query, w_key, w_value,
                                          rel_row, rel_col, num_heads, block))


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
    return list(_extension().stem_backward(
        x, w_query, w_key, w_value, rel_row, rel_col, grad_max, y_pooled,
        alpha, beta, gamma, num_heads, block, need_input_grad))


@attention_stem_backward.register_fake
def _(x, w_query, w_key, w_value, rel_row, rel_col, grad_max, y_pooled, alpha,
      beta, gamma, num_heads, block, need_input_grad):
    dx = torch.empty_like(x) if need_input_grad else x.new_empty(0)
    return [dx] + [torch.empty_like(t)
                   for t in (w_query, w_key, w_value, rel_row, rel_col)]


def _pool(extremes, weight, bias, mean, inv_std):
    """``relu(max_p(scale * y_p + shift))`` from the patch extremes of y,
    and the y it takes; ``scale = weight * inv_std``."""
    y_max, y_min = extremes
    scale = weight * inv_std
    shift = bias - mean * scale
    rising = (scale >= 0).view(-1, 1, 1)  # max of y, else min of y
    y_pooled = torch.where(rising, y_max, y_min)
    out = (y_pooled * scale.view(-1, 1, 1) + shift.view(-1, 1, 1)).clamp_(
        min=0)
    return out, y_pooled, scale


class AttentionStemPool(torch.autograd.Function):
    """``max_pool(relu(bn(patch_attention)))`` from the forward kernel's
    patch extremes, given BatchNorm's statistics; with ``batch_stats`` they
    are the batch's own (``mean``, ``inv_std`` are functions of the inputs)
    and backward differentiates through them."""

    @staticmethod
    def forward(ctx, x, w_query, w_key, w_value, rel_row, rel_col, weight,
                bias, mean, inv_std, extremes, batch_stats, num_heads, block):
        out, y_pooled, scale = _pool(extremes, weight, bias, mean, inv_std)
        ctx.save_for_backward(x, w_query, w_key, w_value, rel_row, rel_col,
                              scale, mean, inv_std, out, y_pooled)
        ctx.args = (batch_stats, num_heads, block)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (x, w_query, w_key, w_value, rel_row, rel_col, scale, mean, inv_std,
         out, y_pooled) = ctx.saved_tensors
        batch_stats, num_heads, block = ctx.args
        per_channel = (-1, 1, 1)
        grad_max = grad_out * (out > 0)          # ReLU, at the maxima only
        x_hat = (y_pooled - mean.view(per_channel)) * inv_std.view(
            per_channel)
        grad_bias = grad_max.sum((0, 2, 3))
        grad_weight = (grad_max * x_hat).sum((0, 2, 3))
        beta = gamma = torch.zeros_like(scale)
        if batch_stats:  # through the batch mean and variance
            count = x.shape[0] * x.shape[2] * x.shape[3]
            mean_g, mean_gx = grad_bias / count, grad_weight / count
            beta = -scale * (mean_g - mean_gx * mean * inv_std)
            gamma = -scale * mean_gx * inv_std
        grads = attention_stem_backward(
            x, w_query, w_key, w_value, rel_row, rel_col, grad_max,
            y_pooled, scale, beta, gamma, num_heads, block,
            ctx.needs_input_grad[0])
        grad_x = grads[0] if ctx.needs_input_grad[0] else None
        return (grad_x, *grads[1:], grad_weight, grad_bias) + (None, ) * 6


def attention_stem_bn_relu_pool(x: Tensor, w_query: Tensor, w_key: Tensor,
                                w_value: Tensor, rel_row: Tensor,
                                rel_col: Tensor, norm: nn.BatchNorm2d,
                                num_heads: int, block: int) -> Tensor:
    """``max_pool2d(relu(norm(patch_attention(...))), block, block)``, fused.

    Where the normalised values of a patch tie only after rounding, the pool
    takes the position of the extreme y (unfused: the first of the ties).

    Args:
        x: (B, C_in, nH*block, nW*block) padded input, fp32 or fp64 on CPU.
        w_query, w_key: (C, C_in) projections; w_value: (block^2, C, C_in),
            the value projection of each position in the patch.
        rel_row, rel_col: (2*block - 1, d/2) relative embeddings.
        norm: the BatchNorm2d (its running statistics are updated as its
            own forward would).
        num_heads, block: heads (C divisible by 2*heads) and patch edge
            (one of ``FUSED_BLOCKS``).

    Returns:
        (B, C, nH, nW).
    """
    if block not in FUSED_BLOCKS:
        raise ValueError(f'block must be one of {FUSED_BLOCKS}, got {block}')
    dtype = x.dtype
    w_value_t = w_value.permute(1, 2, 0).contiguous()  # (C, C_in, P)
    rel_row, rel_col = rel_row.to(dtype), rel_col.to(dtype)
    channels = w_query.shape[0]
    weight = norm.weight.to(dtype) if norm.affine else x.new_ones(channels)
    bias = norm.bias.to(dtype) if norm.affine else x.new_zeros(channels)
    inputs = (x, w_query, w_key, w_value_t, rel_row, rel_col)
    with torch.no_grad():
        total, squares, *extremes = attention_stem_forward(
            *(t.detach() for t in inputs), num_heads, block)
    batch_stats = norm.training or norm.running_mean is None
    if batch_stats:
        with torch.no_grad():
            count = x.shape[0] * x.shape[2] * x.shape[3]
            mean = total / count
            var = (squares / count - mean.square()).clamp_(min=0)
            if norm.training and norm.track_running_stats:
                _update_running_stats(norm, mean, var, count)
            mean, var = mean.to(dtype), var.to(dtype)
    else:
        mean, var = norm.running_mean.to(dtype), norm.running_var.to(dtype)
    inv_std = (var + norm.eps).rsqrt()
    if torch.jit.is_tracing() or not (torch.is_grad_enabled() and any(
            t.requires_grad for t in inputs + (weight, bias))):
        return _pool(extremes, weight, bias, mean, inv_std)[0]
    return AttentionStemPool.apply(*inputs, weight, bias, mean, inv_std,
                                   extremes, batch_stats, num_heads, block)


def _update_running_stats(norm: nn.BatchNorm2d, mean: Tensor, var: Tensor,
                          count: int) -> None:
    """What ``nn.BatchNorm2d.forward`` does to its buffers in training."""
    factor = norm.momentum
    if norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # cumulative moving average
            factor = 1.0 / float(norm.num_batches_tracked)
    unbiased = var * (count / max(count - 1, 1))
    norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), factor)
    norm.running_var.lerp_(unbiased.to(norm.running_var.dtype), factor)
