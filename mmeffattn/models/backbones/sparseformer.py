"""SparseFormer: a few latent tokens that look at the image through RoIs
(Gao, Tong, Wang, Shou, "SparseFormer: Sparse Visual Recognition via Limited
Latent Tokens", ICLR 2024)."""
import math
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn.bricks.drop import drop_path
from mmengine.model import BaseModule, ModuleList

from mmeffattn.models.utils import (EffAttnBackbone, check_divisible,
                                    check_frozen_stages, check_int,
                                    check_number, check_square)
from mmeffattn.ops import adaptive_mixing, roi_sampling_points, sample_points
from mmeffattn.registry import MODELS


def grid_rois(num_tokens: int, size: float = 0.5) -> torch.Tensor:
    """(N, 4) boxes (x1, y1, x2, y2) of side ``size`` on a sqrt(N) grid that
    spans [0, 1]: corners from 0 to 1 - size. Token ``i * sqrt(N) + j`` has
    column ``i`` and row ``j`` (the official order). One token: the centred
    box."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f'num_tokens must be a square number (the RoIs start'
                         f' on a grid), got {num_tokens}')
    if side == 1:
        start = torch.full((1, ), (1 - size) / 2)
    else:
        start = torch.arange(side, dtype=torch.float) / (side - 1) * (1 - size)
    gx, gy = torch.meshgrid(start, start, indexing='ij')
    corner = torch.stack([gx.flatten(), gy.flatten()], dim=-1)
    return torch.cat([corner, corner + size], dim=-1)


def grid_offsets(num_points: int) -> torch.Tensor:
    """(P * 2, ) (x, y) offsets of a sqrt(P) x sqrt(P) grid of cell centres
    in (-0.5, 0.5), x fastest."""
    side = math.isqrt(num_points)
    if side * side != num_points:
        raise ValueError('num_points must be a square number (the offsets '
                         f'start on a grid), got {num_points}')
    axis = (torch.arange(side, dtype=torch.float) + 0.5) / side - 0.5
    gy, gx = torch.meshgrid(axis, axis, indexing='ij')
    return torch.stack([gx.flatten(), gy.flatten()], dim=-1).flatten()


def unit_gain_(norm: nn.LayerNorm) -> None:
    """LayerNorm gains set to 1 / sqrt(d): the normalised vector has norm
    about 1."""
    nn.init.constant_(norm.weight, norm.normalized_shape[0]**-0.5)


class SparseSamplingMixer(BaseModule):
    """RoI adjustment, sampling of P points per token and adaptive mixing.

    Three LayerNorms (eps 1e-6) read the token: one for the RoI adjustment,
    one for the sampling offsets, one for the mixing-weight generator.

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
        self.roi_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.roi_delta = nn.Linear(embed_dims, 4, bias=False)
        self.offset_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.offsets = nn.Linear(embed_dims, 2 * p)
        self.generator_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.generator = nn.Sequential(
            nn.Linear(embed_dims, embed_dims // 4),
            nn.Linear(embed_dims // 4, c * c + p * p))
        self.channel_bias = nn.Parameter(torch.zeros(c))
        self.point_bias = nn.Parameter(torch.zeros(p))
        self.out = nn.Linear(p * c, embed_dims)

    def init_weights(self):
        """The official initialisation: unit-norm LN gains, RoI deltas 0,
        offsets on a grid, mixing weights from a zero matrix plus a Xavier
        bias (so the mixing starts as a fixed, non-zero mix)."""
        super().init_weights()
        c, p = self.feat_channels, self.num_points
        for norm in (self.roi_norm, self.offset_norm, self.generator_norm):
            unit_gain_(norm)
        nn.init.zeros_(self.roi_delta.weight)
        nn.init.zeros_(self.generator[1].weight)
        with torch.no_grad():
            self.offsets.bias.copy_(grid_offsets(p))
            bias = self.generator[1].bias
            nn.init.xavier_uniform_(bias[:c * c].view(c, c))
            nn.init.xavier_uniform_(bias[c * c:].view(p, p))

    def adjust_rois(self, x: torch.Tensor, roi: torch.Tensor,
                    drop_prob: float = 0.) -> torch.Tensor:
        """centre += (dx, dy) * wh; wh = |wh| * exp(dw, dh). roi: (B, N, 4).
        The deltas go through drop path."""
        delta = drop_path(self.roi_delta(self.roi_norm(x)), drop_prob,
                          self.training)
        centre = (roi[..., :2] + roi[..., 2:]) / 2
        size = (roi[..., 2:] - roi[..., :2]).abs()
        centre = centre + delta[..., :2] * size
        size = size * delta[..., 2:].exp()
        return torch.cat([centre - size / 2, centre + size / 2], dim=-1)

    def sampling_points(self, x: torch.Tensor,
                        roi: torch.Tensor) -> torch.Tensor:
        """(B, N, P, 2) normalised points of each token."""
        offsets = self.offsets(self.offset_norm(x)).unflatten(-1, (-1, 2))
        return roi_sampling_points(roi, offsets)

    def forward(self, x, roi, feat, trace: Optional[list] = None,
                drop_prob: float = 0.):
        """x: (B, N, d), roi: (B, N, 4), feat: (B, C, H, W) ->
        (mixed (B, N, d), adjusted roi)."""
        roi = self.adjust_rois(x, roi, drop_prob)
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
    """Pre-LN self-attention over the latent tokens, optionally the RoI
    adjustment and the sparse sampling mixer (with its own residual), then a
    pre-LN FFN. Drop path (rate given per pass) acts on the three residual
    branches and on the RoI deltas."""

    def __init__(self, embed_dims: int, num_heads: int, feat_channels: int,
                 num_points: int, sampling: bool, mlp_ratio: float = 4.,
                 init_cfg=None):
        super().__init__(init_cfg)
        from mmcv.cnn.bricks.transformer import FFN
        from mmpretrain.models.utils import MultiheadAttention
        self.norm_attn = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = MultiheadAttention(embed_dims, num_heads)
        self.mixer = SparseSamplingMixer(
            embed_dims, feat_channels, num_points) if sampling else None
        self.norm_ffn = nn.LayerNorm(embed_dims, eps=1e-6)
        self.ffn = FFN(embed_dims, int(embed_dims * mlp_ratio),
                       act_cfg=dict(type='GELU'), add_identity=False)

    def forward(self, x, roi, feat, trace=None, drop_prob: float = 0.):
        x = x + drop_path(self.attn(self.norm_attn(x)), drop_prob,
                          self.training)
        if self.mixer is not None:
            mixed, roi = self.mixer(x, roi, feat, trace, drop_prob)
            x = x + drop_path(mixed, drop_prob, self.training)
        x = x + drop_path(self.ffn(self.norm_ffn(x)), drop_prob,
                          self.training)
        return x, roi


@MODELS.register_module()
class SparseFormer(EffAttnBackbone):
    """SparseFormer (Gao et al., ICLR 2024).

    An early conv (7x7/2, ReLU, max pool; each pixel's channels standardised
    with the unbiased variance + 1e-7, no affine) gives a stride-4 map.
    ``num_tokens`` learned latent tokens, each with a learned RoI, read it:
    the focusing unit (width ``embed_dims[0]``) runs ``focus_iters`` times
    with shared weights, each time attending, moving its RoIs, bilinearly
    sampling ``num_points`` points per token and mixing them adaptively; a
    Linear + LN widens the tokens; the cortex is ``cortex_depth`` units
    (width ``embed_dims[1]``) of which only the first moves RoIs and samples.
    Output: token mean -> LN. Every LayerNorm has eps 1e-6. Layers and
    initialisation follow the official implementation (showlab/sparseformer,
    ``imagenet/models/sparseformer.py``); ``tools/model_converters/
    sparseformer_to_mmeffattn.py`` converts its checkpoints.

    Args:
        arch (str | dict): 'tiny', 'small', 'base' or a dict with keys
            num_tokens, embed_dims (2), cortex_depth.
        num_points (int): sampling points per token. Defaults to 36.
        early_channels (int): early-conv width C. Defaults to 96.
        num_heads (int | Sequence[int]): heads of the attentions, one number
            or one per width (focusing, cortex). The official model uses 64,
            or d heads of width 1 where d < 64. Defaults to 64.
        focus_iters (int): repeats of the focusing unit. Defaults to 4.
        mlp_ratio (float): FFN ratio. Defaults to 4.
        drop_path_rate (float): stochastic depth, linear from 0 over the
            ``focus_iters + cortex_depth`` passes. Defaults to 0.
        out_type (str): 'avg' (token mean + LN) or 'tokens' (B, N, C).
        frozen_stages (int): in [-1, 2]: -1 none; 0 early conv + tokens; 1
            also the focusing unit and transition; 2 everything (its stages
            are early conv, focusing, cortex). Defaults to -1.
        norm_eval (bool): keep norms in eval mode while training.

    Shapes:
        x: (B, 3, H, W) -> ((B, embed_dims[1]), ) or ((B, N, embed_dims[1]),)

    Example:
        >>> import torch
        >>> from mmeffattn.models import SparseFormer
        >>> arch = dict(num_tokens=4, embed_dims=(16, 32), cortex_depth=1)
        >>> model = SparseFormer(arch, num_points=4, early_channels=8,
        ...                      num_heads=2, focus_iters=1).eval()
        >>> tuple(model(torch.rand(1, 3, 64, 64))[0].shape)
        (1, 32)
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
                 num_heads: Union[int, Sequence[int]] = 64,
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
        owner = 'SparseFormer'
        check_int(owner, 'in_channels', in_channels)
        check_square(owner, 'num_points', num_points)
        check_square(owner, 'arch.num_tokens', arch['num_tokens'])
        check_int(owner, 'arch.cortex_depth', arch['cortex_depth'])
        check_int(owner, 'early_channels', early_channels)
        heads = (num_heads, ) * 2 if isinstance(num_heads, int) else \
            tuple(num_heads)
        if len(heads) != 2:
            raise ValueError('num_heads must be an int or 2 ints (focusing, '
                             f'cortex), got {num_heads!r}')
        for h in heads:
            check_int(owner, 'num_heads', h)
        check_int(owner, 'focus_iters', focus_iters)
        check_number(owner, 'mlp_ratio', mlp_ratio, 0, low_open=True)
        check_number(owner, 'drop_path_rate', drop_path_rate, 0, 1)
        check_frozen_stages(owner, frozen_stages, 2)
        dims = tuple(arch['embed_dims'])
        if len(dims) != 2:
            raise ValueError(f'SparseFormer: arch.embed_dims={dims} is '
                             'invalid; it must be 2 widths')
        for k, (width, h) in enumerate(zip(dims, heads)):
            check_divisible(owner, f'arch.embed_dims[{k}]', width,
                            f'num_heads[{k}]' if not isinstance(
                                num_heads, int) else 'num_heads', h)
        self.in_channels, self.out_type = in_channels, out_type
        self.num_tokens, self.embed_dims = arch['num_tokens'], dims
        self.focus_iters = focus_iters
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        self.early_conv = nn.Sequential(
            nn.Conv2d(in_channels, early_channels, 7, 2, 3),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        # initialised here, as officially: init_cfg (Linear layers) and
        # Pretrained leave them alone
        nn.init.kaiming_normal_(self.early_conv[0].weight, mode='fan_out',
                                nonlinearity='relu')
        self.token_embed = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(self.num_tokens, dims[0]),
                                  std=1.))
        self.token_roi = nn.Parameter(grid_rois(self.num_tokens))
        depth = arch['cortex_depth']
        self.drop_path_rates = torch.linspace(
            0, drop_path_rate, focus_iters + depth).tolist()
        unit = dict(feat_channels=early_channels, num_points=num_points,
                    mlp_ratio=mlp_ratio)
        self.focus = SparseFormerUnit(dims[0], heads[0], sampling=True,
                                      **unit)
        self.transition = nn.Sequential(nn.Linear(dims[0], dims[1]),
                                        nn.LayerNorm(dims[1], eps=1e-6))
        self.cortex = ModuleList(
            SparseFormerUnit(dims[1], heads[1], sampling=(i == 0), **unit)
            for i in range(depth))
        self.norm = nn.LayerNorm(dims[1], eps=1e-6)
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
        standardised: (f - mean) / sqrt(unbiased var + 1e-7), no affine."""
        feat = self.early_conv(x)
        feat = feat - feat.mean(dim=1, keepdim=True)
        return feat / (feat.var(dim=1, keepdim=True) + 1e-7).sqrt()

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
        rates = self.drop_path_rates
        for i in range(self.focus_iters):
            tokens, roi = self.focus(tokens, roi, feat, trace, rates[i])
        tokens = self.transition(tokens)
        for unit, rate in zip(self.cortex, rates[self.focus_iters:]):
            tokens, roi = unit(tokens, roi, feat, trace, rate)
        return tokens

    def forward(self, x):
        tokens = self.forward_tokens(x)
        if self.out_type == 'tokens':
            return (tokens, )
        return (self.norm(tokens.mean(dim=1)), )
