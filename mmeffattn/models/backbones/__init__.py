from .castling_vit import CastlingViT
from .sasa_resnet import SASAResNet
from .setformer import SeTformer
from .tome_vision_transformer import ToMeVisionTransformer

__all__ = ['SASAResNet', 'SeTformer', 'ToMeVisionTransformer', 'CastlingViT']
