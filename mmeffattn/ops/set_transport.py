"""Fused SeT attention: Sinkhorn (scaling domain) + gather / scatter (and,
for Nystrom features, the features and log kernels) as autograd functions
with hand-written backward passes.

Autograd through the unrolled Sinkhorn loop saves every N x m temporary of
every iteration. Here the forward keeps only the two Gibbs kernels
``K = exp(logK - rowmax)`` and the scaling vectors of each iteration (N and m
entries); the backward recomputes the plans ``T = diag(u) K diag(v)`` and
differentiates the iterations in reverse. Each iteration (``u = a / (K v)``
or ``v = b / (K^T u)``) adds a rank-1 term to ``dK``; all of them are summed
by one (N x R) @ (R x m) product. The gradient is autograd's through the
same iterations (tests: gradcheck, and equality with the log domain).
"""
from typing import NamedTuple, Optional

import torch

from .export import is_exporting
from .sinkhorn import _alternate

TINY = 1e-30


def gibbs_kernel(log_kernel: torch.Tensor,
                 mask: Optional[torch.Tensor] = None,
                 inplace: bool = False) -> torch.Tensor:
    """``exp(logK - rowmax(logK))`` (..., N, m), rows outside ``mask`` zero
    (``inplace``: overwriting ``log_kernel``).

    Every valid row keeps an entry of 1, so ``K v > 0``; the shift is
    absorbed by the row scaling and does not change the plan.
    """
    row_max = log_kernel.amax(-1, keepdim=True)
    kern = log_kernel.sub_(row_max).exp_() if inplace else torch.exp(
        log_kernel - row_max)
    if mask is not None:
        kern = kern * mask[..., None].to(kern.dtype)
    return kern


class SinkhornTrace(NamedTuple):
    """Every iterate of :func:`scaling_iterates`, for backward. Updates
    alternate row, column, row, ...; row update r maps ``v`` (column output
    r - 1, or ones) to ``rows[r] = a / row_dens[r]``, column update c maps
    ``u = rows[c]`` to ``cols[c] = b / col_dens[c]``."""
    rows: torch.Tensor      # (n_rows, ..., N, 1)
    row_dens: torch.Tensor  # (n_rows, ..., N, 1)
    cols: torch.Tensor      # (n_cols, ..., 1, m)
    col_dens: torch.Tensor  # (n_cols, ..., 1, m)


def _use_kernel(kern: torch.Tensor) -> bool:
    if (kern.device.type != 'cpu'
            or kern.dtype not in (torch.float32, torch.float64)
            or kern.requires_grad or torch.compiler.is_compiling()
            or is_exporting()):
        return False
    from .cpu_extension import load_cpu_extension
    return load_cpu_extension() is not None


def scaling_iterates(kern: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                     num_iters: int, last: str):
    """Sinkhorn in the scaling domain with the schedule of
    :func:`sinkhorn_scaling` (``sinkhorn._alternate``): a row update from
    ``v = 1``, then rounds ending with ``last``. On CPU (fp32/fp64, no
    autograd through it) the C++ loops of ``csrc/sinkhorn_cpu.cpp``.

    Args:
        kern: (..., N, m) Gibbs kernel; a: (..., N, 1); b: (..., 1, m).

    Returns:
        ``(u, v, trace)``: (..., N, 1), (..., 1, m) and a
        :class:`SinkhornTrace`.
    """
    n_updates = 2 * num_iters + (last == 'row')
    lead, (n, m) = kern.shape[:-2], kern.shape[-2:]
    if _use_kernel(kern):
        from .cpu_extension import load_cpu_extension
        groups = kern[..., 0, 0].numel()
        rows, row_dens, cols, col_dens = load_cpu_extension(
        ).sinkhorn_iterates(kern.reshape(groups, n, m),
                            a.expand(lead + (n, 1)).reshape(groups, n),
                            b.expand(lead + (1, m)).reshape(groups, m),
                            n_updates, TINY)
        trace = SinkhornTrace(rows.view(-1, *lead, n, 1),
                              row_dens.view(-1, *lead, n, 1),
                              cols.view(-1, *lead, 1, m),
                              col_dens.view(-1, *lead, 1, m))
        return trace.rows[-1], trace.cols[-1], trace
    steps = {'row': [], 'col': []}

    def rows_update(v_in):
        s = torch.matmul(kern, v_in.transpose(-1, -2)).clamp_(min=TINY)
        steps['row'].append((a / s, s))
        return steps['row'][-1][0]

    def cols_update(u_in):
        t = torch.matmul(u_in.transpose(-1, -2), kern).clamp_(min=TINY)
        steps['col'].append((b / t, t))
        return steps['col'][-1][0]

    u, v = _alternate(rows_update, cols_update, torch.ones_like(b),
                      num_iters, last)
    stack = [torch.stack(list(x)) for x in (*zip(*steps['row']),
                                             *zip(*steps['col']))]
    return u, v, SinkhornTrace(*stack)


def _trace_rank1_terms(kern, trace: SinkhornTrace, grad_u, grad_v):
    """The reverse pass over the iterates: ``dL/dK`` gets one rank-1 term
    ``left x right`` per update. Returns lefts (..., N, n) and rights
    (..., n, m)."""
    lead, (n, m) = kern.shape[:-2], kern.shape[-2:]
    n_updates = trace.rows.shape[0] + trace.cols.shape[0]
    if _use_kernel(kern):
        from .cpu_extension import load_cpu_extension
        groups = kern[..., 0, 0].numel()

        def flat(t, size):
            return t.reshape(t.shape[0], groups, size)
        lefts, rights = load_cpu_extension().sinkhorn_iterates_backward(
            kern.reshape(groups, n, m), flat(trace.rows, n),
            flat(trace.row_dens, n), flat(trace.cols, m),
            flat(trace.col_dens, m), grad_u.reshape(groups, n),
            grad_v.reshape(groups, m), TINY)
        return (lefts.view(*lead, n, n_updates),
                rights.view(*lead, n_updates, m))
    lefts, rights = [], []
    # the last update's output and its input are the plan's u and v; every
    # other iterate feeds only the next update
    last_col = n_updates % 2 == 0
    grad = grad_v if last_col else grad_u
    pending = grad_u if last_col else grad_v
    for step in range(n_updates):
        update = n_updates - 1 - step
        r = update // 2
        if update % 2:       # column: x_out = b / (u^T K), u = rows[r]
            x_in, x_out, denom = trace.rows[r], trace.cols[r], \
                trace.col_dens[r]
        else:                # row: x_out = a / (K v), v = cols[r-1] or 1
            x_in = trace.cols[r - 1] if r else torch.ones_like(grad_v)
            x_out, denom = trace.rows[r], trace.row_dens[r]
        d_denom = (-grad * x_out / denom).masked_fill(denom <= TINY, 0)
        if update % 2:
            lefts.append(x_in)
            rights.append(d_denom)
        else:
            lefts.append(d_denom)
            rights.append(x_in)
        if step == n_updates - 1:
            break            # the first input is v = 1, a constant
        if update % 2:
            grad = torch.matmul(kern, d_denom.transpose(-1, -2))
        else:
            grad = torch.matmul(d_denom.transpose(-1, -2), kern)
        if step == 0:
            grad = grad + pending
    return torch.cat(lefts, -1), torch.cat(rights, -2)


def scaling_backward(kern: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                     trace: SinkhornTrace,
                     grad_plan: torch.Tensor) -> torch.Tensor:
    """``dL/dK`` (..., N, m) for ``T = u K v`` given ``dL/dT`` (overwritten:
    the result is computed in its memory)."""
    gk = grad_plan * kern
    grad_u = torch.matmul(gk, v.transpose(-1, -2))      # (..., N, 1)
    grad_v = torch.matmul(u.transpose(-1, -2), gk)      # (..., 1, m)
    del gk
    grad_kern = grad_plan.mul_(u).mul_(v)
    lefts, rights = _trace_rank1_terms(kern, trace, grad_u, grad_v)
    # every update's rank-1 term in one product, accumulated in place
    n, m = grad_kern.shape[-2:]
    flat = grad_kern.view(-1, n, m)
    flat.baddbmm_(lefts.expand(grad_kern.shape[:-2] + lefts.shape[-2:])
                  .reshape(-1, n, lefts.shape[-1]),
                  rights.expand(grad_kern.shape[:-2] + rights.shape[-2:])
                  .reshape(-1, rights.shape[-2], m))
    return grad_kern


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
    """The forward of :class:`SeTTransport` in plain ops (autograd, export
    and compile can trace it). Returns ``out`` (work dtype) and the state
    the fused backward keeps; ``inplace``: the log kernels become the Gibbs
    kernels."""
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


class SeTTransport(torch.autograd.Function):
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
    """What the backward keeps of one batch chunk (see SeTNystromAttention)."""
    m = None
    traces = scalings = v_dtype = None


class SeTNystromAttention(torch.autograd.Function):
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


def set_attention_nystrom(qkv: torch.Tensor, z: torch.Tensor,
                          weight: torch.Tensor, sigma: float,
                          num_iters: int,
                          pos_log: Optional[torch.Tensor] = None,
                          mask: Optional[torch.Tensor] = None,
                          chunk_bytes: int = 2 << 20) -> torch.Tensor:
    """SeT attention with Nystrom features, fused, from the qkv projection.

    Equals ``set_attention(nystrom_features(q), nystrom_features(k), v,
    refs, eps, ...)`` (transposed to tokens-first) for
    ``z, K^(-1/2) = nystrom_basis(anchors)`` and
    ``weight = K^(-1/2) @ refs^T / eps``.

    Args:
        qkv: (B, N, 3, h, d), as ``Linear(C, 3C)(x).view(B, N, 3, h, d)``.
        z: (h, a, d) unit anchors; weight: (h, a, m).
        sigma: kernel bandwidth; num_iters: Sinkhorn iterations.
        pos_log: (h, N, m) or None; mask: (B, N) bool or None.
        chunk_bytes: batch chunks whose (h, N, m) kernels take about this
            many bytes: Sinkhorn's passes stay in cache and backward's
            temporaries stay small.

    Returns:
        (B, N, h, d) in ``qkv``'s dtype.
    """
    bsz, num_tokens, _, heads, _ = qkv.shape
    if torch.compiler.is_compiling() or is_exporting():
        work = torch.promote_types(qkv.dtype, torch.float32)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        logs = [nystrom_log_kernel_traced(x.to(work), z.to(work),
                                          weight.to(work), sigma)
                for x in (q, k)]
        if pos_log is not None:
            logs = [log + pos_log.to(work) for log in logs]
        if mask is not None:
            mask = mask[:, None].expand(logs[0].shape[:-1])
        out = transport_forward(*logs, v, num_iters, mask)[0]
        return out.to(qkv.dtype).transpose(1, 2)
    per_item = heads * num_tokens * weight.shape[-1] * 4
    chunk = max(1, chunk_bytes // max(per_item, 1))
    return SeTNystromAttention.apply(qkv, z, weight, pos_log, sigma,
                                     num_iters, mask, chunk)


def set_transport(log_q: torch.Tensor, log_k: torch.Tensor, v: torch.Tensor,
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
    return SeTTransport.apply(log_q, log_k, v, num_iters, mask)


def transport_plans(log_q, log_k, num_iters, mask=None):
    """The plans (T^q, T^k) the fused op uses, without gradients."""
    with torch.no_grad():
        kern_k, kern_q = gibbs_kernel(log_k, mask), gibbs_kernel(log_q, mask)
        a, b, _ = _marginals(kern_k, mask)
        uk, vk, _ = scaling_iterates(kern_k, a, b, num_iters, 'col')
        uq, vq, _ = scaling_iterates(kern_q, a, b, num_iters, 'row')
        return uq * kern_q * vq, uk * kern_k * vk
