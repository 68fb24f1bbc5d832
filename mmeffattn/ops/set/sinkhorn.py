"""Sinkhorn for entropic optimal transport, batched over any leading dims:
log domain (robust reference) and stabilised scaling domain (fast)."""
import math
from typing import Optional

import torch


def _check_schedule(num_iters: int, last: str) -> None:
    if num_iters < 1:
        raise ValueError(f'num_iters must be >= 1, got {num_iters}')
    if last not in ('row', 'col'):
        raise ValueError(f"last must be 'row' or 'col', got {last!r}")


def _alternate(row_update, col_update, col_state, num_iters: int,
               last: str):
    """The update schedule shared by both solvers (see sinkhorn_log)."""
    row_state = row_update(col_state)
    if last == 'col':
        col_state = col_update(row_state)
    for _ in range(num_iters - (last == 'col')):
        if last == 'col':
            row_state = row_update(col_state)
            col_state = col_update(row_state)
        else:
            col_state = col_update(row_state)
            row_state = row_update(col_state)
    return row_state, col_state


def sinkhorn_log(log_kernel: torch.Tensor,
                 num_iters: int,
                 row_mass: Optional[torch.Tensor] = None,
                 col_mass: Optional[torch.Tensor] = None,
                 mask: Optional[torch.Tensor] = None,
                 last: str = 'col') -> torch.Tensor:
    """Transport plan ``T = exp(log_kernel + f + g)`` with marginals a, b.

    Starts from ``g = 0`` with a row update ``f = log a - LSE_j(logK + g)``,
    then alternates column updates ``g = log b - LSE_i(logK + f)`` and row
    updates: ``num_iters`` (row, column) rounds for ``last='col'``, an
    initial row update plus ``num_iters`` (column, row) rounds for
    ``last='row'``. The marginal updated last holds exactly, the other
    approximately (it converges as iterations grow). Runs in at least
    fp32 whatever the input dtype; the plan is returned in the input dtype.

    Args:
        log_kernel: (..., N, M) log Gibbs kernel, e.g. ``similarity / eps``.
        num_iters: Sinkhorn iterations (>= 1).
        row_mass: (..., N) row marginal a; default uniform over valid rows.
        col_mass: (..., M) column marginal b; default uniform ``1/M``.
        mask: (..., N) bool, True for valid rows; invalid rows get no mass.
        last: which marginal is enforced exactly.

    Returns:
        (..., N, M) non-negative plan.
    """
    _check_schedule(num_iters, last)
    dtype = log_kernel.dtype
    work = torch.promote_types(dtype, torch.float32)
    logk = log_kernel.to(work)
    n, m = logk.shape[-2:]
    if row_mass is not None:
        log_a = row_mass.to(work).log()
    elif mask is not None:
        count = mask.sum(-1, keepdim=True).clamp(min=1).to(work)
        log_a = (-count.log()).expand(mask.shape)
    else:
        log_a = logk.new_full(logk.shape[:-1], -math.log(n))
    if col_mass is not None:
        log_b = col_mass.to(work).log()
    else:
        log_b = logk.new_full(logk.shape[:-2] + (m, ), -math.log(m))
    log_a, log_b = log_a[..., :, None], log_b[..., None, :]
    valid = None if mask is None else mask.to(torch.bool)[..., None]

    def row_update(g):
        f = log_a - torch.logsumexp(logk + g, dim=-1, keepdim=True)
        # invalid rows carry no mass; where() keeps their gradient at zero
        return f if valid is None else torch.where(valid, f, float('-inf'))

    def col_update(f):
        return log_b - torch.logsumexp(logk + f, dim=-2, keepdim=True)

    f, g = _alternate(row_update, col_update, torch.zeros_like(log_b),
                      num_iters, last)
    return torch.exp(logk + f + g).to(dtype)


def sinkhorn_scaling(log_kernel: torch.Tensor,
                     num_iters: int,
                     row_mass: Optional[torch.Tensor] = None,
                     col_mass: Optional[torch.Tensor] = None,
                     mask: Optional[torch.Tensor] = None,
                     last: str = 'col',
                     tiny: float = 1e-30) -> torch.Tensor:
    """Same plan as :func:`sinkhorn_log`, in the stabilised scaling domain.

    ``K = exp(logK - rowmax(logK))`` is formed once (every row keeps an entry
    of 1, so ``K v > 0``); the iterations are then matrix-vector products
    ``u = a / (K v)``, ``v = b / (K^T u)`` instead of log-sum-exps, which is
    several times faster forward and backward. The row shift is absorbed by
    ``u``, so the plan equals the log-domain one. Runs in at least fp32.
    """
    _check_schedule(num_iters, last)
    dtype = log_kernel.dtype
    work = torch.promote_types(dtype, torch.float32)
    logk = log_kernel.to(work)
    n, m = logk.shape[-2:]
    kern = torch.exp(logk - logk.amax(-1, keepdim=True).detach())
    if row_mass is not None:
        a = row_mass.to(work)
    elif mask is not None:
        a = mask.to(work) / mask.sum(-1, keepdim=True).clamp(min=1).to(work)
    else:
        a = logk.new_full(logk.shape[:-1], 1.0 / n)
    if mask is not None:
        kern = kern * mask.to(work)[..., None]
    b = col_mass.to(work) if col_mass is not None else logk.new_full(
        logk.shape[:-2] + (m, ), 1.0 / m)
    a, b = a[..., :, None], b[..., :, None]
    b = b.transpose(-1, -2)  # (..., 1, M)

    # matrix-vector products as multiply + sum: far faster than batched
    # GEMMs with one column on CPU
    def rows(v):  # a / (K v)
        return a / (kern * v).sum(-1, keepdim=True).clamp(min=tiny)

    def cols(u):  # b / (K^T u)
        return b / (kern * u).sum(-2, keepdim=True).clamp(min=tiny)

    # the first update is a row update: u absorbs the row shift of K
    u, v = _alternate(rows, cols, torch.ones_like(b), num_iters, last)
    return (u * kern * v).to(dtype)
