"""Castling-ViT's functional ops (linear-angular attention)."""
from .linear_angular_attention import (linear_angular_attention,
                                       masked_softmax_attention, sequence_conv)

__all__ = ['linear_angular_attention', 'masked_softmax_attention',
           'sequence_conv']
