"""SeT's transport as autograd functions with hand-written backward passes:
Sinkhorn (scaling domain) + gather / scatter (:class:`SeTTransportFunction`),
and for Nystrom features also the features and log kernels
(:class:`SeTNystromTransportFunction`, the PyTorch path of
:func:`~.set_attention.set_attention_nystrom`).

Autograd through the unrolled Sinkhorn loop saves every N x m temporary of
every iteration. Here the forward keeps only the Gibbs kernels (or, for
Nystrom features, not even those) and the scaling vectors of each iteration
(:mod:`.sinkhorn_iterates`); the backward recomputes what it needs and
differentiates the iterations in reverse. The gradient is autograd's through
the same iterations (tests: gradcheck, and equality with the log domain).
"""
from typing import Optional

import torch

from ..export import is_exporting
from .sinkhorn_iterates import gibbs_kernel, scaling_backward, scaling_iterates


def _marginals(kern, mask):
    n, m = kern.shape[-2:]
    if mask is None:
        a = kern.new_full(kern.shape[:-1] + (1, ), 1.0 / n)
        n_valid = kern.new_tensor(float(n))
    else:
        count = mask.sum(-1, keepdim=True).clamp(min=1).to(kern.dtype)
        a = (mask.to(kern.dtype) / count)[..., None]
        n_valid = count[..., None]
    b = kern.new_full(kern.shape[:-2] + (1, m), 1.0 / m)
    return a, b, n_valid


def transport_forward(log_q, log_k, v, num_iters, mask, inplace=False):
    """The forward of :class:`SeTTransportFunction` in plain ops (autograd,
    export and compile can trace it). Returns ``out`` (work dtype) and the
    state the fused backward keeps; ``inplace``: the log kernels become the
    Gibbs kernels."""
    work = log_q.dtype
    kern_k = gibbs_kernel(log_k, mask, inplace)
    kern_q = gibbs_kernel(log_q, mask, inplace)
    a, b, n_valid = _marginals(kern_k, mask)
    uk, vk, trace_k = scaling_iterates(kern_k, a, b, num_iters, 'col')
    uq, vq, trace_q = scaling_iterates(kern_q, a, b, num_iters, 'row')
    m = kern_k.shape[-1]
    v_work = v.to(work)
    # Z = m T^k^T V (..., m, d), with T^k^T V = v_k * (K^T (u_k * V))
    gather = (m * vk.transpose(-1, -2)) * torch.matmul(
        kern_k.transpose(-1, -2), uk * v_work)
    # out = n T^q Z = n u_q * (K (v_q^T * Z))
    out = (n_valid * uq) * torch.matmul(kern_q, vq.transpose(-1, -2) * gather)
    state = dict(kern_q=kern_q, kern_k=kern_k, v_work=v_work, gather=gather,
                 n_valid=n_valid, scalings=(uq, vq, uk, vk),
                 traces=(trace_q, trace_k))
    return out, state


def _save_transport(ctx, state, v_dtype):
    ctx.m = state['kern_k'].shape[-1]
    ctx.traces, ctx.scalings = state['traces'], state['scalings']
    ctx.v_dtype = v_dtype
    return (state['kern_q'], state['kern_k'], state['v_work'],
            state['gather'], state['n_valid'])


def transport_backward_queries(kern_q, scalings_q, trace_q, gather, g, m):
    """Query side of the transport's backward: ``out = u_q * (K_q (v_q^T *
    Z))`` with ``g = n * dL/dout``. Returns ``(dL/dlogK^q, dL/dZ)``; the plan
    is never formed (``T^q^T g = v_q^T * (K_q^T (u_q * g))``)."""
    uq, vq = scalings_q
    grad_gather = vq.transpose(-1, -2) * torch.matmul(
        kern_q.transpose(-1, -2), uq * g) * m
    grad_plan_q = torch.matmul(g, gather.transpose(-1, -2))
    grad_log_q = scaling_backward(kern_q, uq, vq, trace_q,
                                  grad_plan_q).mul_(kern_q)
    return grad_log_q, grad_gather


def transport_backward_keys(kern_k, scalings_k, trace_k, v_work, grad_gather):
    """Key side: ``Z = m v_k^T * (K_k^T (u_k * V))``. Returns
    ``(dL/dlogK^k, dL/dV)`` (``T^k dZ = u_k * (K_k (v_k^T * dZ))``)."""
    uk, vk = scalings_k
    grad_v = uk * torch.matmul(kern_k, vk.transpose(-1, -2) * grad_gather)
    grad_plan_k = torch.matmul(v_work, grad_gather.transpose(-1, -2))
    grad_log_k = scaling_backward(kern_k, uk, vk, trace_k,
                                  grad_plan_k).mul_(kern_k)
    return grad_log_k, grad_v


def transport_backward(ctx, saved, grad_out):
    """Gradients (log_q, log_k, v) of the transport for ``grad_out``."""
    kern_q, kern_k, v_work, gather, n_valid = saved
    uq, vq, uk, vk = ctx.scalings
    trace_q, trace_k = ctx.traces
    g = grad_out.to(kern_q.dtype) * n_valid             # (..., N, d)
    grad_log_q, grad_gather = transport_backward_queries(
        kern_q, (uq, vq), trace_q, gather, g, ctx.m)
    del g
    grad_log_k, grad_v = transport_backward_keys(kern_k, (uk, vk), trace_k,
                                                 v_work, grad_gather)
    return grad_log_q, grad_log_k, grad_v.to(ctx.v_dtype)


class SeTTransportFunction(torch.autograd.Function):
    """``out = n T^q (m T^k^T V)`` with ``T^k`` column-exact and ``T^q``
    row-exact Sinkhorn plans of ``logK^k``, ``logK^q`` (see set_attention).
    Runs in the dtype of the log kernels (at least fp32), autocast off."""

    @staticmethod
    def forward(ctx, log_q, log_k, v, num_iters, mask):
        with torch.autocast(log_q.device.type, enabled=False):
            out, state = transport_forward(log_q, log_k, v, num_iters, mask)
        ctx.save_for_backward(*_save_transport(ctx, state, v.dtype))
        return out.to(v.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        with torch.autocast(grad_out.device.type, enabled=False):
            grads = transport_backward(ctx, ctx.saved_tensors, grad_out)
        return grads + (None, None)


def nystrom_log_kernel(x, z, weight, sigma):
    """``psi(x) @ refs^T / eps`` without forming psi: (..., N, d) -> the
    (..., N, m) log kernel, and the pieces its backward reuses.

    ``psi(x) = exp((x_hat z^T - 1) / sigma^2) K^(-1/2)`` (Nystrom), so with
    ``weight = K^(-1/2) refs^T / eps`` (h, a, m) the log kernel is
    ``exp((x z^T / |x| - 1) / sigma^2) @ weight``.
    """
    inv_norm = x.norm(dim=-1, keepdim=True).clamp_(min=1e-12).reciprocal_()
    cos = torch.matmul(x, z.transpose(-1, -2)).mul_(inv_norm)
    feat = cos.sub(1).mul_(1.0 / sigma**2).exp_()
    return torch.matmul(feat, weight), (inv_norm, cos, feat)


def nystrom_log_kernel_traced(x, z, weight, sigma):
    """:func:`nystrom_log_kernel`'s value in out-of-place ops, for autograd
    (torch.compile and export trace this path)."""
    inv_norm = x.norm(dim=-1, keepdim=True).clamp(min=1e-12).reciprocal()
    cos = torch.matmul(x, z.transpose(-1, -2)) * inv_norm
    return torch.matmul(torch.exp((cos - 1) / sigma**2), weight)


def nystrom_log_kernel_backward(x, z, weight, sigma, grad_log, pieces):
    """Gradients (x, z, weight) of :func:`nystrom_log_kernel`; the batch
    dims of z / weight's gradients are summed (they are per head)."""
    inv_norm, cos, feat = pieces
    grad_feat = torch.matmul(grad_log, weight.transpose(-1, -2))
    grad_weight = torch.matmul(feat.transpose(-1, -2), grad_log)
    grad_cos = grad_feat.mul_(feat).mul_(1.0 / sigma**2)
    del grad_feat
    # cos = (x z^T) / |x|: d|x| = -sum_a(grad_cos * cos) / |x|
    grad_norm = (grad_cos * cos).sum(-1, keepdim=True).mul_(inv_norm)
    grad_prod = grad_cos.mul_(inv_norm)                 # d(x z^T)
    grad_x = torch.matmul(grad_prod, z)
    # |x| was clamped at 1e-12 for (near) zero x: no gradient through it
    clamped = inv_norm >= 0.5e12
    grad_x -= (grad_norm * inv_norm).masked_fill_(clamped, 0) * x
    grad_z = torch.matmul(grad_prod.transpose(-1, -2), x)
    lead = tuple(range(grad_z.dim() - z.dim()))
    return grad_x, grad_z.sum(lead), grad_weight.sum(lead)


class _Chunk:
    """What the backward keeps of one batch chunk (see
    :class:`SeTNystromTransportFunction`)."""
    m = None
    traces = scalings = v_dtype = None


class SeTNystromTransportFunction(torch.autograd.Function):
    """SeT attention from the qkv projection (Nystrom features, log kernels
    and the transport in one function), batch chunk by batch chunk.

    Takes qkv as the linear layer lays it out, (B, N, 3, h, d), and returns
    (B, N, h, d), so no permuted copy of q / k / v / out or of their
    gradients is made outside. Keeps only q, k, v (views of qkv) and the
    Sinkhorn scaling vectors: backward recomputes the features and the Gibbs
    kernels (GEMMs of N x d x a and N x a x m, and exps), so the N x m
    kernels live one chunk at a time.
    """

    @staticmethod
    def forward(ctx, qkv, z, weight, pos_log, sigma, num_iters, mask,
                chunk):
        ctx.dtypes = (qkv.dtype, z.dtype, weight.dtype,
                      None if pos_log is None else pos_log.dtype)
        bsz, num_tokens, _, heads, head_dims = qkv.shape
        out = qkv.new_empty(bsz, num_tokens, heads, head_dims)
        ctx.chunks, ctx.sigma, ctx.has_pos = [], sigma, pos_log is not None
        with torch.autocast(qkv.device.type, enabled=False):
            work = torch.promote_types(qkv.dtype, torch.float32)
            z_w, weight_w = z.to(work), weight.to(work)
            pos_w = None if pos_log is None else pos_log.to(work)
            for start in range(0, bsz, chunk):
                part = qkv[start:start + chunk].permute(2, 0, 3, 1, 4)
                q, k, v = part[0].to(work), part[1].to(work), part[2]
                log_q = nystrom_log_kernel(q, z_w, weight_w, sigma)[0]
                log_k = nystrom_log_kernel(k, z_w, weight_w, sigma)[0]
                if pos_w is not None:
                    log_q += pos_w
                    log_k += pos_w
                sub_mask = None if mask is None else mask[
                    start:start + chunk, None].expand(log_q.shape[:-1])
                res, state = transport_forward(log_q, log_k, v, num_iters,
                                               sub_mask, inplace=True)
                del log_q, log_k
                out[start:start + chunk] = res.transpose(1, 2)
                saved = _Chunk()
                # the kernels are not kept: backward recomputes them from
                # q and k with the features it needs anyway
                _, _, v_work, gather, n_valid = _save_transport(
                    saved, state, v.dtype)
                saved.tensors = (q, k, v_work, gather, n_valid)
                saved.mask = sub_mask
                ctx.chunks.append(saved)
                del state
        ctx.chunk = chunk
        ctx.save_for_backward(z, weight, pos_log)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        z, weight, pos_log = ctx.saved_tensors
        sigma, chunk = ctx.sigma, ctx.chunk
        dqkv, dz_t, dw_t, dpos_t = ctx.dtypes
        bsz, num_tokens, heads, head_dims = grad_out.shape
        grad_qkv = grad_out.new_empty(bsz, num_tokens, 3, heads, head_dims,
                                      dtype=dqkv)
        grad_z = grad_weight = grad_pos = None
        with torch.autocast(grad_out.device.type, enabled=False):
            z_w = z.to(torch.promote_types(z.dtype, torch.float32))
            weight_w = weight.to(z_w.dtype)
            pos_w = None if pos_log is None else pos_log.to(z_w.dtype)
            for index, saved in enumerate(ctx.chunks):
                sl = slice(index * chunk, (index + 1) * chunk)
                q, k, v_work, gather, n_valid = saved.tensors
                uq, vq, uk, vk = saved.scalings
                trace_q, trace_k = saved.traces
                view = grad_qkv[sl].permute(2, 0, 3, 1, 4)

                def kernel(x):  # recomputed; pieces for its backward
                    log, piece = nystrom_log_kernel(x, z_w, weight_w, sigma)
                    if pos_w is not None:
                        log += pos_w
                    return gibbs_kernel(log, saved.mask, inplace=True), piece

                # one side at a time: only its N x m temporaries are alive
                g = grad_out[sl].transpose(1, 2).to(z_w.dtype) * n_valid
                kern_q, piece = kernel(q)
                grad_log_q, grad_gather = transport_backward_queries(
                    kern_q, (uq, vq), trace_q, gather, g, saved.m)
                del kern_q, g
                gx, gz, gw = nystrom_log_kernel_backward(
                    q, z_w, weight_w, sigma, grad_log_q, piece)
                view[0] = gx
                del gx, piece
                kern_k, piece = kernel(k)
                grad_log_k, grad_v = transport_backward_keys(
                    kern_k, (uk, vk), trace_k, v_work, grad_gather)
                del kern_k
                view[2] = grad_v
                gx, gz_k, gw_k = nystrom_log_kernel_backward(
                    k, z_w, weight_w, sigma, grad_log_k, piece)
                view[1] = gx
                del gx, piece
                gz, gw = gz + gz_k, gw + gw_k
                grad_z = gz if grad_z is None else grad_z + gz
                grad_weight = gw if grad_weight is None else grad_weight + gw
                if ctx.has_pos and ctx.needs_input_grad[3]:
                    gp = grad_log_q.sum(0) + grad_log_k.sum(0)
                    grad_pos = gp if grad_pos is None else grad_pos + gp
                del grad_log_q, grad_log_k
        return (grad_qkv, grad_z.to(dz_t), grad_weight.to(dw_t),
                None if grad_pos is None else grad_pos.to(dpos_t),
                None, None, None, None)


def transport(log_q: torch.Tensor, log_k: torch.Tensor, v: torch.Tensor,
              num_iters: int,
              mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Fused SeT transport from log kernels (any feature map).

    Args:
        log_q, log_k: (B, h, N, m) log Gibbs kernels (work dtype, >= fp32).
        v: (B, h, N, d) values.
        num_iters: Sinkhorn iterations.
        mask: (B, h, N) bool, True for valid tokens, or None.

    Returns:
        (B, h, N, d) in ``v``'s dtype.
    """
    if torch.compiler.is_compiling() or is_exporting():
        return transport_forward(log_q, log_k, v, num_iters,
                                 mask)[0].to(v.dtype)
    return SeTTransportFunction.apply(log_q, log_k, v, num_iters, mask)


def transport_plans(log_q, log_k, num_iters, mask=None):
    """The plans (T^q, T^k) the fused op uses, without gradients."""
    with torch.no_grad():
        kern_k, kern_q = gibbs_kernel(log_k, mask), gibbs_kernel(log_q, mask)
        a, b, _ = _marginals(kern_k, mask)
        uk, vk, _ = scaling_iterates(kern_k, a, b, num_iters, 'col')
        uq, vq, _ = scaling_iterates(kern_q, a, b, num_iters, 'row')
        return uq * kern_q * vq, uk * kern_k * vk
