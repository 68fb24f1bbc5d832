from .sasa_resnet import SASAResNet
from .setformer import SeTformer

__all__ = ['SASAResNet', 'SeTformer']
