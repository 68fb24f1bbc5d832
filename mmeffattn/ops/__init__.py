"""Stateless tensor ops (no nn.Module, no registry)."""
from .local_attention import (LocalAttention2dFunction, local_attention2d,
                              local_attention2d_flops,
                              local_attention2d_forward)
from .local_attention_unfold import local_attention2d_unfold

__all__ = ['local_attention2d', 'local_attention2d_forward',
           'local_attention2d_unfold', 'local_attention2d_flops',
           'LocalAttention2dFunction']
