"""SeT's functional ops: Self-optimal Transport attention.

Public functions in ``set_attention`` (attention from features, the fused
Nystrom path from the qkv projection, grid positions), ``sinkhorn`` (the
plain log- and scaling-domain iterations) and ``kernel_features`` (the
Nystrom map); the autograd functions in ``transport`` and
``sinkhorn_iterates``; the CPU kernels' dispatch in ``nystrom_cpu`` and
``sinkhorn_cpu``; the chunk sizes in ``chunking``.
"""
from .chunking import CHUNK_BYTES, items_per_chunk
from .kernel_features import (gaussian_sphere_kernel, inverse_sqrt_psd,
                              nystrom_basis, nystrom_features)
from .nystrom_cpu import nystrom_kernel_runs
from .set_attention import (grid_positions, positional_log_penalty,
                            set_attention, set_attention_nystrom,
                            squared_distances)
from .sinkhorn import sinkhorn_log, sinkhorn_scaling

__all__ = ['set_attention', 'set_attention_nystrom', 'nystrom_kernel_runs',
           'grid_positions', 'positional_log_penalty', 'squared_distances',
           'sinkhorn_log', 'sinkhorn_scaling', 'gaussian_sphere_kernel',
           'inverse_sqrt_psd', 'nystrom_basis', 'nystrom_features',
           'CHUNK_BYTES', 'items_per_chunk']
