"""Log-domain Sinkhorn for entropic optimal transport, batched over any leading dims."""
import math
from typing import Optional

import torch


def sinkhorn_log(log_kernel: torch.Tensor,
                 num_iters: int,
                 row_mass: Optional[torch.Tensor] = None,
                 col_mass: Optional[torch.Tensor] = None,
                 mask: Optional[torch.Tensor] = None,
                 last: str = 'col') -> torch.Tensor:
    """Transport plan ``T = exp(log_kernel + f + g)`` with marginals a, b.

    Alternates ``f = log a - LSE_j(logK + g)`` (rows) and
    ``g = log b - LSE_i(logK + f)`` (columns) ``num_iters`` times; the
    marginal updated last (``last='col'`` or ``'row'``) holds exactly, the
    other approximately (it converges as iterations grow). Runs in at least
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
    if num_iters < 1:
        raise ValueError(f'num_iters must be >= 1, got {num_iters}')
    if last not in ('row', 'col'):
        raise ValueError(f"last must be 'row' or 'col', got {last!r}")
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

    f = torch.zeros_like(log_a) if valid is None else torch.where(
        valid, torch.zeros_like(log_a), float('-inf'))
    g = torch.zeros_like(log_b)
    for _ in range(num_iters):
        if last == 'col':
            f = row_update(g)
            g = col_update(f)
        else:
            g = col_update(f)
            f = row_update(g)
    return torch.exp(logk + f + g).to(dtype)
