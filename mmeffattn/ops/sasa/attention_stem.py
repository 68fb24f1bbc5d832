"""SASA's attention stem fused with its BatchNorm, ReLU and max pool (CPU).

The stem (paper Sec. 3.2) attends inside non-overlapping ``b x b`` patches at
full resolution, then applies BatchNorm, ReLU and a ``b x b`` max pool of
stride ``b``, whose windows are the patches. Unfused, every step writes and
reads several (B, C, H, W) maps at full resolution (C = 64 at 224^2: 103 MB
each at B = 8) and their gradients; that traffic, not the attention's
arithmetic, dominated a SASA-R50 training step. Fused
(``_ext/csrc/attention_stem_cpu.cpp``, :mod:`.attention_stem_cpu`), each
patch's projections, attention, normalisation and pool happen in cache:

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
from typing import Optional

import torch
from torch import Tensor

from .._ext import extension_available
from ..export import is_exporting
from .attention_stem_cpu import attention_stem_backward, attention_stem_forward

FUSED_BLOCKS = (4, 8)  # b^2 a multiple of 16 (and 8): the kernel's vectors


def attention_stem_fused_runs(x: Tensor, block: int) -> bool:
    """Whether :func:`attention_stem_bn_relu_pool` runs for ``x``: on CPU,
    ``block`` in ``FUSED_BLOCKS``, not exporting, the kernels built here."""
    if x.device.type != 'cpu' or block not in FUSED_BLOCKS or is_exporting():
        return False
    return extension_available()


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
                                rel_col: Tensor,
                                running_mean: Optional[Tensor],
                                running_var: Optional[Tensor],
                                weight: Optional[Tensor],
                                bias: Optional[Tensor], training: bool,
                                momentum: float, eps: float, num_heads: int,
                                block: int) -> Tensor:
    """``max_pool2d(relu(norm(patch_attention(...))), block, block)``, fused.

    Where the normalised values of a patch tie only after rounding, the pool
    takes the position of the extreme y (unfused: the first of the ties).

    Args:
        x: (B, C_in, nH*block, nW*block) padded input, fp32 or fp64 on CPU.
        w_query, w_key: (C, C_in) projections; w_value: (block^2, C, C_in),
            the value projection of each position in the patch.
        rel_row, rel_col: (2*block - 1, d/2) relative embeddings.
        running_mean, running_var, weight, bias, training, momentum, eps:
            BatchNorm's, as :func:`torch.nn.functional.batch_norm` takes
            them: with ``training`` the batch statistics normalise and
            update the running ones (when given) in place by ``momentum``.
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
    weight = x.new_ones(channels) if weight is None else weight.to(dtype)
    bias = x.new_zeros(channels) if bias is None else bias.to(dtype)
    inputs = (x, w_query, w_key, w_value_t, rel_row, rel_col)
    with torch.no_grad():
        total, squares, *extremes = attention_stem_forward(
            *(t.detach() for t in inputs), num_heads, block)
    batch_stats = training or running_mean is None
    if batch_stats:
        with torch.no_grad():
            count = x.shape[0] * x.shape[2] * x.shape[3]
            mean = total / count
            var = (squares / count - mean.square()).clamp_(min=0)
            if training and running_mean is not None:
                _update_running_stats(running_mean, running_var, mean, var,
                                      count, momentum)
            mean, var = mean.to(dtype), var.to(dtype)
    else:
        mean, var = running_mean.to(dtype), running_var.to(dtype)
    inv_std = (var + eps).rsqrt()
    if torch.jit.is_tracing() or not (torch.is_grad_enabled() and any(
            t.requires_grad for t in inputs + (weight, bias))):
        return _pool(extremes, weight, bias, mean, inv_std)[0]
    return AttentionStemPool.apply(*inputs, weight, bias, mean, inv_std,
                                   extremes, batch_stats, num_heads, block)


def _update_running_stats(running_mean: Tensor, running_var: Tensor,
                          mean: Tensor, var: Tensor, count: int,
                          momentum: float) -> None:
    """What BatchNorm does to its running statistics in training (the
    variance unbiased)."""
    unbiased = var * (count / max(count - 1, 1))
    running_mean.lerp_(mean.to(running_mean.dtype), momentum)
    running_var.lerp_(unbiased.to(running_var.dtype), momentum)
