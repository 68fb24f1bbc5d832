"""The CPU backend of Sinkhorn's iterations with every iterate kept
(``_ext/csrc/sinkhorn_cpu.cpp``): one task per Gibbs kernel of a batch."""
from typing import List

import torch

from .._ext import eager_kernel_runs, require_extension


def sinkhorn_kernel_runs(kern: torch.Tensor) -> bool:
    """Whether the C++ loops run on ``kern``: eager, CPU, fp32 / fp64, no
    autograd through it, the kernels built here."""
    return not kern.requires_grad and eager_kernel_runs(
        kern, (torch.float32, torch.float64))


def sinkhorn_iterates_cpu(kern: torch.Tensor, a: torch.Tensor,
                          b: torch.Tensor, n_updates: int,
                          tiny: float) -> List[torch.Tensor]:
    """(G, N, m) kernels, (G, N) and (G, m) marginals -> rows, row
    denominators (n_rows, G, N), columns, column denominators
    (n_cols, G, m) of ``n_updates`` alternating updates."""
    return require_extension('the Sinkhorn iterations').sinkhorn_iterates(
        kern, a, b, n_updates, tiny)


def sinkhorn_iterates_backward_cpu(kern, rows, row_dens, cols, col_dens,
                                   grad_u, grad_v,
                                   tiny: float) -> List[torch.Tensor]:
    """The reverse pass: the rank-1 terms (lefts (G, N, n), rights
    (G, n, m)) of ``dL/dK``, one per update."""
    return require_extension(
        'the Sinkhorn iterations').sinkhorn_iterates_backward(
            kern, rows, row_dens, cols, col_dens, grad_u, grad_v, tiny)
