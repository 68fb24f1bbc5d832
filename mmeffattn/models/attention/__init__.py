from .attention_stem import AttentionStem
from .linear_angular_attention import LinearAngularAttention
from .local_self_attention import LocalSelfAttention2d
from .proportional_attention import ProportionalMultiheadAttention
from .set_attention import SeTAttention
from .window_self_attention import WindowSelfAttention2d

__all__ = ['LocalSelfAttention2d', 'AttentionStem', 'SeTAttention',
           'LinearAngularAttention', 'ProportionalMultiheadAttention',
           'WindowSelfAttention2d']
