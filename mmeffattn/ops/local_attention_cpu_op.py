"""The fused CPU kernel of SASA as a ``torch.library`` custom op.

``mmeffattn::local_attention2d_cpu`` (forward: output and attention weights)
and ``mmeffattn::local_attention2d_cpu_backward`` have fake (meta)
implementations and autograd, so ``torch.compile`` keeps them in its graph
(no graph break), and a jit trace (the FLOP counter) sees one node. The
extension is built (or loaded) when the op first runs, never while tracing.
"""
from typing import List, Tuple

import torch
from torch import Tensor

from .cpu_extension import load_cpu_extension


def _extension():
    ext = load_cpu_extension()
    if ext is None:
        raise RuntimeError('the CPU kernel of local_attention2d could not be '
                           'built here; use impl="halo"')
    return ext


@torch.library.custom_op('mmeffattn::local_attention2d_cpu', mutates_args=(),
                         device_types='cpu')
def local_attention2d_cpu(q: Tensor, k: Tensor, v: Tensor, rel_row: Tensor,
                          rel_col: Tensor, kernel_size: int,
                          mask: bool) -> Tuple[Tensor, Tensor]:
    """(BH, H, W, d) q (scaled), k, v -> output (BH, H, W, d) and attention
    weights (BH, H, W, k*k)."""
    out, attn = _extension().forward(q.contiguous(), k.contiguous(),
                                     v.contiguous(), rel_row, rel_col,
                                     kernel_size, mask)
    return out, attn


@local_attention2d_cpu.register_fake
def _(q, k, v, rel_row, rel_col, kernel_size, mask):
    return (torch.empty_like(q, memory_format=torch.contiguous_format),
            q.new_empty(tuple(q.shape[:3]) + (kernel_size * kernel_size, )))


@torch.library.custom_op('mmeffattn::local_attention2d_cpu_backward',
                         mutates_args=(), device_types='cpu')
def local_attention2d_cpu_backward(grad_out: Tensor, q: Tensor, k: Tensor,
                                   v: Tensor, rel_row: Tensor,
                                   rel_col: Tensor, attn: Tensor,
                                   kernel_size: int) -> List[Tensor]:
    """Gradients of q, k, v, rel_row, rel_col."""
    return list(_extension().backward(grad_out.contiguous(), q.contiguous(),
                                      k.contiguous(), v.contiguous(),
                                      rel_row, rel_col, attn, kernel_size))


@local_attention2d_cpu_backward.register_fake
def _(grad_out, q, k, v, rel_row, rel_col, attn, kernel_size):
    return [torch.empty_like(t, memory_format=torch.contiguous_format)
            for t in (q, k, v, rel_row, rel_col)]


def _setup_context(ctx, inputs, output):
    q, k, v, rel_row, rel_col, kernel_size, _ = inputs
    ctx.save_for_backward(q, k, v, rel_row, rel_col, output[1])
    ctx.kernel_size = kernel_size


def _backward(ctx, grad_out, grad_attn):
    q, k, v, rel_row, rel_col, attn = ctx.saved_tensors
    grads = local_attention2d_cpu_backward(grad_out, q, k, v, rel_row,
                                           rel_col, attn, ctx.kernel_size)
    return tuple(grads) + (None, None)


local_attention2d_cpu.register_autograd(_backward,
                                        setup_context=_setup_context)
