"""FPN whose 3x3 convolutions are SASA layers (SASA paper, App. A.3)."""
import torch.nn as nn
from mmdet.models.necks import FPN

from mmeffattn.models.attention import LocalSelfAttention2d
from mmeffattn.registry import MODELS


@MODELS.register_module()
class SASAFPN(FPN):
    """mmdet's :class:`~mmdet.models.necks.FPN` with attention output layers.

    Every 3x3 output conv becomes a :class:`LocalSelfAttention2d` of the same
    width; the stride-2 extra convs (RetinaNet's P6/P7) become attention
    followed by 2x2 average pooling. Lateral 1x1 convs stay. Arguments are
    FPN's, plus ``attn_cfg`` for the SASA layers (k=7, 8 heads by default).
    """

    def __init__(self, *args, attn_cfg=None, **kwargs):
        super().__init__(*args, **kwargs)
        attn_cfg = dict(dict(kernel_size=7, num_heads=8), **(attn_cfg or {}))
        convs = []
        for module in self.fpn_convs:
            conv = module.conv
            layer = LocalSelfAttention2d(conv.in_channels, conv.out_channels,
                                         stride=conv.stride[0], **attn_cfg)
            if module.with_activation:
                layer = nn.Sequential(layer, nn.ReLU(inplace=True))
            convs.append(layer)
        self.fpn_convs = nn.ModuleList(convs)
