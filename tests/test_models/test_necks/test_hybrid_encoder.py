"""HybridEncoder (RT-DETR's neck): shapes, deploy fusion of its RepVGG
blocks, and the 2-d sin-cos position embedding."""
import math

import pytest
import torch
import torch.nn as nn

pytest.importorskip('mmdet')

from mmeffattn.models.necks import HybridEncoder  # noqa: E402
from mmeffattn.models.necks.hybrid_encoder import \
    sincos_position_embedding_2d  # noqa: E402


def _randomise_bn(module):
    """Trained-looking BN statistics and affines (outputs stay O(1-10))."""
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * .2)
            m.running_var.copy_(torch.rand(n, generator=g) + .5)
            m.weight.data.copy_(torch.rand(n, generator=g) * .5 + .5)
            m.bias.data.copy_(torch.randn(n, generator=g) * .1)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_hybrid_encoder_shapes_and_deploy_fusion(dtype):
    neck = HybridEncoder(in_channels=[16, 32, 64], hidden_dim=32, num_heads=4,
                         ffn_dim=64, expansion=0.5).eval()
    _randomise_bn(neck)
    neck.to(dtype)
    torch.manual_seed(0)  # fp32 fusion error depends on the draw
    inputs = [torch.randn(2, c, h, w, dtype=dtype) for c, h, w in
              ((16, 13, 14), (32, 7, 7), (64, 4, 4))]  # a 100x108 input
    with torch.no_grad():
        before = neck(inputs)
    assert [tuple(o.shape) for o in before] == [
        (2, 32, 13, 14), (2, 32, 7, 7), (2, 32, 4, 4)]
    convs = sum(isinstance(m, nn.Conv2d) for m in neck.modules())
    neck.switch_to_deploy()
    fused = sum(isinstance(m, nn.Conv2d) for m in neck.modules())
    assert fused == convs - 3 * 4      # 3 RepVGG blocks x 4 CSP layers
    with torch.no_grad():
        after = neck(inputs)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_sincos_embedding_small_case():
    # W = 2, H = 1, dims 4 (one frequency, omega = 1): official grid order
    pos = sincos_position_embedding_2d(1, 2, 4)
    expected = torch.tensor([[0., 1., 0., 1.],
                             [math.sin(1.), math.cos(1.), 0., 1.]])
    torch.testing.assert_close(pos[0], expected)
    with pytest.raises(ValueError, match='divisible by 4'):
        sincos_position_embedding_2d(2, 2, 6)
