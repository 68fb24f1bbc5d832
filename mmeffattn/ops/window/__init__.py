"""AlterNet's functional op: local window attention on 2-D maps."""
from .window_attention import (padding_mask, relative_position_index,
                               window_attention2d, window_attention2d_flops,
                               window_merge, window_partition)

__all__ = ['window_attention2d', 'window_attention2d_flops',
           'relative_position_index', 'window_partition', 'window_merge',
           'padding_mask']
