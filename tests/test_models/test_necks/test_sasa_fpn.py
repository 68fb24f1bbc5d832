"""SASAFPN: an mmdet FPN whose output convolutions are local
self-attention."""
import torch


def test_sasa_fpn_matches_mmdet_interface():
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')  # as inside a detector
    from mmdet.models.necks import FPN

    from mmeffattn.models import SASAFPN, LocalSelfAttention2d
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
