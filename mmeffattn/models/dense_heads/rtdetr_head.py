"""RT-DETR's head: DINO's head with the IoU-aware varifocal loss."""
from mmdet.models.dense_heads import DINOHead

from mmeffattn.models.losses import RTDETRVarifocalLoss
from mmeffattn.registry import MODELS


@MODELS.register_module()
class RTDETRHead(DINOHead):
    """mmdet's ``DINOHead`` (matched, denoising and encoder top-k losses;
    class Linear and 3-layer box MLP per decoder layer plus one for the
    encoder) whose classification loss must be
    ``mmeffattn.RTDETRVarifocalLoss``: the IoU of each matched box is the
    target of its class score (IoU-aware query selection).

    Defaults are the paper's: VFL 1, L1 5, GIoU 2.
    """

    def __init__(self, *args,
                 loss_cls=dict(type='mmeffattn.RTDETRVarifocalLoss',
                               alpha=0.75, gamma=2.0, loss_weight=1.0),
                 loss_bbox=dict(type='L1Loss', loss_weight=5.0),
                 loss_iou=dict(type='GIoULoss', loss_weight=2.0),
                 **kwargs):
        super().__init__(*args, loss_cls=loss_cls, loss_bbox=loss_bbox,
                         loss_iou=loss_iou, **kwargs)
        if not isinstance(self.loss_cls, RTDETRVarifocalLoss):
            raise TypeError('RTDETRHead needs loss_cls='
                            "dict(type='mmeffattn.RTDETRVarifocalLoss'), got "
                            f'{type(self.loss_cls).__name__}')
