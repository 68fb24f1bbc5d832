"""ResNet-vd as RT-DETR's official ``PResNet`` (Lv et al., CVPR 2024)."""
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmdet.models.backbones import ResNetV1d

from mmeffattn.models.utils import (check_frozen_stages, check_image_batch,
                                    check_out_indices)
from mmeffattn.registry import MODELS


@MODELS.register_module()
class PResNet(ResNetV1d):
    """mmdet's ``ResNetV1d`` (deep 3-conv stem, average-pool shortcuts) with
    a projection shortcut on the first block of *every* stage, as the
    official ``PResNet``.

    ResNet-50/101 are unchanged (their first blocks already project); in
    ResNet-18/34 the first block of ``layer1`` (64 -> 64 channels, stride 1)
    gets a 1x1 conv + BN shortcut where ``ResNetV1d`` has the identity:
    4,224 parameters at base width 64, so that official R18/R34 weights load.

    Args are :class:`mmdet.models.backbones.ResNetV1d`'s, with their
    meanings, checked at build: ``out_indices`` (int | Sequence[int]) in
    ``[-num_stages, num_stages - 1]`` (negative: from the last, as
    mmpretrain), defaults to ``(0, 1, 2, 3)``; ``frozen_stages`` (int) -1
    nothing frozen, 0 the stem, ``k`` in [1, num_stages] the stem and
    ``layer1`` .. ``layer{k}``, defaults to -1; ``zero_init_residual``
    (bool) defaults to False: the official BN gains start at 1 (mmdet's
    True would, with frozen BN, keep every residual branch at zero when
    training from scratch).

    Shapes:
        (B, 3, H, W), H, W >= 32 -> the stages in ``out_indices``, stage
        ``i``: (B, base_channels * 2^i * expansion, H / 2^(i + 2),
        W / 2^(i + 2)).

    Example:
        >>> import torch
        >>> from mmeffattn.models import PResNet
        >>> model = PResNet(depth=18, base_channels=8, stem_channels=8,
        ...                 out_indices=(-1, ))
        >>> tuple(model(torch.rand(1, 3, 64, 64))[0].shape)
        (1, 64, 2, 2)
    """

    def __init__(self, zero_init_residual: bool = False, **kwargs) -> None:
        kwargs['zero_init_residual'] = zero_init_residual
        stages = kwargs.get('num_stages', 4)
        kwargs['out_indices'] = check_out_indices(
            'PResNet', kwargs.get('out_indices', (0, 1, 2, 3)), stages)
        check_frozen_stages('PResNet', kwargs.get('frozen_stages', -1),
                            stages)
        self.in_channels = kwargs.get('in_channels', 3)
        super().__init__(**kwargs)
        for name in self.res_layers:
            block = getattr(self, name)[0]
            if block.downsample is not None:
                continue
            last = block.conv3 if hasattr(block, 'conv3') else block.conv2
            in_ch, out_ch = block.conv1.in_channels, last.out_channels
            # the layout of ResLayer's average-down shortcut at stride 1
            # (an identity pool, then conv and norm), so keys line up
            block.downsample = nn.Sequential(
                nn.AvgPool2d(1, 1, ceil_mode=True, count_include_pad=False),
                build_conv_layer(self.conv_cfg, in_ch, out_ch, 1, bias=False),
                build_norm_layer(self.norm_cfg, out_ch)[1])
        # the shortcuts added above follow frozen_stages and norm_cfg
        self._freeze_stages()

    def forward(self, x):
        check_image_batch('PResNet', x, self.in_channels, 32)
        return super().forward(x)
