"""RT-DETR's IoU-aware varifocal loss."""
from typing import Optional, Tuple

import torch.nn.functional as F
from mmdet.models.losses import QualityFocalLoss
from torch import Tensor

from mmeffattn.registry import MODELS


def rtdetr_varifocal_target(logits: Tensor, labels: Tensor, ious: Tensor,
                            alpha: float = 0.75, gamma: float = 2.0
                            ) -> Tuple[Tensor, Tensor]:
    """Target and weight of RT-DETR's varifocal loss.

    ``t = IoU * onehot(label)`` (background rows, ``label == C``, are all
    zero) and ``w = alpha * p^gamma * (1 - onehot) + t`` with
    ``p = sigmoid`` (detached), as the official code: the matched entry's
    weight is ``t`` alone, every other entry's ``alpha * p^gamma``.

    Args:
        logits (Tensor): (N, C) class logits.
        labels (Tensor): (N, ) class indices, ``C`` for background.
        ious (Tensor): (N, ) IoU of each query's box with its matched target
            (ignored for background).

    Returns:
        tuple[Tensor, Tensor]: target and weight, both (N, C).
    """
    num_classes = logits.shape[-1]
    onehot = F.one_hot(labels, num_classes + 1)[:, :num_classes].to(
        logits.dtype)
    target = onehot * ious.to(logits.dtype)[:, None]
    prob = logits.detach().sigmoid()
    weight = alpha * prob.pow(gamma) * (1 - onehot) + target
    return target, weight


@MODELS.register_module()
class RTDETRVarifocalLoss(QualityFocalLoss):
    """Varifocal loss with the IoU target: ``sum(w * BCE(logits, t)) /
    avg_factor`` (RT-DETR: alpha 0.75, gamma 2, weight 1).

    It subclasses mmdet's ``QualityFocalLoss`` only for its interface: the
    DETR heads pass ``(labels, ious)`` to losses of that type, the IoU of each
    matched prediction (detached) with its ground truth.
    """

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0,
                 reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__(use_sigmoid=True, beta=gamma, reduction=reduction,
                         loss_weight=loss_weight)
        self.alpha, self.gamma = alpha, gamma

    def forward(self, pred: Tensor, target: Tuple[Tensor, Tensor],
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        labels, ious = target
        t, w = rtdetr_varifocal_target(pred, labels, ious, self.alpha,
                                       self.gamma)
        loss = F.binary_cross_entropy_with_logits(pred, t, reduction='none')
        loss = loss * w
        if weight is not None:
            loss = loss * weight.reshape(-1, 1).to(loss.dtype)
        reduction = reduction_override or self.reduction
        if reduction == 'none':
            return self.loss_weight * loss
        total = loss.sum()
        if reduction == 'mean':
            total = total / (avg_factor if avg_factor is not None
                             else loss.shape[0])
        return self.loss_weight * total
