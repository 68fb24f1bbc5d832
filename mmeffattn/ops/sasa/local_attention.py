"""2-D local (neighbourhood) self-attention of SASA, as a functional op.

For each pixel ``(i, j)`` and head, a softmax over its ``k x k`` neighbourhood
``N(i, j)`` (centred, ``r = k // 2``) of ``q_ij . k_ab + q_ij . r_{a-i, b-j}``,
where ``r`` concatenates a learned row-offset embedding and a learned
column-offset embedding (``d/2`` channels each)::

    out_ij = sum_{ab in N(i,j)}
             softmax_ab(scale * q_ij . (k_ab + r_{a-i,b-j})) v_ab

Borders (the SASA paper is silent; see docs/sasa.md):

* ``'zero'``: positions outside the image carry ``k = v = 0`` and take part in
  the softmax (logit ``q . r``), as zero-padded convolutions, HaloNet and the
  public re-implementations do;
* ``'mask'``: positions outside the image are excluded from the softmax.

Two implementations, same semantics (both tested against a brute-force loop):

* ``'cpp'`` (CPU; the default there): a fused C++ kernel
  (``_ext/csrc/local_attention_cpu.cpp``, OpenMP;
  :mod:`.local_attention_cpu`) on channels-first planes, vectorised over
  each row's queries; it saves only its inputs and recomputes the attention
  weights in backward; registered as the custom ops
  ``mmeffattn::local_attention2d_cpu`` and ``..._qkv_cpu`` (stacked q|k|v of
  one 1x1 conv, :func:`local_attention2d_qkv`), so that torch.compile keeps it
  in its graph;
* ``'halo'`` (any device/dtype; the default on GPU): "blocked halo GEMM",
  HaloNet-style but exact SASA windows: queries are cut into ``b x b`` blocks,
  each block attends with two batched GEMMs to its ``(b + k - 1)^2`` halo of
  keys/values, and an additive mask keeps only each query's ``k x k`` window.
  Its autograd function saves only its inputs and recomputes in backward.

Neither materialises the ``C * k^2 * HW`` unfolded keys/values of the naive
implementation (:func:`.reference.local_attention2d_unfold`).

Export (:func:`~mmeffattn.ops.export.export_mode`, legacy ONNX export): the
blocked forward as plain torch ops, neither the kernel nor an autograd
function.

Mixed precision: the op picks its compute dtype itself, whatever autocast
says, so that a backward outside autocast (mmengine's ``AmpOptimWrapper``)
recomputes exactly what the forward did. The C++ kernel computes in fp32
(fp64 for fp64 inputs): fp16/bf16 inputs are cast to fp32 and the output back
to the input dtype. The halo path computes in q's dtype with a softmax in at
least fp32.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .._ext import extension_available
from ..export import is_exporting
from .local_attention_cpu import (local_attention2d_cpu,
                                  local_attention2d_qkv_cpu)

BORDERS = ('zero', 'mask')
IMPLS = ('auto', 'cpp', 'halo')


def _check_inputs(q, k, v, rel_row, rel_col, kernel_size, border):
    if border not in BORDERS:
        raise ValueError(f'border must be one of {BORDERS}, got {border!r}')
    if not (isinstance(kernel_size, int) and kernel_size >= 1
            and kernel_size % 2 == 1):
        raise ValueError(f'kernel_size must be an odd int >= 1, got '
                         f'{kernel_size!r}')
    if q.dim() != 5 or q.shape != k.shape or k.shape != v.shape:
        raise ValueError('q, k, v must have the same shape (B, heads, H, W, d)'
                         f', got {tuple(q.shape)}, {tuple(k.shape)}, '
                         f'{tuple(v.shape)}')
    d = q.shape[-1]
    want = (kernel_size, d // 2)
    if d % 2 or tuple(rel_row.shape) != want or tuple(rel_col.shape) != want:
        raise ValueError(
            f'head dim d={d} must be even and rel_row/rel_col must have shape '
            f'(kernel_size, d/2)={want}, got {tuple(rel_row.shape)} and '
            f'{tuple(rel_col.shape)}')


def _window_index(block: int, kernel_size: int, device) -> torch.Tensor:
    """(b, b + k - 1) index: halo row/col -> offset in the window, clamped."""
    q_pos = torch.arange(block, device=device)[:, None]
    halo_pos = torch.arange(block + kernel_size - 1, device=device)[None, :]
    return halo_pos - q_pos  # in [0, k) inside the window


def _block_mask(block: int, kernel_size: int, height: int, width: int,
                n_h: int, n_w: int, border: str, dtype,
                device) -> torch.Tensor:
    """Additive mask (n_blocks or 1, b^2, halo^2): 0 where a key counts."""
    halo = block + kernel_size - 1
    off = _window_index(block, kernel_size, device)
    in_win_1d = (off >= 0) & (off < kernel_size)  # (b, halo)
    in_win = (in_win_1d[:, None, :, None] & in_win_1d[None, :, None, :])
    in_win = in_win.reshape(1, block * block, halo * halo)
    if border == 'mask':
        r = kernel_size // 2
        rows = (torch.arange(n_h, device=device)[:, None] * block +
                torch.arange(halo, device=device)[None, :] - r)  # (n_h, halo)
        cols = (torch.arange(n_w, device=device)[:, None] * block +
                torch.arange(halo, device=device)[None, :] - r)
        key_in = ((rows >= 0) & (rows < height))[:, None, :, None] & \
                 ((cols >= 0) & (cols < width))[None, :, None, :]
        qrows = (torch.arange(n_h, device=device)[:, None] * block +
                 torch.arange(block, device=device)[None, :])
        qcols = (torch.arange(n_w, device=device)[:, None] * block +
                 torch.arange(block, device=device)[None, :])
        q_in = (qrows < height)[:, None, :, None] & \
               (qcols < width)[None, :, None, :]  # (n_h, n_w, b, b)
        key_in = key_in.reshape(n_h * n_w, 1, halo * halo)
        q_in = q_in.reshape(n_h * n_w, block * block, 1)
        # Padding queries (discarded) keep their keys so no row is all -inf.
        in_win = in_win & (key_in | ~q_in)
    mask = torch.zeros(in_win.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~in_win, float('-inf'))


def _to_blocks(x: torch.Tensor, block: int, size: int, step: int):
    """(B, h, Hp, Wp, d) -> (B, h, nH*nW, size*size, d) windows of ``size``."""
    bsz, heads, _, _, d = x.shape
    win = x.unfold(2, size, step).unfold(3, size, step)  # B,h,nH,nW,d,s,s
    n_h, n_w = win.shape[2], win.shape[3]
    return win.permute(0, 1, 2, 3, 5, 6, 4).reshape(bsz, heads, n_h * n_w,
                                                    size * size, d)


def local_attention2d_forward(q, k, v, rel_row, rel_col, kernel_size: int,
                              border: str = 'zero',
                              scale: Optional[float] = None,
                              block_size: int = 8) -> torch.Tensor:
    """Differentiable forward of :func:`local_attention2d` (no recompute)."""
    bsz, heads, height, width, d = q.shape
    r = kernel_size // 2
    block = max(1, min(block_size, max(height, width)))
    halo = block + 2 * r
    n_h, n_w = -(-height // block), -(-width // block)
    pad_h, pad_w = n_h * block - height, n_w * block - width
    if scale is not None:
        q = q * scale
    qb = _to_blocks(F.pad(q, (0, 0, 0, pad_w, 0, pad_h)), block, block, block)
    kv_pad = (0, 0, r, r + pad_w, r, r + pad_h)
    kb = _to_blocks(F.pad(k, kv_pad), block, halo, block)
    vb = _to_blocks(F.pad(v, kv_pad), block, halo, block)

    # relative logits q.r_row[a] and q.r_col[b] (q already scaled), spread
    # over the halo rows/cols; entries outside the window are masked below
    half = d // 2
    row_logit = qb[..., :half] @ rel_row.t()  # (B,h,n,b^2,k)
    col_logit = qb[..., half:] @ rel_col.t()
    off = _window_index(block, kernel_size, q.device).clamp(0, kernel_size - 1)
    qy = torch.arange(block, device=q.device).repeat_interleave(block)
    qx = torch.arange(block, device=q.device).repeat(block)
    shape = qb.shape[:3] + (block * block, halo)
    row_halo = row_logit.gather(-1, off[qy].expand(shape))
    col_halo = col_logit.gather(-1, off[qx].expand(shape))
    rel = (row_halo[..., :, None] + col_halo[..., None, :]).flatten(-2)

    mask = _block_mask(block, kernel_size, height, width, n_h, n_w, border,
                       q.dtype, q.device)
    logits = qb @ kb.transpose(-1, -2) + rel + mask
    attn = logits.softmax(-1, dtype=torch.promote_types(
        q.dtype, torch.float32)).to(q.dtype)
    out = attn @ vb  # (B,h,n,b^2,d)
    out = out.reshape(bsz, heads, n_h, n_w, block, block, d)
    out = out.permute(0, 1, 2, 4, 3, 5, 6).reshape(bsz, heads, n_h * block,
                                                   n_w * block, d)
    if pad_h or pad_w:
        out = out[:, :, :height, :width]
    return out


def _no_autocast(t: torch.Tensor):
    return torch.autocast(t.device.type, enabled=False)


def _kernel_args(t: torch.Tensor, scale: Optional[float]):
    """The C++ kernel's compute dtype (fp32; fp64 for fp64 inputs) and
    logit scale."""
    compute = torch.float64 if t.dtype == torch.float64 else torch.float32
    return compute, 1.0 if scale is None else float(scale)


def _use_cpp(q: torch.Tensor, impl: str) -> bool:
    if impl == 'halo':
        return False
    ok = q.device.type == 'cpu' and q.is_floating_point()
    if ok:
        ok = extension_available()
    if impl == 'cpp' and not ok:
        raise RuntimeError('impl="cpp" needs a CPU floating-point input and '
                           'the compiled CPU kernel')
    return ok


class LocalAttention2dFunction(torch.autograd.Function):
    """Saves only its inputs; backward recomputes the blocked forward.

    Shows in a traced graph as ``prim::PythonOp.LocalAttention2dFunction``,
    which the FLOP counter of tools/analysis_tools/get_flops.py handles.
    """

    @staticmethod
    def forward(ctx, q, k, v, rel_row, rel_col, kernel_size, border, scale,
                block_size):
        ctx.args = (kernel_size, border, scale, block_size)
        ctx.save_for_backward(q, k, v, rel_row, rel_col)
        with torch.no_grad(), _no_autocast(q):
            out = local_attention2d_forward(q, k, v, rel_row, rel_col,
                                            kernel_size, border, scale,
                                            block_size)
        # a view output could not be modified in place downstream (ReLU)
        return out.clone() if out._is_view() else out

    @staticmethod
    def backward(ctx, grad_out):
        inputs = [t.detach().requires_grad_(need)
                  for t, need in zip(ctx.saved_tensors, ctx.needs_input_grad)]
        with torch.enable_grad(), _no_autocast(grad_out):
            out = local_attention2d_forward(*inputs, *ctx.args)
        wanted = [t for t in inputs if t.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, grad_out))
        return tuple(next(grads) if t.requires_grad else None
                     for t in inputs) + (None, ) * 4


def local_attention2d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      rel_row: torch.Tensor, rel_col: torch.Tensor,
                      kernel_size: int, border: str = 'zero',
                      scale: Optional[float] = None,
                      block_size: int = 8,
                      impl: str = 'auto') -> torch.Tensor:
    """SASA local attention over ``kernel_size x kernel_size`` windows.

    Args:
        q, k, v: (B, heads, H, W, d) queries, keys, values (d even).
        rel_row, rel_col: (kernel_size, d/2) row / column offset embeddings;
            index ``a`` is offset ``a - kernel_size // 2``.
        kernel_size: odd window size k; any H, W (also smaller than k).
        border: ``'zero'`` or ``'mask'`` (see module docstring).
        scale: logit scale; ``None`` = 1 (the paper has no 1/sqrt(d)).
        block_size: query block edge b of the blocked GEMM (speed only).
        impl: ``'auto'`` (C++ kernel on CPU, else halo), ``'cpp'`` or
            ``'halo'``.

    Returns:
        (B, heads, H, W, d).
    """
    _check_inputs(q, k, v, rel_row, rel_col, kernel_size, border)
    if impl not in IMPLS:
        raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')
    exporting = is_exporting()
    if not exporting and _use_cpp(q, impl):
        compute, kernel_scale = _kernel_args(q, scale)
        # channels-first planes: views (no copy) when q, k, v are views of
        # a (B, C, H, W) tensor, as in LocalSelfAttention2d
        with _no_autocast(q):
            planes = [t.to(compute).permute(0, 1, 4, 2, 3) for t in (q, k, v)]
            out = local_attention2d_cpu(
                *planes, rel_row.to(compute), rel_col.to(compute),
                kernel_size, border == 'mask',
                kernel_scale)
            return out.permute(0, 1, 3, 4, 2).to(q.dtype)
    with _no_autocast(q):  # one compute dtype: q's
        k, v, rel_row, rel_col = (t.to(q.dtype) for t in (k, v, rel_row,
                                                          rel_col))
        if exporting:  # plain torch ops only: the blocked forward
            return local_attention2d_forward(q, k, v, rel_row, rel_col,
                                             kernel_size, border, scale,
                                             block_size)
        return LocalAttention2dFunction.apply(q, k, v, rel_row, rel_col,
                                              kernel_size, border, scale,
                                              block_size)


def local_attention2d_qkv(qkv: torch.Tensor, num_heads: int,
                          rel_row: torch.Tensor, rel_col: torch.Tensor,
                          kernel_size: int, border: str = 'zero',
                          scale: Optional[float] = None,
                          block_size: int = 8,
                          impl: str = 'auto') -> torch.Tensor:
    """:func:`local_attention2d` on one stacked projection output.

    Args:
        qkv: (B, 3C, H, W): queries, keys, values stacked on channels (the
            output of one 1x1 conv), each split into ``num_heads`` heads.
        num_heads, rel_row, rel_col, kernel_size, border, scale, block_size,
            impl: as :func:`local_attention2d`.

    Returns:
        (B, C, H, W). On the C++ kernel nothing is copied or permuted: the
        kernel reads the heads' channel planes of ``qkv`` and its backward
        writes one (B, 3C, H, W) gradient.
    """
    if qkv.dim() != 4 or qkv.shape[1] % (3 * num_heads):
        raise ValueError('qkv must be (B, 3C, H, W) with C divisible by '
                         f'num_heads={num_heads}, got {tuple(qkv.shape)}')
    bsz, channels3, height, width = qkv.shape
    planes = qkv.view(bsz, 3, num_heads, -1, height, width)
    if (impl not in ('auto', 'cpp') or is_exporting()
            or not _use_cpp(qkv, impl)):
        q, k, v = planes.permute(1, 0, 2, 4, 5, 3)
        out = local_attention2d(q, k, v, rel_row, rel_col, kernel_size,
                                border, scale, block_size, impl)
        return out.permute(0, 1, 4, 2, 3).reshape(bsz, channels3 // 3,
                                                  height, width)
    _check_inputs(*planes.permute(1, 0, 2, 4, 5, 3), rel_row, rel_col,
                  kernel_size, border)
    compute, kernel_scale = _kernel_args(qkv, scale)
    with _no_autocast(qkv):
        out = local_attention2d_qkv_cpu(
            planes.to(compute), rel_row.to(compute), rel_col.to(compute),
            kernel_size, border == 'mask',
            kernel_scale)
    return out.view(bsz, channels3 // 3, height, width).to(qkv.dtype)


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
    logits = (qf * (unfold_windows(k, kernel_size) + rel[:, :, None])).sum(2)
    if border == 'mask':
        ones = torch.ones(1, 1, height, width, dtype=q.dtype, device=q.device)
        inside = F.unfold(ones, kernel_size, padding=r).view(1, 1, kk, -1)
        logits = logits.masked_fill(inside == 0, float('-inf'))
    return logits.softmax(2)


def unfold_windows(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(B, h, H, W, d) -> (B, h, d, k^2, H*W): each pixel's zero-padded
    k x k window, row-major."""
    bsz, heads, height, width, d = x.shape
    x = x.permute(0, 1, 4, 2, 3).reshape(bsz, heads * d, height, width)
    cols = F.unfold(x, kernel_size, padding=kernel_size // 2)
    return cols.view(bsz, heads, d, kernel_size * kernel_size,
                     height * width)


def local_attention2d_flops(q_shape: Tuple[int, ...], kernel_size: int) -> int:
    """Multiply-adds of the op as the paper counts them (k^2 window only):
    ``q.k`` and ``attn.v`` (k^2 d each) plus ``q.r`` (k d) per pixel and
    head."""
    bsz, heads, height, width, d = q_shape
    return bsz * heads * height * width * d * (2 * kernel_size**2 +
                                               kernel_size)
