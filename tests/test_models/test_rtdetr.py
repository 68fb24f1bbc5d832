"""RT-DETR: hybrid encoder, query selection, anchors, varifocal target,
deformable-attention MACs, and the model's size at 640x640."""
import math
import os.path as osp

import pytest
import torch
import torch.nn as nn
from conftest import REPO

pytest.importorskip('mmdet')

from mmeffattn.models.losses import RTDETRVarifocalLoss  # noqa: E402
from mmeffattn.models.losses import rtdetr_varifocal_target  # noqa: E402
from mmeffattn.models.necks import HybridEncoder  # noqa: E402
from mmeffattn.models.necks.hybrid_encoder import \
    sincos_position_embedding_2d  # noqa: E402

CONFIGS = osp.join(REPO, 'configs', 'rtdetr')


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


def test_query_selection_by_hand():
    from mmeffattn.models.detectors import select_topk_queries
    scores = torch.tensor([[[0., 1.], [5., -1.], [-2., 3.], [0.5, 0.2]]],
                          requires_grad=True)
    memory = torch.arange(8.).view(1, 4, 2).requires_grad_()
    coords = torch.arange(16.).view(1, 4, 4).requires_grad_()
    query, ref, top_scores, top_coords = select_topk_queries(
        scores, memory, coords, 2)
    # max-class logits 1, 5, 3, 0.5 -> positions 1 then 2
    torch.testing.assert_close(query, memory[:, [1, 2]].detach())
    torch.testing.assert_close(ref, coords[:, [1, 2]].detach())
    assert not query.requires_grad and not ref.requires_grad
    torch.testing.assert_close(top_scores, scores[:, [1, 2]])
    torch.testing.assert_close(top_coords, coords[:, [1, 2]].sigmoid())
    assert top_scores.requires_grad and top_coords.requires_grad
    with pytest.raises(ValueError, match='num_queries=5 exceeds the 4'):
        select_topk_queries(scores, memory, coords, 5)


def _small_rtdetr():
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmeffattn  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo',
                                   'rtdetr_r18vd-demo_1xb8-24e_digits.py'))
    init_default_scope('mmdet')
    return MODELS.build(cfg.model)


def test_anchor_validity_by_hand():
    """Cell centres (j + .5) / W and wh = 0.05 * 2^level; anchors with any
    coordinate outside (0.01, 0.99) are invalid: memory zeroed, anchor
    inf."""
    model = _small_rtdetr()
    d = model.embed_dims
    shapes = torch.tensor([(2, 60)] + [(1, 1)] * 5)   # levels 0..5
    memory = torch.randn(1, 120 + 5, d)
    out_memory, proposals = model.gen_encoder_output_proposals(
        memory, None, shapes)
    invalid = torch.isinf(proposals).all(-1)[0]
    expected = torch.zeros(125, dtype=torch.bool)
    expected[[0, 59, 60, 119]] = True      # x = 0.5/60 and 59.5/60
    expected[124] = True                   # level 5: wh = 1.6
    assert torch.equal(invalid, expected)
    # a valid anchor: inverse sigmoid of (cx, cy, w, h)
    cx, cy = 1.5 / 60, 0.25
    box = torch.tensor([cx, cy, 0.05, 0.05])
    torch.testing.assert_close(proposals[0, 1], torch.log(box / (1 - box)))
    # invalid positions see zero memory: all equal to enc_output(0)
    zero = model.memory_trans_norm(model.memory_trans_fc(torch.zeros(d)))
    torch.testing.assert_close(out_memory[0, 0], zero)
    torch.testing.assert_close(out_memory[0, 124], zero)


def test_deformable_attention_macs_are_counted():
    from mmcv.ops import MultiScaleDeformableAttention

    from mmeffattn.utils.flops import (count_complexity,
                                       deformable_attention_macs)

    class Wrap(nn.Module):

        def __init__(self):
            super().__init__()
            self.attn = MultiScaleDeformableAttention(
                embed_dims=32, num_heads=4, num_levels=2, num_points=3,
                batch_first=True)

        def forward(self, query, value, ref):
            shapes = torch.tensor([[4, 4], [2, 2]])
            start = torch.tensor([0, 16])
            return self.attn(query, value=value, reference_points=ref,
                             spatial_shapes=shapes, level_start_index=start)

    q, s = 5, 20
    res = count_complexity(Wrap().eval(), (torch.randn(1, q, 32),
                                           torch.randn(1, s, 32),
                                           torch.rand(1, q, 2, 2)))
    linear = (s * 32 * 32 +              # value projection
              q * 32 * 4 * 2 * 3 * 2 +   # sampling offsets
              q * 32 * 4 * 2 * 3 +       # attention weights
              q * 32 * 32)               # output projection
    assert deformable_attention_macs(1, q, 4, 2, 3, 8) == 5 * q * 4 * 6 * 8
    assert res['macs'] == linear + deformable_attention_macs(1, q, 4, 2, 3, 8)


@pytest.mark.parametrize('depth,params,gflops', [
    (18, 20e6, 60e9), (50, 42e6, 136e9), (101, 76e6, 259e9)])
def test_size_matches_the_paper_at_640(depth, params, gflops):
    import sys
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
    from get_flops import get_flops
    cfg = osp.join(CONFIGS, f'rtdetr_r{depth}vd_8xb2-72e_coco.py')
    res = get_flops(cfg, (640, 640),
                    cfg_options={'model.backbone.init_cfg': None})
    assert abs(res['params'] / params - 1) <= 0.05, res['params']
    assert abs(res['flops'] / gflops - 1) <= 0.10, res['flops']
    assert not any('Deformable' in op for op in res['unsupported'])
