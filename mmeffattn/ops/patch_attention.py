"""Self-attention inside non-overlapping ``b x b`` patches (SASA's attention
stem, paper Sec. 3.2), as a functional op.

For each patch, head and position ``p`` in the patch, a softmax over the
patch's ``b^2`` positions ``s`` of ``q_p . k_s + q_p . r_{s-p}``, where ``r``
concatenates a row-offset and a column-offset embedding (``d/2`` each, index
``offset + b - 1``); output ``sum_s softmax_s(.) v_s``.

Two implementations, the same function (tested against each other and a
pixel-by-pixel brute force):

* CPU, fp32/fp64: a fused C++ kernel (``csrc/patch_attention_cpu.cpp``, in the
  module of :mod:`.cpu_extension`) that reads the projections' (B, n, C, b^2)
  layout, writes the output in image layout and recomputes the weights in
  backward (custom op ``mmeffattn::patch_attention_cpu``);
* elsewhere (GPU, other dtypes, export): batched matmuls in PyTorch.
"""
from typing import List

import torch
from torch import Tensor

from .cpu_extension import load_cpu_extension
from .export import is_exporting


def patch_attention_reference(q: Tensor, k: Tensor, v: Tensor,
                              rel_row: Tensor, rel_col: Tensor,
                              num_heads: int, n_h: int, n_w: int,
                              block: int) -> Tensor:
    """The op in PyTorch (any device and dtype); see :func:`patch_attention`.
    """
    bsz, n, channels, positions = q.shape
    b = block

    def heads(t):  # (B, n, C, P) -> (B, n, heads, P, d)
        return t.view(bsz, n, num_heads, -1, positions).transpose(-1, -2)

    q, k, v = heads(q), heads(k), heads(v)
    d2 = q.shape[-1] // 2
    row = q[..., :d2] @ rel_row.t()  # (B, n, heads, P, 2b-1)
    col = q[..., d2:] @ rel_col.t()
    pos = torch.arange(b, device=q.device)
    rel_index = pos[None, :] - pos[:, None] + b - 1  # (query, key) offsets
    qy, qx = pos.repeat_interleave(b), pos.repeat(b)
    row = row.gather(-1, rel_index[qy].expand(row.shape[:-1] + (b, )))
    col = col.gather(-1, rel_index[qx].expand(col.shape[:-1] + (b, )))
    rel = (row[..., :, None] + col[..., None, :]).flatten(-2)
    attn = (q @ k.transpose(-1, -2) + rel).softmax(-1)
    out = (attn @ v).view(bsz, n_h, n_w, num_heads, b, b, -1)
    # (B, nH, nW, heads, b, b, d) -> (B, heads, d, nH, b, nW, b)
    return out.permute(0, 3, 6, 1, 4, 2, 5).reshape(bsz, channels, n_h * b,
                                                    n_w * b)


def _extension():
    ext = load_cpu_extension()
    if ext is None:
        raise RuntimeError('the CPU kernel of patch_attention could not be '
                           'built here')
    return ext


@torch.library.custom_op('mmeffattn::patch_attention_cpu', mutates_args=(),
                         device_types='cpu')
def patch_attention_cpu(q: Tensor, k: Tensor, v: Tensor, rel_row: Tensor,
                        rel_col: Tensor, num_heads: int, n_h: int, n_w: int,
                        block: int) -> Tensor:
    """(B, n, C, b^2) q, k, v -> (B, C, nH*b, nW*b), fused on CPU."""
    return _extension().patch_forward(q.contiguous(), k.contiguous(),
                                      v.contiguous(), rel_row, rel_col,
                                      num_heads, n_h, n_w, block)


@patch_attention_cpu.register_fake
def _(q, k, v, rel_row, rel_col, num_heads, n_h, n_w, block):
    return q.new_empty((q.shape[0], q.shape[2], n_h * block, n_w * block))


@torch.library.custom_op('mmeffattn::patch_attention_cpu_backward',
                         mutates_args=(), device_types='cpu')
def patch_attention_cpu_backward(grad_out: Tensor, q: Tensor, k: Tensor,
                                 v: Tensor, rel_row: Tensor, rel_col: Tensor,
                                 num_heads: int, n_h: int, n_w: int,
                                 block: int) -> List[Tensor]:
    """Gradients of q, k, v, rel_row, rel_col."""
    return list(_extension().patch_backward(
        grad_out.contiguous(), q.contiguous(), k.contiguous(),
        v.contiguous(), rel_row, rel_col, num_heads, n_h, n_w, block))


@patch_attention_cpu_backward.register_fake
def _(grad_out, q, k, v, rel_row, rel_col, num_heads, n_h, n_w, block):
    return [torch.empty_like(t) for t in (q, k, v, rel_row, rel_col)]


def _setup_context(ctx, inputs, output):
    q, k, v, rel_row, rel_col, *args = inputs
    ctx.save_for_backward(q, k, v, rel_row, rel_col)
    ctx.args = args


def _backward(ctx, grad_out):
    grads = patch_attention_cpu_backward(grad_out, *ctx.saved_tensors,
                                         *ctx.args)
    return tuple(grads) + (None, ) * 4


patch_attention_cpu.register_autograd(_backward, setup_context=_setup_context)


def patch_attention(q: Tensor, k: Tensor, v: Tensor, rel_row: Tensor,
                    rel_col: Tensor, num_heads: int, n_h: int, n_w: int,
                    block: int) -> Tensor:
    """Self-attention inside each ``block x block`` patch.

    Args:
        q, k, v: (B, nH*nW, C, block^2): per patch (row-major), channels
            (``num_heads`` heads of d = C / num_heads, d even) and positions
            (row-major) inside the patch.
        rel_row, rel_col: (2*block - 1, d/2) offset embeddings.
        num_heads, n_h, n_w, block: heads, patches per column / row, patch
            edge.

    Returns:
        (B, C, nH*block, nW*block): the output in image layout.
    """
    bsz, n, channels, positions = q.shape
    if (n != n_h * n_w or positions != block * block
            or channels % (2 * num_heads) or k.shape != q.shape
            or v.shape != q.shape):
        raise ValueError(
            f'q, k, v must be (B, {n_h}*{n_w}, C, {block}^2) with C divisible '
            f'by 2*num_heads={2 * num_heads}, got {tuple(q.shape)}, '
            f'{tuple(k.shape)}, {tuple(v.shape)}')
    if (q.device.type == 'cpu' and q.dtype in (torch.float32, torch.float64)
            and not is_exporting()):
        from .cpu_extension import cpu_extension_available
        if cpu_extension_available():
            return patch_attention_cpu(q, k, v, rel_row.to(q.dtype),
                                       rel_col.to(q.dtype), num_heads, n_h,
                                       n_w, block)
    return patch_attention_reference(q, k, v, rel_row, rel_col, num_heads,
                                     n_h, n_w, block)
