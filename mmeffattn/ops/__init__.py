"""Functional ops: tensors in, tensors out (no nn.Module, no registry).

One subpackage per family, each with its public functions, the autograd
functions beside them and its CPU-kernel dispatch in ``*_cpu`` modules:
``sasa`` (local attention, attention stem), ``set`` (SeT attention,
Sinkhorn), ``tome`` (token merging), ``sparse_sampling`` (SparseFormer),
``linear_angular`` (Castling-ViT), ``window`` (AlterNet). ``_ext`` builds
the one C++ extension of the CPU kernels; ``export`` holds the export mode.
The names below are the public API; models import only these.
"""
from ._ext import extension_available as cpu_kernels_available
from .export import export_mode, is_exporting
from .linear_angular import (linear_angular_attention,
                             masked_softmax_attention, sequence_conv)
from .sasa import (FUSED_BLOCKS, LOCAL_ATTENTION_IMPLS,
                   LocalAttention2dFunction, attention_stem_bn_relu_pool,
                   attention_stem_fused_runs, local_attention2d,
                   local_attention2d_cpu, local_attention2d_flops,
                   local_attention2d_forward, local_attention2d_qkv,
                   local_attention2d_qkv_cpu, local_attention2d_unfold,
                   local_attention2d_weights, patch_attention)
from .set import (CHUNK_BYTES, gaussian_sphere_kernel, grid_positions,
                  inverse_sqrt_psd, items_per_chunk, nystrom_basis,
                  nystrom_features, nystrom_kernel_runs,
                  positional_log_penalty, set_attention, set_attention_nystrom,
                  sinkhorn_log, sinkhorn_scaling, squared_distances)
from .sparse_sampling import (adaptive_mixing, adaptive_mixing_flops,
                              clamp_grad, roi_sampling_points, sample_points,
                              sample_points_flops)
from .tome import (bipartite_soft_matching, max_merge, merge_schedule,
                   merge_wavg)
from .window import (padding_mask, relative_position_index, window_attention2d,
                     window_attention2d_flops, window_merge, window_partition)

__all__ = [
    # SASA
    'local_attention2d', 'local_attention2d_qkv', 'local_attention2d_forward',
    'local_attention2d_flops', 'local_attention2d_weights',
    'local_attention2d_unfold', 'LocalAttention2dFunction',
    'local_attention2d_cpu', 'local_attention2d_qkv_cpu', 'patch_attention',
    'attention_stem_bn_relu_pool', 'attention_stem_fused_runs',
    'FUSED_BLOCKS', 'LOCAL_ATTENTION_IMPLS',
    # SeT
    'set_attention', 'set_attention_nystrom', 'nystrom_kernel_runs',
    'grid_positions', 'positional_log_penalty', 'squared_distances',
    'sinkhorn_log', 'sinkhorn_scaling', 'nystrom_features', 'nystrom_basis',
    'gaussian_sphere_kernel', 'inverse_sqrt_psd', 'CHUNK_BYTES',
    'items_per_chunk',
    # ToMe
    'bipartite_soft_matching', 'merge_wavg', 'merge_schedule', 'max_merge',
    # SparseFormer
    'sample_points', 'roi_sampling_points', 'adaptive_mixing', 'clamp_grad',
    'sample_points_flops', 'adaptive_mixing_flops',
    # Castling-ViT
    'linear_angular_attention', 'masked_softmax_attention', 'sequence_conv',
    # AlterNet
    'window_attention2d', 'window_attention2d_flops',
    'relative_position_index', 'window_partition', 'window_merge',
    'padding_mask',
    # export mode and the CPU kernels' availability
    'export_mode', 'is_exporting', 'cpu_kernels_available'
]
