"""SparseFormer's functional ops: RoI point sampling and adaptive mixing."""
from .sparse_sampling import (adaptive_mixing, adaptive_mixing_flops,
                              clamp_grad, roi_sampling_points, sample_points,
                              sample_points_flops)

__all__ = ['roi_sampling_points', 'sample_points', 'adaptive_mixing',
           'clamp_grad', 'sample_points_flops', 'adaptive_mixing_flops']
