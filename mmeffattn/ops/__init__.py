"""Stateless tensor ops (no nn.Module, no registry)."""
from .export import export_mode, is_exporting
from .kernel_features import (gaussian_sphere_kernel, inverse_sqrt_psd,
                              nystrom_basis, nystrom_features)
from .local_attention import (LocalAttention2dFunction, local_attention2d,
                              local_attention2d_flops,
                              local_attention2d_forward, local_attention2d_qkv)
from .local_attention_cpu_op import (local_attention2d_cpu,
                                     local_attention2d_qkv_cpu)
from .local_attention_unfold import local_attention2d_unfold
from .patch_attention import patch_attention
from .set_attention import (grid_positions, positional_log_penalty,
                            set_attention, squared_distances)
from .sinkhorn import sinkhorn_log, sinkhorn_scaling
from .sparse_sampling import (adaptive_mixing, clamp_grad, roi_sampling_points,
                              sample_points)
from .token_merging import (bipartite_soft_matching, max_merge, merge_schedule,
                            merge_wavg)
from .window_attention import window_attention2d

__all__ = ['local_attention2d', 'local_attention2d_forward',
           'local_attention2d_unfold', 'local_attention2d_flops',
           'LocalAttention2dFunction', 'local_attention2d_cpu',
           'local_attention2d_qkv', 'local_attention2d_qkv_cpu',
           'patch_attention',
           'export_mode', 'is_exporting',
           'sinkhorn_log', 'sinkhorn_scaling', 'nystrom_features',
           'nystrom_basis',
           'gaussian_sphere_kernel', 'inverse_sqrt_psd', 'set_attention',
           'grid_positions', 'positional_log_penalty', 'squared_distances',
           'bipartite_soft_matching', 'merge_wavg', 'merge_schedule',
           'max_merge', 'window_attention2d', 'sample_points',
           'roi_sampling_points', 'adaptive_mixing', 'clamp_grad']
