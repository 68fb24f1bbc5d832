import torch


def test_sasa_fpn_and_head_match_mmdet_interfaces():
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')  # the head builds mmdet task utils
    from mmdet.models.dense_heads import RetinaHead
    from mmdet.models.necks import FPN

    from mmeffattn.models import SASAFPN, LocalSelfAttention2d, SASARetinaHead
    neck = SASAFPN(in_channels=[32, 64, 128], out_channels=32, num_outs=5,
                   add_extra_convs='on_input',
                   attn_cfg=dict(kernel_size=3, num_heads=4))
    assert isinstance(neck, FPN)
    assert all(isinstance(c, LocalSelfAttention2d) for c in neck.fpn_convs)
    assert [c.stride for c in neck.fpn_convs] == [1, 1, 1, 2, 2]
    feats = [torch.randn(1, c, s, s)
             for c, s in ((32, 20), (64, 10), (128, 5))]
    outs = neck(feats)
    assert [o.shape[2] for o in outs] == [20, 10, 5, 3, 2]

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
