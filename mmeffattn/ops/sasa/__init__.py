"""SASA's functional ops: 2-D local attention and the attention stem.

Public functions and their autograd functions in ``local_attention`` /
``patch_attention`` / ``attention_stem``; the CPU kernels' dispatch in the
``*_cpu`` modules; the naive unfold implementation in ``reference``.
"""
from .attention_stem import (FUSED_BLOCKS, attention_stem_bn_relu_pool,
                             attention_stem_fused_runs)
from .local_attention import IMPLS as LOCAL_ATTENTION_IMPLS
from .local_attention import (LocalAttention2dFunction, local_attention2d,
                              local_attention2d_flops,
                              local_attention2d_forward, local_attention2d_qkv,
                              local_attention2d_weights)
from .local_attention_cpu import (local_attention2d_cpu,
                                  local_attention2d_qkv_cpu)
from .patch_attention import patch_attention
from .reference import local_attention2d_unfold

__all__ = ['local_attention2d', 'local_attention2d_qkv',
           'local_attention2d_forward', 'local_attention2d_flops',
           'local_attention2d_weights', 'LocalAttention2dFunction',
           'local_attention2d_cpu', 'local_attention2d_qkv_cpu',
           'local_attention2d_unfold', 'patch_attention', 'FUSED_BLOCKS',
           'attention_stem_bn_relu_pool', 'attention_stem_fused_runs',
           'LOCAL_ATTENTION_IMPLS']
