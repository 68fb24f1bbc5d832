from .attention_stem import AttentionStem
from .local_self_attention import LocalSelfAttention2d
from .set_attention import SeTAttention

__all__ = ['LocalSelfAttention2d', 'AttentionStem', 'SeTAttention']
