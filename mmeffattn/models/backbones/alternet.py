"""AlterNet: a pre-activation ResNet whose stage ends alternate Conv and MSA
blocks (Park & Kim, "How Do Vision Transformers Work?", ICLR 2022)."""
from typing import Sequence

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule, Sequential

from mmeffattn.models.attention.window_self_attention import \
    WindowSelfAttention2d
from mmeffattn.models.utils import (EffAttnBackbone, check_frozen_stages,
                                    check_int, check_number, check_out_indices)
from mmeffattn.registry import MODELS


def _drop_path(rate):
    from mmcv.cnn.bricks import DropPath
    return DropPath(rate) if rate > 0 else nn.Identity()


class PreActBottleneck(BaseModule):
    """BN-ReLU-1x1, BN-ReLU-3x3 (stride), BN-ReLU-1x1; the projection
    shortcut (1x1, stride) takes the pre-activated input."""
    expansion = 4

    def __init__(self, in_channels, channels, stride=1, drop_path=0.,
                 norm_cfg=dict(type='BN'), init_cfg=None):
        super().__init__(init_cfg)
        out = channels * self.expansion
        self.norm1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, channels)[1]
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.norm3 = build_norm_layer(norm_cfg, channels)[1]
        self.conv3 = nn.Conv2d(channels, out, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or in_channels != out:
            self.shortcut = nn.Conv2d(in_channels, out, 1, stride, bias=False)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x):
        pre = self.act(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.act(self.norm2(out)))
        out = self.conv3(self.act(self.norm3(out)))
        return self.drop_path(out) + skip


class MSABlock(BaseModule):
    """BN-GELU, 1x1 conv to ``in/4``, BN, window MSA whose output projection
    returns to ``4 * channels``; no MLP (AlterNet's pre-activation block)."""
    expansion = 4

    def __init__(self, in_channels, channels, num_heads, head_dim=64,
                 window_size=7, drop_path=0., norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        out = channels * self.expansion
        width = in_channels // self.expansion
        self.norm1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.act = nn.GELU()
        self.conv = nn.Conv2d(in_channels, width, 1, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, width)[1]
        self.attn = WindowSelfAttention2d(width, out, num_heads, head_dim,
                                          window_size)
        self.shortcut = None
        if in_channels != out:
            self.shortcut = nn.Conv2d(in_channels, out, 1, bias=False)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x):
        pre = self.act(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.attn(self.norm2(self.conv(pre)))
        return self.drop_path(out) + skip


@MODELS.register_module()
class AlterNet(EffAttnBackbone):
    """AlterNet (Park & Kim, ICLR 2022).

    Stage ``i`` has ``n_i`` blocks of which the last ``2 m_i`` alternate
    Conv, MSA: ``[C] * (n - 2m) + [C, M] * m`` (AlterNet-50: CCC, CCCM,
    CMCMCM, CMCM). Conv blocks are pre-activation bottlenecks (the first of
    a stage strides); MSA blocks use local window attention.

    Args:
        depth (int): 50 or 101 (blocks (3, 4, 6, 4) / (3, 4, 23, 4), MSA
            blocks (0, 1, 3, 2), heads (3, 6, 12, 24)). Defaults to 50.
        window_size (int): attention window, >= 1; 7 for ImageNet, 4 for
            small (e.g. 32x32) inputs. Defaults to 7.
        head_dim (int): channels per head, >= 1. Defaults to 64.
        base_channels (int): stem width, >= 1; stage ``i`` outputs
            ``4 * base * 2**i`` channels. Defaults to 64.
        num_heads (Sequence[int], optional): 4 heads per stage (ints >= 1),
            overriding the depth's (3, 6, 12, 24). Defaults to None.
        in_channels (int): input channels, >= 1. Defaults to 3.
        drop_path_rate (float): stochastic depth in [0, 1], linear over
            the blocks. Defaults to 0.
        out_indices (int | Sequence[int]): stages to output, in [-4, 3]
            (negative: from the last, as mmpretrain). Defaults to (3, ).
            Each output goes through its own BN-ReLU (the network is
            pre-activation: the last one is the classifier's BN-ReLU).
        frozen_stages (int): as mmpretrain's ResNet: -1 nothing frozen, 0
            the stem, ``k`` in [1, 4] the stem and ``layer1`` ..
            ``layer{k}`` (with their output BN-ReLUs). Defaults to -1.
        norm_cfg (dict): norm of the blocks. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): keep BN layers in eval mode while training.
            Defaults to False.
        init_cfg (dict | list, optional): initialisation; ``Pretrained``
            with ``prefix='backbone.'`` loads a classifier's backbone.

    Shapes:
        x: (B, 3, H, W) -> tuple of (B, 4 * base * 2**i, H / 2**(i+2),
        W / 2**(i+2)) for i in ``out_indices``.

    Example:
        >>> import torch
        >>> from mmeffattn.models import AlterNet
        >>> model = AlterNet(base_channels=8, head_dim=8, window_size=4,
        ...                  out_indices=(0, -1)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 64, 64))]
        [(1, 32, 16, 16), (1, 256, 2, 2)]
    """
    arch_settings = {
        50: dict(blocks=(3, 4, 6, 4), msa_blocks=(0, 1, 3, 2)),
        101: dict(blocks=(3, 4, 23, 4), msa_blocks=(0, 1, 3, 2)),
    }
    default_heads = (3, 6, 12, 24)

    def __init__(self,
                 depth: int = 50,
                 window_size: int = 7,
                 head_dim: int = 64,
                 base_channels: int = 64,
                 num_heads: Sequence[int] = None,
                 in_channels: int = 3,
                 drop_path_rate: float = 0.,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_cfg=dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 init_cfg=(dict(type='Kaiming', layer=['Conv2d']),
                           dict(type='Constant', val=1,
                                layer=['_BatchNorm']))):
        super().__init__(init_cfg=list(init_cfg) if isinstance(
            init_cfg, tuple) else init_cfg)
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for AlterNet; choose from '
                           f'{sorted(self.arch_settings)}')
        num_heads = tuple(num_heads or self.default_heads)
        if len(num_heads) != 4:
            raise ValueError(f'num_heads needs 4 entries, got {num_heads}')
        owner = 'AlterNet'
        check_int(owner, 'in_channels', in_channels)
        check_int(owner, 'base_channels', base_channels)
        check_int(owner, 'window_size', window_size)
        check_int(owner, 'head_dim', head_dim)
        for i, heads in enumerate(num_heads):
            check_int(owner, f'num_heads[{i}]', heads)
        check_number(owner, 'drop_path_rate', drop_path_rate, 0, 1)
        out_indices = check_out_indices(owner, out_indices, 4)
        check_frozen_stages(owner, frozen_stages, 4)
        arch = self.arch_settings[depth]
        self.depth, self.out_indices = depth, out_indices
        self.in_channels, self.window_size = in_channels, window_size
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base_channels, 7, 2, 3, bias=False),
            nn.MaxPool2d(3, 2, 1))
        rates = [drop_path_rate * i / max(sum(arch['blocks']) - 1, 1)
                 for i in range(sum(arch['blocks']))]
        self.out_channels, in_ch, index = [], base_channels, 0
        for i, (n, m) in enumerate(zip(arch['blocks'], arch['msa_blocks'])):
            if 2 * m > n:
                raise ValueError(f'stage {i}: {m} MSA blocks need >= {2 * m}'
                                 f' blocks, got {n}')
            channels = base_channels * 2**i
            kinds = ['conv'] * (n - 2 * m) + ['conv', 'msa'] * m
            blocks = []
            for j, kind in enumerate(kinds):
                if kind == 'conv':
                    blocks.append(PreActBottleneck(
                        in_ch, channels, 2 if (j == 0 and i > 0) else 1,
                        rates[index], norm_cfg))
                else:
                    blocks.append(MSABlock(
                        in_ch, channels, num_heads[i], head_dim, window_size,
                        rates[index], norm_cfg))
                in_ch, index = channels * 4, index + 1
            self.add_module(f'layer{i + 1}', Sequential(*blocks))
            self.out_channels.append(in_ch)
        for i in out_indices:
            self.add_module(f'out_norm{i}', nn.Sequential(
                build_norm_layer(norm_cfg, self.out_channels[i])[1],
                nn.ReLU(inplace=True)))
        self._freeze_stages()

    @staticmethod
    def pretrained_missing_ok(key: str) -> bool:
        """A classifier has only the last stage's BN-ReLU: a detector's
        other output norms start fresh (with a warning)."""
        return key.startswith('out_norm')

    def _frozen_modules(self):
        return [self.stem] + [
            getattr(self, name) for i in range(self.frozen_stages)
            for name in (f'layer{i + 1}', f'out_norm{i}')
            if hasattr(self, name)]

    def forward(self, x):
        self.check_input(x)
        x = self.stem(x)
        outs = []
        for i in range(4):
            x = getattr(self, f'layer{i + 1}')(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'out_norm{i}')(x))
        return tuple(outs)
