"""SASA-ResNet: ResNet whose 3x3 convolutions are local self-attention."""
from typing import Sequence, Union

import torch.nn as nn
from mmengine.model import BaseModule, Sequential

from mmeffattn.models.attention import AttentionStem, LocalSelfAttention2d
from mmeffattn.models.utils import (EffAttnBackbone, check_divisible,
                                    check_frozen_stages, check_int,
                                    check_out_indices)
from mmeffattn.ops import LOCAL_ATTENTION_IMPLS as IMPLS
from mmeffattn.registry import MODELS


class AttentionBottleneck(BaseModule):
    """1x1 conv -> SASA (or 3x3 conv) -> 1x1 conv, with a residual.

    Stride 2 is an attention layer followed by 2x2 average pooling (paper
    Sec. 3.1); a conv block keeps the stride in its 3x3 conv.
    """
    expansion = 4

    def __init__(self, in_channels, out_channels, stride=1, downsample=None,
                 use_attention=True, attn_cfg=None, norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        from mmcv.cnn import build_norm_layer
        mid = out_channels // self.expansion
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.norm1 = build_norm_layer(norm_cfg, mid)[1]
        if use_attention:
            self.conv2 = LocalSelfAttention2d(mid, mid, stride=stride,
                                              **(attn_cfg or {}))
        else:
            self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, mid)[1]
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.norm3 = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        out += identity  # in place, as mmpretrain's Bottleneck
        return self.relu(out)


@MODELS.register_module()
class SASAResNet(EffAttnBackbone):
    """SASA-ResNet backbone (Ramachandran et al., NeurIPS 2019).

    Args:
        depth (int): 26, 38 or 50 (bottleneck layers [1,2,4,1], [2,3,5,2],
            [3,4,6,3]). Defaults to 50.
        stem (str): ``'attention'`` (spatially-aware attention stem) or
            ``'conv'`` (ResNet 7x7 conv stem + max pool). Defaults to
            ``'attention'``.
        attention_stages (Sequence[bool]): which of the 4 stages use SASA in
            place of 3x3 convs (the paper's placement ablation, Table 3).
            Defaults to ``(True, True, True, True)``.
        in_channels (int): input channels, >= 1. Defaults to 3.
        base_channels (int): stem width, divisible by ``2 * num_heads`` and
            by ``2 * stem_heads``; stage widths are 256, 512, 1024, 2048
            times ``base_channels / 64``. Defaults to 64.
        kernel_size (int): window of every SASA layer, odd, in [1, 63].
            Defaults to 7.
        num_heads (int): heads of every SASA layer, >= 1. Defaults to 8.
        border (str): ``'zero'`` or ``'mask'`` padding of the SASA windows.
            Defaults to ``'zero'``.
        attn_scale (float | str, optional): logit scale of every SASA layer;
            None (paper) or ``'head_dim'`` (1/sqrt(d)). Defaults to None.
        impl (str): op implementation of every SASA layer: ``'auto'`` (the
            C++ kernel on CPU, the halo GEMMs on GPU), ``'cpp'`` or
            ``'halo'``. Defaults to ``'auto'``.
        stem_heads (int): heads of the attention stem, >= 1. Defaults to 4.
        stem_mixtures (int): value mixtures of the attention stem, >= 1.
            Defaults to 4.
        out_indices (int | Sequence[int]): stages to output, in [-4, 3]
            (negative: from the last, as mmpretrain). Defaults to ``(3, )``.
        frozen_stages (int): as mmpretrain's ResNet: -1 nothing frozen, 0
            the stem, ``k`` in [1, 4] the stem and ``layer1`` ..
            ``layer{k}``. Defaults to -1.
        norm_cfg (dict): norm of the stem and bottlenecks. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): keep the batch norms in eval mode while training.
            Defaults to False.
        init_cfg (dict | list, optional): initialisation; ``Pretrained``
            with ``prefix='backbone.'`` loads a classifier's backbone.

    Shapes:
        x: (B, 3, H, W) -> tuple of (B, 256 * 2**i * base/64, H / 2**(i+2),
        W / 2**(i+2)) for i in ``out_indices``.

    Example:
        >>> import torch
        >>> from mmeffattn.models import SASAResNet
        >>> model = SASAResNet(depth=26, base_channels=16, num_heads=4,
        ...                    kernel_size=5, out_indices=(0, -1)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 64, 64))]
        [(1, 64, 16, 16), (1, 512, 2, 2)]
    """
    arch_settings = {26: (1, 2, 4, 1), 38: (2, 3, 5, 2), 50: (3, 4, 6, 3)}

    def __init__(self,
                 depth: int = 50,
                 stem: str = 'attention',
                 attention_stages: Sequence[bool] = (True, True, True, True),
                 in_channels: int = 3,
                 base_channels: int = 64,
                 kernel_size: int = 7,
                 num_heads: int = 8,
                 border: str = 'zero',
                 attn_scale: Union[float, str, None] = None,
                 impl: str = 'auto',
                 stem_heads: int = 4,
                 stem_mixtures: int = 4,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_cfg=dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 init_cfg: Union[dict, list, None] = (
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1, layer=['_BatchNorm'])),
                 ):
        super().__init__(init_cfg=list(init_cfg) if isinstance(
            init_cfg, tuple) else init_cfg)
        from mmcv.cnn import build_norm_layer
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for SASAResNet; choose '
                           f'from {sorted(self.arch_settings)}')
        owner = 'SASAResNet'
        if len(attention_stages) != 4:
            raise ValueError('attention_stages needs 4 entries, got '
                             f'{attention_stages}')
        check_int(owner, 'in_channels', in_channels)
        check_int(owner, 'base_channels', base_channels)
        check_int(owner, 'kernel_size', kernel_size, 1, 63, odd=True)
        check_int(owner, 'num_heads', num_heads)
        check_int(owner, 'stem_heads', stem_heads)
        check_int(owner, 'stem_mixtures', stem_mixtures)
        for i, attn in enumerate(attention_stages):
            if attn:  # the SASA width of stage i is base_channels * 2**i
                check_divisible(owner, f'base_channels * {2**i}',
                                base_channels * 2**i, '2 * num_heads',
                                2 * num_heads)
        if stem == 'attention':
            check_divisible(owner, 'base_channels', base_channels,
                            '2 * stem_heads', 2 * stem_heads)
        if stem not in ('attention', 'conv'):
            raise ValueError(f'SASAResNet: stem={stem!r} is invalid; it must '
                             "be 'attention' or 'conv'")
        out_indices = check_out_indices(owner, out_indices, 4)
        check_frozen_stages(owner, frozen_stages, 4)
        self.depth, self.out_indices = depth, out_indices
        self.in_channels = in_channels
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        if stem == 'attention':
            self.stem = AttentionStem(in_channels, base_channels, stem_heads,
                                      stem_mixtures, 4, norm_cfg)
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, base_channels, 7, 2, 3, bias=False),
                build_norm_layer(norm_cfg, base_channels)[1],
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        if impl not in IMPLS:
            raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')
        attn_cfg = dict(kernel_size=kernel_size, num_heads=num_heads,
                        border=border, scale=attn_scale, impl=impl)
        self.res_layers = []
        in_ch = base_channels
        for i, num_blocks in enumerate(self.arch_settings[depth]):
            out_ch = base_channels * 4 * 2**i
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(num_blocks):
                downsample = None
                if j == 0 and (stride != 1 or in_ch != out_ch):
                    downsample = nn.Sequential(
                        nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                        build_norm_layer(norm_cfg, out_ch)[1])
                blocks.append(AttentionBottleneck(
                    in_ch, out_ch, stride if j == 0 else 1, downsample,
                    attention_stages[i], attn_cfg, norm_cfg))
                in_ch = out_ch
            name = f'layer{i + 1}'
            self.add_module(name, Sequential(*blocks))
            self.res_layers.append(name)
        self.out_channels = [base_channels * 4 * 2**i for i in range(4)]
        self._freeze_stages()

    def _frozen_modules(self):
        return [self.stem] + [getattr(self, f'layer{i}')
                              for i in range(1, self.frozen_stages + 1)]

    def forward(self, x):
        self.check_input(x)
        x = self.stem(x)
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
