"""SASARetinaHead: an mmdet RetinaHead whose tower convolutions are local
self-attention."""
import torch


def test_sasa_retina_head_matches_mmdet_interface():
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')  # the head builds mmdet task utils
    from mmdet.models.dense_heads import RetinaHead

    from mmeffattn.models import SASARetinaHead

    # the five levels of SASAFPN's outputs on a 160 x 160 input
    outs = [torch.randn(1, 32, s, s) for s in (20, 10, 5, 3, 2)]
    head = SASARetinaHead(
        num_classes=3, in_channels=32, feat_channels=32, stacked_convs=2,
        attn_cfg=dict(kernel_size=3, num_heads=4),
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                              scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                              strides=[8, 16, 32, 64, 128]))
    assert isinstance(head, RetinaHead)
    head.init_weights()
    assert abs(head.retina_cls.bias.mean().item() + 4.595) < 1e-2
    assert abs(head.cls_convs[0][0].value.weight.std().item() - 0.01) < 3e-3
    cls_scores, bbox_preds = head(outs)
    assert cls_scores[0].shape == (1, 9 * 3, 20, 20)
    assert bbox_preds[-1].shape == (1, 9 * 4, 2, 2)
