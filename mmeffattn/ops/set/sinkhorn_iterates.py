"""Sinkhorn's scaling-domain iterations with every iterate kept, and their
reverse pass: the differentiable core of SeT's fused transport
(:mod:`.transport`).

The iterations follow :func:`sinkhorn.sinkhorn_scaling`'s schedule on a
Gibbs kernel ``K = exp(logK - rowmax)``; only the scaling vectors of each
update (N and m entries) are kept. Backward differentiates the updates in
reverse: each one (``u = a / (K v)`` or ``v = b / (K^T u)``) adds a rank-1
term to ``dK``, all summed by one (N x R) @ (R x m) product. On CPU (fp32 /
fp64) both directions are C++ loops (:mod:`.sinkhorn_cpu`), elsewhere
batched matmuls (tested equal).
"""
from typing import NamedTuple, Optional

import torch

from .sinkhorn import _alternate
from .sinkhorn_cpu import (sinkhorn_iterates_backward_cpu,
                           sinkhorn_iterates_cpu, sinkhorn_kernel_runs)

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


def scaling_iterates(kern: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                     num_iters: int, last: str):
    """Sinkhorn in the scaling domain with the schedule of
    :func:`sinkhorn_scaling` (``sinkhorn._alternate``): a row update from
    ``v = 1``, then rounds ending with ``last``. On CPU (fp32/fp64, no
    autograd through it) the C++ loops of :mod:`.sinkhorn_cpu`.

    Args:
        kern: (..., N, m) Gibbs kernel; a: (..., N, 1); b: (..., 1, m).

    Returns:
        ``(u, v, trace)``: (..., N, 1), (..., 1, m) and a
        :class:`SinkhornTrace`.
    """
    n_updates = 2 * num_iters + (last == 'row')
    lead, (n, m) = kern.shape[:-2], kern.shape[-2:]
    if sinkhorn_kernel_runs(kern):
        groups = kern[..., 0, 0].numel()
        rows, row_dens, cols, col_dens = sinkhorn_iterates_cpu(
            kern.reshape(groups, n, m),
            a.expand(lead + (n, 1)).reshape(groups, n),
            b.expand(lead + (1, m)).reshape(groups, m), n_updates, TINY)
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
    stack = [torch.stack(list(x))
             for x in (*zip(*steps['row']), *zip(*steps['col']))]
    return u, v, SinkhornTrace(*stack)


def _trace_rank1_terms(kern, trace: SinkhornTrace, grad_u, grad_v):
    """The reverse pass over the iterates: ``dL/dK`` gets one rank-1 term
    ``left x right`` per update. Returns lefts (..., N, n) and rights
    (..., n, m)."""
    lead, (n, m) = kern.shape[:-2], kern.shape[-2:]
    n_updates = trace.rows.shape[0] + trace.cols.shape[0]
    if sinkhorn_kernel_runs(kern):
        groups = kern[..., 0, 0].numel()

        def flat(t, size):
            return t.reshape(t.shape[0], groups, size)
        lefts, rights = sinkhorn_iterates_backward_cpu(
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
