"""Self-optimal Transport (SeT) attention as a functional op.

A reconstruction (the SeTformer paper body is unavailable; docs/setformer.md):
keys and queries are transported, by entropic OT, onto ``m`` learned
references ``y`` in a kernel feature space (RKHS)::

    logK^k_ij = <psi(k_i), y_j> / eps + pos_ij      (N x m, per head)
    T^k = Sinkhorn(logK^k; rows 1/N, cols 1/m)      columns exact
    T^q = Sinkhorn(logK^q; rows 1/N, cols 1/m)      rows exact
    Z   = m * T^k^T V        each reference: a convex combination of values
    out = N * T^q Z          each token: a convex combination of references

The effective attention ``A = N m T^q T^k^T`` is non-negative and
row-stochastic, and is never materialised: time O(N m (a + d) L), memory
O(N m) per head instead of O(N^2).
"""
from typing import Optional

import torch

from ..export import is_exporting
from .chunking import items_per_chunk
from .nystrom_cpu import SeTNystromTransportCPUFunction, nystrom_kernel_runs
from .sinkhorn import sinkhorn_log
from .transport import (SeTNystromTransportFunction, nystrom_log_kernel_traced,
                        transport, transport_forward, transport_plans)


def grid_positions(height: int, width: int, device=None,
                   dtype=torch.float32) -> torch.Tensor:
    """(H*W, 2) cell centres of an H x W grid, normalised to [0, 1]."""
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), -1).view(-1, 2)


def squared_distances(token_pos: torch.Tensor,
                      ref_pos: torch.Tensor) -> torch.Tensor:
    """``|p_i - p_j|^2``: (N, 2), (m, 2) -> (N, m)."""
    # (N, m, 2) differences: exact, exportable (cdist is not), N*m*2 small
    return (token_pos[:, None] - ref_pos[None]).square().sum(-1)


def positional_log_penalty(token_pos: torch.Tensor, ref_pos: torch.Tensor,
                           sigma: torch.Tensor,
                           dist2: Optional[torch.Tensor] = None
                           ) -> torch.Tensor:
    """``-|p_i - p_j|^2 / (2 sigma_h^2)``: (N, 2), (m, 2), (h,) -> (h, N, m).

    ``dist2``: the (N, m) squared distances, if already computed (they
    depend on the grid shape only; SeTAttention caches them per shape).
    """
    if dist2 is None:
        dist2 = squared_distances(token_pos, ref_pos)
    return dist2[None] * (-0.5 / sigma[:, None, None]**2)


def set_attention(psi_q: torch.Tensor, psi_k: torch.Tensor, v: torch.Tensor,
                  refs: torch.Tensor, eps: float, num_iters: int,
                  pos_log: Optional[torch.Tensor] = None,
                  mask: Optional[torch.Tensor] = None,
                  return_plans: bool = False,
                  sinkhorn: str = 'scaling',
                  chunk_bytes: Optional[int] = None):
    """SeT attention.

    Args:
        psi_q, psi_k: (B, h, N, a) kernel features of queries / keys.
        v: (B, h, N, d) values.
        refs: (h, m, a) reference set in feature space.
        eps: entropic regularisation (temperature of the Gibbs kernel).
        num_iters: Sinkhorn iterations L.
        pos_log: (h, N, m) additive log positional penalty, or None.
        mask: (B, N) bool, True for valid tokens, or None.
        sinkhorn: ``'scaling'`` (stabilised scaling domain, fused with the
            gather / scatter into one autograd function that saves only the
            Gibbs kernels; fast, lean) or ``'log'`` (log domain through
            autograd; the reference); the same plans.
        chunk_bytes: the batch chunk, in bytes of (h, N, m) plans; default
            ``CHUNK_BYTES['plans']`` (:mod:`.chunking`).

    Returns:
        out (B, h, N, d); with ``return_plans`` also (T^q, T^k), (B, h, N, m).
    """
    if sinkhorn not in ('scaling', 'log'):
        raise ValueError(f"sinkhorn must be 'scaling' or 'log', got "
                         f'{sinkhorn!r}')
    bsz, heads, num_tokens = psi_k.shape[:3]
    step = items_per_chunk(heads * num_tokens * refs.shape[-2] * 4,
                           chunk_bytes, 'plans')
    outs, plans_q, plans_k = [], [], []
    for start in range(0, bsz, step):
        sl = slice(start, start + step)
        out, (plan_q, plan_k) = _set_attention_chunk(
            psi_q[sl], psi_k[sl], v[sl], refs, eps, num_iters, pos_log,
            None if mask is None else mask[sl], sinkhorn, return_plans)
        outs.append(out)
        plans_q.append(plan_q)
        plans_k.append(plan_k)
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    if return_plans:
        return out, (torch.cat(plans_q), torch.cat(plans_k))
    return out


def _set_attention_chunk(psi_q, psi_k, v, refs, eps, num_iters, pos_log,
                         mask, sinkhorn, return_plans):
    num_tokens, num_refs = psi_k.shape[-2], refs.shape[-2]
    work = torch.promote_types(psi_k.dtype, torch.float32)
    refs_t = refs.to(work).transpose(-1, -2) / eps  # (h, a, m), small
    log_k = psi_k.to(work) @ refs_t
    log_q = psi_q.to(work) @ refs_t
    if pos_log is not None:  # in place: the products are not saved
        log_k += pos_log.to(work)
        log_q += pos_log.to(work)
    if mask is not None:
        mask = mask[:, None].expand(log_k.shape[:-1])
    if sinkhorn == 'scaling':
        out = transport(log_q, log_k, v, num_iters, mask)
        plans = transport_plans(log_q, log_k, num_iters, mask) \
            if return_plans else (None, None)
        return out, plans
    plan_k = sinkhorn_log(log_k, num_iters, mask=mask, last='col')
    plan_q = sinkhorn_log(log_q, num_iters, mask=mask, last='row')
    n_valid = num_tokens if mask is None else mask.sum(-1, keepdim=True)[
        ..., None].to(work)
    gather = (num_refs * plan_k).to(v.dtype).transpose(-1, -2) @ v
    out = (n_valid * plan_q).to(v.dtype) @ gather
    return out, (plan_q, plan_k)


def set_attention_nystrom(qkv: torch.Tensor, z: torch.Tensor,
                          weight: torch.Tensor, sigma: float,
                          num_iters: int,
                          pos_log: Optional[torch.Tensor] = None,
                          mask: Optional[torch.Tensor] = None,
                          chunk_bytes: Optional[int] = None,
                          kernel: Optional[bool] = None,
                          pos_scale: Optional[torch.Tensor] = None
                          ) -> torch.Tensor:
    """SeT attention with Nystrom features, fused, from the qkv projection.

    Equals ``set_attention(nystrom_features(q), nystrom_features(k), v,
    refs, eps, ...)`` (transposed to tokens-first) for
    ``z, K^(-1/2) = nystrom_basis(anchors)`` and
    ``weight = K^(-1/2) @ refs^T / eps``.

    Args:
        qkv: (B, N, 3, h, d), as ``Linear(C, 3C)(x).view(B, N, 3, h, d)``.
        z: (h, a, d) unit anchors; weight: (h, a, m).
        sigma: kernel bandwidth; num_iters: Sinkhorn iterations.
        pos_log: (h or 1, N, m) or None; mask: (B, N) bool or None.
        chunk_bytes: the PyTorch path's batch chunk, in bytes of (h, N, m)
            kernels; default ``CHUNK_BYTES['kernels']`` (:mod:`.chunking`).
        kernel: run the CPU kernel (:mod:`.nystrom_cpu`); default: where
            it runs (eager, CPU, fp32 / fp64 / bf16), else the PyTorch path
            (:class:`~.transport.SeTNystromTransportFunction`).
        pos_scale: (h,) or None: the positional term is
            ``pos_scale[:, None, None] * pos_log`` (SeT's penalty is a
            per-head scale of one (1, N, m) grid; the kernel never forms
            the (h, N, m) product).

    Returns:
        (B, N, h, d) in ``qkv``'s dtype.
    """
    bsz, num_tokens, _, heads, _ = qkv.shape
    if kernel is None:
        kernel = nystrom_kernel_runs(qkv)
    if kernel:
        if mask is not None:
            mask = mask.to(torch.bool).contiguous()
        return SeTNystromTransportCPUFunction.apply(
            qkv, z, weight, pos_log, pos_scale, sigma, num_iters, mask)
    if pos_scale is not None:
        pos_log = pos_scale[:, None, None] * pos_log
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
    chunk = items_per_chunk(heads * num_tokens * weight.shape[-1] * 4,
                            chunk_bytes, 'kernels')
    return SeTNystromTransportFunction.apply(qkv, z, weight, pos_log, sigma,
                                             num_iters, mask, chunk)


__all__ = ['set_attention', 'set_attention_nystrom', 'grid_positions',
           'positional_log_penalty', 'squared_distances']
