from .sasa_resnet import SASAResNet

__all__ = ['SASAResNet']
