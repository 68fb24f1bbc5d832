"""SparseFormer: a few latent tokens that look at the image through RoIs
(Gao, Tong, Wang, Shou, "SparseFormer: Sparse Visual Recognition via Limited
Latent Tokens", ICLR 2024)."""
import math
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmeffattn.models.utils import EffAttnBackbone
from mmeffattn.ops.sparse_sampling import (adaptive_mixing,
                                           roi_sampling_points, sample_points)
from mmeffattn.registry import MODELS


def grid_rois(num_tokens: int, size: float = 0.5) -> torch.Tensor:
    """(N, 4) boxes (x1, y1, x2, y2) of ``size`` centred on a sqrt(N) grid."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f'num_tokens must be a square number (the RoIs start'
                         f' on a grid), got {num_tokens}')
    centres = (torch.arange(side, dtype=torch.float) + 0.5) / side
    cy, cx = torch.meshgrid(centres, centres, indexing='ij')
    centre = torch.stack([cx.flatten(), cy.flatten()], dim=-1)
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def grid_offsets(num_points: int) -> torch.Tensor:
    """(P * 2, ) (x, y) offsets of a sqrt(P) x sqrt(P) grid in [-1, 1]."""
    side = math.isqrt(num_points)
    if side * side != num_points:
        raise ValueError('num_points must be a square number (the offsets '
                         f'start on a grid), got {num_points}')
    axis = torch.linspace(-1, 1, side)
    gy, gx = torch.meshgrid(axis, axis, indexing='ij')
    return torch.stack([gx.flatten(), gy.flatten()], dim=-1).flatten()


class SparseSamplingMixer(BaseModule):
    """RoI adjustment, sampling of P points per token and adaptive mixing.

    Args:
        embed_dims (int): token width d.
        feat_channels (int): channels C of the sampled map.
        num_points (int): P, a square number.
    """

    def __init__(self, embed_dims: int, feat_channels: int,
                 num_points: int, init_cfg=None):
        super().__init__(init_cfg)
        c, p = feat_channels, num_points
        self.feat_channels, self.num_points = c, p
        self.norm = nn.LayerNorm(embed_dims)
        self.roi_delta = nn.Linear(embed_dims, 4, bias=False)
        self.offsets = nn.Linear(embed_dims, 2 * p)
        self.generator_norm = nn.LayerNorm(embed_dims)
        self.generator = nn.Sequential(
            nn.Linear(embed_dims, embed_dims // 4),
            nn.Linear(embed_dims // 4, c * c + p * p))
        self.channel_bias = nn.Parameter(torch.zeros(c))
        self.point_bias = nn.Parameter(torch.zeros(p))
        self.out = nn.Linear(p * c, embed_dims)

    def init_weights(self):
        super().init_weights()
        nn.init.zeros_(self.roi_delta.weight)
        nn.init.zeros_(self.offsets.weight)
        with torch.no_grad():
            self.offsets.bias.copy_(grid_offsets(self.num_points))
        nn.init.zeros_(self.generator[1].weight)

    def adjust_rois(self, x: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
        """centre += (dx, dy) * wh; wh *= exp(dw, dh). roi: (B, N, 4)."""
        delta = self.roi_delta(self.norm(x))
        centre = (roi[..., :2] + roi[..., 2:]) / 2
        size = roi[..., 2:] - roi[..., :2]
        centre = centre + delta[..., :2] * size
        size = size * delta[..., 2:].exp()
        return torch.cat([centre - size / 2, centre + size / 2], dim=-1)

    def sampling_points(self, x: torch.Tensor,
                        roi: torch.Tensor) -> torch.Tensor:
        """(B, N, P, 2) normalised points of each token."""
        offsets = self.offsets(self.norm(x)).unflatten(-1, (-1, 2))
        return roi_sampling_points(roi, offsets)

    def forward(self, x, roi, feat, trace: Optional[list] = None):
        """x: (B, N, d), roi: (B, N, 4), feat: (B, C, H, W) ->
        (mixed (B, N, d), adjusted roi)."""
        roi = self.adjust_rois(x, roi)
        points = self.sampling_points(x, roi)
        if trace is not None:
            trace.append(dict(roi=roi.detach(), points=points.detach()))
        sampled = sample_points(feat, points, grad_bound=1 / feat.shape[-2])
        c, p = self.feat_channels, self.num_points
        params = self.generator(self.generator_norm(x))
        channel_mix = params[..., :c * c].unflatten(-1, (c, c))
        point_mix = params[..., c * c:].unflatten(-1, (p, p))
        mixed = adaptive_mixing(sampled, channel_mix, point_mix,
                                self.channel_bias, self.point_bias)
        return self.out(mixed.flatten(-2)), roi


class SparseFormerUnit(BaseModule):
    """Pre-LN self-attention over the latent tokens, optionally the sparse
    sampling mixer (with its own residual), then a pre-LN FFN."""

    def __init__(self, embed_dims: int, num_heads: int, feat_channels: int,
                 num_points: int, sampling: bool, mlp_ratio: float = 4.,
                 drop_path: float = 0., init_cfg=None):
        super().__init__(init_cfg)
        from mmcv.cnn.bricks import DropPath
        from mmcv.cnn.bricks.transformer import FFN
        from mmpretrain.models.utils import MultiheadAttention
        self.norm_attn = nn.LayerNorm(embed_dims)
        self.attn = MultiheadAttention(embed_dims, num_heads)
        self.mixer = SparseSamplingMixer(
            embed_dims, feat_channels, num_points) if sampling else None
        self.norm_ffn = nn.LayerNorm(embed_dims)
        self.ffn = FFN(embed_dims, int(embed_dims * mlp_ratio),
                       act_cfg=dict(type='GELU'),
                       dropout_layer=dict(type='DropPath',
                                          drop_prob=drop_path))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()

    def forward(self, x, roi, feat, trace=None):
        x = x + self.drop_path(self.attn(self.norm_attn(x)))
        if self.mixer is not None:
            mixed, roi = self.mixer(x, roi, feat, trace)
            x = x + self.drop_path(mixed)
        x = self.ffn(self.norm_ffn(x), identity=x)
        return x, roi


@MODELS.register_module()
class SparseFormer(EffAttnBackbone):
    """SparseFormer (Gao et al., ICLR 2024).

    An early conv (7x7/2, ReLU, max pool; channel LayerNorm without affine)
    gives a stride-4 map. ``num_tokens`` learned latent tokens, each with a
    learned RoI, read it: the focusing unit (width ``embed_dims[0]``) runs
    ``focus_iters`` times with shared weights, each time attending, moving
    its RoIs, bilinearly sampling ``num_points`` points per token and mixing
    them adaptively; a Linear + LN widens the tokens; the cortex is
    ``cortex_depth`` units (width ``embed_dims[1]``) of which only the first
    samples. Output: token mean -> LN.

    Args:
        arch (str | dict): 'tiny', 'small', 'base' or a dict with keys
            num_tokens, embed_dims (2), cortex_depth.
        num_points (int): sampling points per token. Defaults to 36.
        early_channels (int): early-conv width C. Defaults to 96.
        num_heads (int): heads of every attention. Defaults to 64.
        focus_iters (int): repeats of the focusing unit. Defaults to 4.
        mlp_ratio (float): FFN ratio. Defaults to 4.
        drop_path_rate (float): stochastic depth, linear over the focusing
            unit and the cortex units.
        out_type (str): 'avg' (token mean + LN) or 'tokens' (B, N, C).
        frozen_stages (int): -1 none; 0 early conv + tokens; 1 also the
            focusing unit and transition; 2 everything.
        norm_eval (bool): keep norms in eval mode while training.

    Shapes:
        x: (B, 3, H, W) -> ((B, embed_dims[1]), ) or ((B, N, embed_dims[1]),)
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(num_tokens=49,
                                            embed_dims=(256, 512),
                                            cortex_depth=8)),
        **dict.fromkeys(['s', 'small'], dict(num_tokens=64,
                                             embed_dims=(320, 640),
                                             cortex_depth=8)),
        **dict.fromkeys(['b', 'base'], dict(num_tokens=81,
                                            embed_dims=(384, 768),
                                            cortex_depth=10)),
    }
    OUT_TYPES = ('avg', 'tokens')

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 num_points: int = 36,
                 early_channels: int = 96,
                 num_heads: int = 64,
                 focus_iters: int = 4,
                 mlp_ratio: float = 4.,
                 drop_path_rate: float = 0.,
                 in_channels: int = 3,
                 out_type: str = 'avg',
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg=dict(type='TruncNormal', layer='Linear', std=.02)):
        super().__init__(init_cfg)
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise KeyError(f'arch {arch!r} is not a SparseFormer arch; '
                               f'choose from {sorted(set(self.arch_zoo))} '
                               'or pass a dict')
            arch = self.arch_zoo[arch.lower()]
        missing = {'num_tokens', 'embed_dims', 'cortex_depth'} - set(arch)
        if missing:
            raise KeyError(f'custom SparseFormer arch lacks {sorted(missing)}')
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got '
                             f'{out_type!r}')
        dims = tuple(arch['embed_dims'])
        if len(dims) != 2 or any(d % num_heads for d in dims):
            raise ValueError(f'embed_dims {dims} must be 2 widths divisible '
                             f'by num_heads={num_heads}')
        self.in_channels, self.out_type = in_channels, out_type
        self.num_tokens, self.embed_dims = arch['num_tokens'], dims
        self.focus_iters = focus_iters
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        self.early_conv = nn.Sequential(
            nn.Conv2d(in_channels, early_channels, 7, 2, 3),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        self.token_embed = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(self.num_tokens, dims[0]),
                                  std=.02))
        self.token_roi = nn.Parameter(grid_rois(self.num_tokens))
        depth = arch['cortex_depth']
        rates = torch.linspace(0, drop_path_rate, depth + 1).tolist()
        unit = dict(num_heads=num_heads, feat_channels=early_channels,
                    num_points=num_points, mlp_ratio=mlp_ratio)
        self.focus = SparseFormerUnit(dims[0], sampling=True,
                                      drop_path=rates[0], **unit)
        self.transition = nn.Sequential(nn.Linear(dims[0], dims[1]),
                                        nn.LayerNorm(dims[1]))
        self.cortex = nn.ModuleList(
            SparseFormerUnit(dims[1], sampling=(i == 0),
                             drop_path=rates[i + 1], **unit)
            for i in range(depth))
        self.norm = nn.LayerNorm(dims[1])
        self.out_channels = [dims[1]]
        self._freeze_stages()

    def _frozen_modules(self) -> List[nn.Module]:
        groups = [[self.early_conv], [self.focus, self.transition],
                  [*self.cortex, self.norm]]
        return [m for g in groups[:self.frozen_stages + 1] for m in g]

    def _freeze_stages(self):
        super()._freeze_stages()
        if self.frozen_stages >= 0:
            self.token_embed.requires_grad = False
            self.token_roi.requires_grad = False

    def early_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H/4, W/4), each pixel's channels
        normalised (no affine)."""
        feat = self.early_conv(x)
        return F.layer_norm(feat.permute(0, 2, 3, 1),
                            feat.shape[1:2]).permute(0, 3, 1, 2)

    def forward_tokens(self, x: torch.Tensor, trace: Optional[list] = None):
        """(B, 3, H, W) -> tokens (B, N, embed_dims[1]).

        ``trace`` (a list), if given, receives a dict(roi, points) per
        sampling step: roi (B, N, 4) and points (B, N, P, 2), normalised
        (x, y) image coordinates.
        """
        self.check_input(x)
        feat = self.early_features(x)
        b = x.shape[0]
        tokens = self.token_embed.expand(b, -1, -1)
        roi = self.token_roi.expand(b, -1, -1)
        for _ in range(self.focus_iters):
            tokens, roi = self.focus(tokens, roi, feat, trace)
        tokens = self.transition(tokens)
        for unit in self.cortex:
            tokens, roi = unit(tokens, roi, feat, trace)
        return tokens

    def forward(self, x):
        tokens = self.forward_tokens(x)
        if self.out_type == 'tokens':
            return (tokens, )
        return (self.norm(tokens.mean(dim=1)), )
