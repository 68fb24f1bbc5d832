from .alternet import AlterNet
from .castling_vit import CastlingViT
from .presnet import PResNet
from .sasa_resnet import SASAResNet
from .setformer import SeTformer
from .sparseformer import SparseFormer
from .tome_vision_transformer import ToMeVisionTransformer

__all__ = ['SASAResNet', 'SeTformer', 'ToMeVisionTransformer', 'CastlingViT',
           'AlterNet', 'SparseFormer', 'PResNet']
