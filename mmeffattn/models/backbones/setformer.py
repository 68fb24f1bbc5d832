"""SeTformer: a hierarchical vision transformer with SeT attention."""
import re
from typing import Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_

from mmeffattn.models.attention import SeTAttention
from mmeffattn.models.utils import (EffAttnBackbone, check_divisible,
                                    check_frozen_stages, check_int,
                                    check_number, check_out_indices,
                                    check_square)
from mmeffattn.registry import MODELS


class ConvDownsample(BaseModule):
    """3x3 stride-2 conv + LayerNorm on (B, N, C) tokens of an H x W grid."""

    def __init__(self, in_channels, out_channels, norm_cfg):
        super().__init__()
        from mmcv.cnn import build_norm_layer
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x, hw_shape):
        bsz, _, channels = x.shape
        x = x.transpose(1, 2).reshape(bsz, channels, *hw_shape)
        x = self.conv(x)
        hw_shape = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), tuple(hw_shape)


class SeTBlock(BaseModule):
    """Pre-norm block: x + DropPath(SeT(LN(x))); x + DropPath(MLP(LN(x)))."""

    def __init__(self, embed_dims, num_heads, mlp_ratio, drop_path, attn_cfg,
                 norm_cfg, with_cp=False):
        super().__init__()
        from mmcv.cnn import build_norm_layer
        from mmcv.cnn.bricks.drop import DropPath
        from mmcv.cnn.bricks.transformer import FFN
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = SeTAttention(embed_dims, num_heads, **attn_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(embed_dims, int(embed_dims * mlp_ratio), num_fcs=2,
                       act_cfg=dict(type='GELU'), add_identity=False)

    def _forward(self, x, hw_shape):
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape))
        return x + self.drop_path(self.ffn(self.norm2(x)))

    def forward(self, x, hw_shape):
        if self.with_cp and x.requires_grad:
            import torch.utils.checkpoint as cp
            return cp.checkpoint(self._forward, x, hw_shape,
                                 use_reentrant=False)
        return self._forward(x, hw_shape)


@MODELS.register_module()
class SeTformer(EffAttnBackbone):
    """SeTformer backbone (Shamsolmoali et al., AAAI 2024), reconstructed.

    Four stages at strides 4, 8, 16, 32: a conv stem (two 3x3 stride-2 convs),
    3x3 stride-2 conv downsampling between stages, pre-norm SeT blocks. The
    paper does not publish its variants; ``arch_zoo`` is our choice, sized to
    the budget derived in docs/setformer.md.

    Args:
        arch (str | dict): ``'tiny'|'small'|'base'`` (or ``t/s/b``), or a dict
            with ``embed_dims`` (even int >= 2), ``depths`` (4 ints >= 1),
            ``num_heads`` (4 ints >= 1, each dividing its stage width
            ``embed_dims * 2**i``) and ``mlp_ratio`` (> 0). Defaults to
            ``'tiny'``.
        in_channels (int): input channels, >= 1. Defaults to 3.
        num_refs (int): SeT references per head, a perfect square >= 1.
            Defaults to 49.
        num_iters (int): Sinkhorn iterations, >= 1. Defaults to 3.
        ot_eps (float): entropic regularisation, > 0. Defaults to 0.5.
        feature_map (str): ``'nystrom'`` or ``'linear'``. Defaults to
            ``'nystrom'``.
        pos_penalty (bool): SeT's positional penalty. Defaults to True.
        drop_path_rate (float): stochastic depth in [0, 1], linear over all
            blocks. Defaults to 0.1.
        out_indices (int | Sequence[int]): stages to output, in [-4, 3]
            (negative: from the last, as mmpretrain). Defaults to ``(3, )``.
        frozen_stages (int): as mmpretrain's Swin: -1 nothing frozen, ``k``
            in [0, 3] the stem and stages 0 .. k (with their output norms
            and the downsampling after them). Defaults to -1.
        norm_eval (bool): keep batch norms (if ``norm_cfg`` makes any) in
            eval mode while training. Defaults to False.
        with_cp (bool): gradient checkpointing per block. Defaults to False.
        norm_cfg (dict): norm of the tokens. Defaults to ``dict(type='LN')``.
        init_cfg (dict | list, optional): initialisation; ``Pretrained``
            with ``prefix='backbone.'`` loads a classifier's backbone.

    Shapes:
        x: (B, 3, H, W) -> tuple of (B, C_i, H / 2**(i+2), W / 2**(i+2)).

    Example:
        >>> import torch
        >>> from mmeffattn.models import SeTformer
        >>> arch = dict(embed_dims=16, depths=[1, 1, 1, 1],
        ...             num_heads=[1, 2, 4, 8], mlp_ratio=2)
        >>> model = SeTformer(arch, num_refs=4, out_indices=(0, -1)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 64, 64))]
        [(1, 16, 16, 16), (1, 128, 2, 2)]
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(
            embed_dims=64, depths=[2, 2, 6, 2], num_heads=[2, 4, 8, 16],
            mlp_ratio=4)),
        **dict.fromkeys(['s', 'small'], dict(
            embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
            mlp_ratio=4)),
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=96, depths=[2, 2, 15, 2], num_heads=[3, 6, 12, 24],
            mlp_ratio=4)),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 num_refs: int = 49,
                 num_iters: int = 3,
                 ot_eps: float = 0.5,
                 feature_map: str = 'nystrom',
                 pos_penalty: bool = True,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 norm_cfg=dict(type='LN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        from mmcv.cnn import build_norm_layer
        if isinstance(arch, str):
            arch = arch.lower()
            if arch not in self.arch_zoo:
                raise KeyError(f'Arch {arch} is not in default archs '
                               f'{sorted(self.arch_zoo)}')
            arch = self.arch_zoo[arch]
        else:
            need = {'embed_dims', 'depths', 'num_heads', 'mlp_ratio'}
            if not isinstance(arch, dict) or not need <= set(arch):
                raise ValueError(f'Custom arch needs a dict with keys {need}')
        depths, heads = list(arch['depths']), list(arch['num_heads'])
        if len(depths) != 4 or len(heads) != 4:
            raise ValueError('depths and num_heads need 4 stages')
        owner = 'SeTformer'
        check_int(owner, 'in_channels', in_channels)
        check_int(owner, 'arch.embed_dims', arch['embed_dims'], 2)
        check_divisible(owner, 'arch.embed_dims', arch['embed_dims'],
                        'the stem (2 convs)', 2)
        check_number(owner, 'arch.mlp_ratio', arch['mlp_ratio'], 0,
                     low_open=True)
        for i in range(4):
            check_int(owner, f'arch.depths[{i}]', depths[i])
            check_int(owner, f'arch.num_heads[{i}]', heads[i])
            check_divisible(owner, f'stage {i} width embed_dims * {2**i}',
                            arch['embed_dims'] * 2**i,
                            f'arch.num_heads[{i}]', heads[i])
        check_square(owner, 'num_refs', num_refs)
        check_int(owner, 'num_iters', num_iters)
        check_number(owner, 'ot_eps', ot_eps, 0, low_open=True)
        check_number(owner, 'drop_path_rate', drop_path_rate, 0, 1)
        out_indices = check_out_indices(owner, out_indices, 4)
        check_frozen_stages(owner, frozen_stages, 3)
        self.out_indices, self.frozen_stages = out_indices, frozen_stages
        self.norm_eval = norm_eval
        self.in_channels = in_channels
        dims = [arch['embed_dims'] * 2**i for i in range(4)]
        self.num_features = dims
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, dims[0] // 2, 3, 2, 1),
            nn.GELU(), nn.Conv2d(dims[0] // 2, dims[0], 3, 2, 1))
        self.stem_norm = build_norm_layer(norm_cfg, dims[0])[1]
        attn_cfg = dict(num_refs=num_refs, num_iters=num_iters, ot_eps=ot_eps,
                        feature_map=feature_map, pos_penalty=pos_penalty)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = ModuleList()
        self.downsamples = ModuleList()
        for i in range(4):
            blocks = ModuleList([
                SeTBlock(dims[i], heads[i], arch['mlp_ratio'],
                         rates[sum(depths[:i]) + j], attn_cfg, norm_cfg,
                         with_cp) for j in range(depths[i])
            ])
            self.stages.append(blocks)
            if i < 3:
                self.downsamples.append(
                    ConvDownsample(dims[i], dims[i + 1], norm_cfg))
        # output norms only for the stages that are output (as mmpretrain's
        # Swin): a norm whose output feeds no loss would have no gradient,
        # which DDP rejects. A dense predictor's extra output norms start
        # fresh when it loads a classifier (see pretrained_missing_ok).
        for i in out_indices:
            self.add_module(f'norm{i}', build_norm_layer(norm_cfg, dims[i])[1])
        self._freeze_stages()

    def init_weights(self):
        super().init_weights()
        if self.init_cfg is None:
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def _frozen_modules(self):
        modules = [self.stem, self.stem_norm]
        for i in range(self.frozen_stages + 1):
            modules.append(self.stages[i])
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
            if i < 3:
                modules.append(self.downsamples[i])
        return modules

    def pretrained_missing_ok(self, key: str) -> bool:
        """Output norms may be missing from a classifier's checkpoint (it
        has ``norm3`` only); they start from the norm's default init."""
        return re.match(r'norm[0-3]\.', key) is not None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Key map of checkpoints written before v0.2 (norm0-norm3 always):
        # the norms of stages that are not output are dropped.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            m = re.match(r'norm([0-3])\.', key[len(prefix):])
            if m and int(m.group(1)) not in self.out_indices:
                state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        self.check_input(x)
        x = self.stem(x)
        hw_shape = tuple(x.shape[2:])
        x = self.stem_norm(x.flatten(2).transpose(1, 2))
        outs = []
        for i, blocks in enumerate(self.stages):
            for block in blocks:
                x = block(x, hw_shape)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x)
                outs.append(out.transpose(1, 2).reshape(
                    x.shape[0], -1, *hw_shape).contiguous())
            if i < 3:
                x, hw_shape = self.downsamples[i](x, hw_shape)
        return tuple(outs)
