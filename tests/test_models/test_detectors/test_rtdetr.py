"""RT-DETR (the detector): query selection, anchors, and the model's size
at 640x640."""
import os.path as osp

import pytest
import torch
from helpers import DEMO, REPO

pytest.importorskip('mmdet')

CONFIGS = osp.join(REPO, 'configs', 'rtdetr')


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
    cfg = Config.fromfile(osp.join(DEMO,
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


@pytest.mark.slow
@pytest.mark.parametrize('depth,params,gflops', [
    (18, 20e6, 60e9), (50, 42e6, 136e9), (101, 76e6, 259e9)])
def test_size_matches_the_paper_at_640(depth, params, gflops):
    from mmeffattn.analysis.config_flops import get_flops
    cfg = osp.join(CONFIGS, f'rtdetr_r{depth}vd_8xb2-72e_coco.py')
    res = get_flops(cfg, (640, 640),
                    cfg_options={'model.backbone.init_cfg': None})
    assert abs(res['params'] / params - 1) <= 0.05, res['params']
    assert abs(res['flops'] / gflops - 1) <= 0.10, res['flops']
    assert not any('Deformable' in op for op in res['unsupported'])
