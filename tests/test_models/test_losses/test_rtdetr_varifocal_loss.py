"""RTDETRVarifocalLoss: the target and weights by hand."""
import pytest
import torch
import torch.nn as nn

pytest.importorskip('mmdet')

from mmeffattn.models.losses import RTDETRVarifocalLoss  # noqa: E402
from mmeffattn.models.losses import rtdetr_varifocal_target  # noqa: E402


def test_varifocal_target_and_weight_by_hand():
    logits = torch.tensor([[0., 0.], [2., -1.]])
    labels = torch.tensor([1, 2])              # 2 = background
    ious = torch.tensor([0.5, 0.9])
    t, w = rtdetr_varifocal_target(logits, labels, ious)
    torch.testing.assert_close(t, torch.tensor([[0., .5], [0., 0.]]))
    p = torch.sigmoid(torch.tensor([2., -1.]))
    # the matched entry's weight is its IoU alone (the official formula)
    torch.testing.assert_close(w, torch.stack([
        torch.tensor([.75 * .25, .5]), .75 * p**2]))
    loss = RTDETRVarifocalLoss()(logits, (labels, ious), avg_factor=2)
    bce = nn.functional.binary_cross_entropy_with_logits(
        logits, t, reduction='none')
    torch.testing.assert_close(loss, (bce * w).sum() / 2)
