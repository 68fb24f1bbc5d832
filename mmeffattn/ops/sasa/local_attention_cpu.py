"""The CPU backend of :func:`local_attention2d`: the fused kernel
(``_ext/csrc/local_attention_cpu.cpp``) as ``torch.library`` custom ops.

``mmeffattn::local_attention2d_cpu`` (forward: output and attention weights)
and ``mmeffattn::local_attention2d_cpu_backward`` have fake (meta)
implementations and autograd, so ``torch.compile`` keeps them in its graph
(no graph break), and a jit trace (the FLOP counter) sees one node. The
extension is built (or loaded) when the op first runs, never while tracing.
"""
from typing import List

import torch
from torch import Tensor

from .._ext import require_extension


def _extension():
    return require_extension('local_attention2d (use impl="halo")')


def _canonical_strides(t: Tensor) -> Tensor:
    """``t`` with the stride of every size-1 dimension set to the product of
    the later sizes (a contiguous tensor's). A size-1 dimension is never
    stepped, so its stride is arbitrary (PyTorch's ``contiguous()`` keeps
    it); the kernel's layout checks compare strides."""
    strides, later = list(t.stride()), 1
    for dim in reversed(range(t.dim())):
        if t.shape[dim] == 1:
            strides[dim] = later
        later *= t.shape[dim]
    if strides == list(t.stride()):
        return t
    return t.as_strided(t.shape, strides, t.storage_offset())


def _planes(t: Tensor) -> Tensor:
    """(B, heads, d, H, W) whose (d, H, W) blocks are contiguous: the kernel's
    layout; a view of a channels-first (B, C, H, W) tensor already is."""
    t = _canonical_strides(t)
    height, width = t.shape[-2:]
    if t.stride(-1) == 1 and t.stride(-2) == width and \
            t.stride(-3) == height * width:
        return t
    return _canonical_strides(t.contiguous())


def _same_strides(q: Tensor, k: Tensor, v: Tensor):
    q, k, v = _planes(q), _planes(k), _planes(v)
    if not (q.stride()[:2] == k.stride()[:2] == v.stride()[:2]):
        q, k, v = (_canonical_strides(t.contiguous()) for t in (q, k, v))
    return q, k, v


@torch.library.custom_op('mmeffattn::local_attention2d_cpu', mutates_args=(),
                         device_types='cpu')
def local_attention2d_cpu(q: Tensor, k: Tensor, v: Tensor, rel_row: Tensor,
                          rel_col: Tensor, kernel_size: int, mask: bool,
                          scale: float) -> Tensor:
    """Channels-first q, k, v (B, heads, d, H, W) -> output (B, heads, d, H, W)
    (contiguous, i.e. (B, C, H, W)). Logits are ``scale * q . (k + r)``.
    Backward saves only the inputs and recomputes the attention weights."""
    return _extension().local_attention_forward(
        *_same_strides(q, k, v), rel_row, rel_col, kernel_size, mask, scale)


@local_attention2d_cpu.register_fake
def _(q, k, v, rel_row, rel_col, kernel_size, mask, scale):
    return q.new_empty(q.shape)


@torch.library.custom_op('mmeffattn::local_attention2d_cpu_backward',
                         mutates_args=(), device_types='cpu')
def local_attention2d_cpu_backward(grad_out: Tensor, q: Tensor, k: Tensor,
                                   v: Tensor, rel_row: Tensor,
                                   rel_col: Tensor, kernel_size: int,
                                   mask: bool, scale: float) -> List[Tensor]:
    """Gradients of q, k, v (contiguous (B, heads, d, H, W)), rel_row,
    rel_col."""
    grads = [q.new_empty(q.shape) for _ in range(3)]
    rel_grads = _extension().local_attention_backward(
        grad_out.contiguous(), *_same_strides(q, k, v), rel_row, rel_col,
        kernel_size, mask, scale, *grads)
    return grads + list(rel_grads)


@local_attention2d_cpu_backward.register_fake
def _(grad_out, q, k, v, rel_row, rel_col, kernel_size, mask, scale):
    return [q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape),
            torch.empty_like(rel_row), torch.empty_like(rel_col)]


def _setup_context(ctx, inputs, output):
    q, k, v, rel_row, rel_col, kernel_size, mask, scale = inputs
    ctx.save_for_backward(q, k, v, rel_row, rel_col)
    ctx.args = (kernel_size, mask, scale)


def _backward(ctx, grad_out):
    grads = local_attention2d_cpu_backward(grad_out, *ctx.saved_tensors,
                                           *ctx.args)
    return tuple(grads) + (None, None, None)


local_attention2d_cpu.register_autograd(_backward,
                                        setup_context=_setup_context)


@torch.library.custom_op('mmeffattn::local_attention2d_qkv_cpu',
                         mutates_args=(), device_types='cpu')
def local_attention2d_qkv_cpu(qkv: Tensor, rel_row: Tensor, rel_col: Tensor,
                              kernel_size: int, mask: bool,
                              scale: float) -> Tensor:
    """The same op on one projection output ``qkv`` (B, 3, heads, d, H, W)
    (a view of a (B, 3C, H, W) 1x1 conv output); its backward writes one
    (B, 3, heads, d, H, W) gradient, so autograd assembles nothing."""
    qkv = _planes(qkv)
    return _extension().local_attention_forward(
        qkv[:, 0], qkv[:, 1], qkv[:, 2], rel_row, rel_col, kernel_size, mask,
        scale)


@local_attention2d_qkv_cpu.register_fake
def _(qkv, rel_row, rel_col, kernel_size, mask, scale):
    return qkv.new_empty(qkv[:, 0].shape)


@torch.library.custom_op('mmeffattn::local_attention2d_qkv_cpu_backward',
                         mutates_args=(), device_types='cpu')
def local_attention2d_qkv_cpu_backward(grad_out: Tensor, qkv: Tensor,
                                       rel_row: Tensor, rel_col: Tensor,
                                       kernel_size: int, mask: bool,
                                       scale: float) -> List[Tensor]:
    """Gradients of qkv (contiguous (B, 3, heads, d, H, W)), rel_row,
    rel_col."""
    qkv = _planes(qkv)
    grad = qkv.new_empty(qkv.shape)
    rel_grads = _extension().local_attention_backward(
        grad_out.contiguous(), qkv[:, 0], qkv[:, 1], qkv[:, 2], rel_row,
        rel_col, kernel_size, mask, scale, grad[:, 0], grad[:, 1],
        grad[:, 2])
    return [grad] + list(rel_grads)


@local_attention2d_qkv_cpu_backward.register_fake
def _(grad_out, qkv, rel_row, rel_col, kernel_size, mask, scale):
    return [qkv.new_empty(qkv.shape), torch.empty_like(rel_row),
            torch.empty_like(rel_col)]


def _setup_context_qkv(ctx, inputs, output):
    qkv, rel_row, rel_col, kernel_size, mask, scale = inputs
    ctx.save_for_backward(qkv, rel_row, rel_col)
    ctx.args = (kernel_size, mask, scale)


def _backward_qkv(ctx, grad_out):
    grads = local_attention2d_qkv_cpu_backward(grad_out, *ctx.saved_tensors,
                                               *ctx.args)
    return tuple(grads) + (None, None, None)


local_attention2d_qkv_cpu.register_autograd(_backward_qkv,
                                            setup_context=_setup_context_qkv)
