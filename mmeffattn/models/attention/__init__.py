from .attention_stem import AttentionStem
from .local_self_attention import LocalSelfAttention2d

__all__ = ['LocalSelfAttention2d', 'AttentionStem']
