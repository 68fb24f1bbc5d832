from .rtdetr_varifocal_loss import RTDETRVarifocalLoss, rtdetr_varifocal_target

__all__ = ['RTDETRVarifocalLoss', 'rtdetr_varifocal_target']
