from .hybrid_encoder import HybridEncoder
from .sasa_fpn import SASAFPN

__all__ = ['SASAFPN', 'HybridEncoder']
