"""SparseFormer's sparse feature sampling (Gao et al., ICLR 2024).

Points live in normalised image coordinates: (0, 0) is the top-left corner
of the map and (1, 1) the bottom-right, so a map of H rows has pixel centres
at (i + 0.5) / H -- ``grid_sample``'s ``align_corners=False`` convention.
"""
import torch
import torch.nn.functional as F
from torch import Tensor


class _ClampGrad(torch.autograd.Function):
    """Identity whose backward clamps the gradient to [-bound, bound]."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.bound = bound
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(-ctx.bound, ctx.bound), None


def clamp_grad(x: Tensor, bound: float) -> Tensor:
    """``x`` unchanged; its gradient clamped elementwise to +-``bound``."""
    return _ClampGrad.apply(x, bound)


def roi_sampling_points(roi: Tensor, offsets: Tensor,
                        eps: float = 1e-7) -> Tensor:
    """Sampling points of each token from its RoI and raw offsets.

    Offsets are standardised per token and axis over the P points,
    ``(o - mean) / (3 (std + eps))`` (unbiased std), scaled by the RoI's
    width/height and added to its centre.

    Args:
        roi (Tensor): (B, N, 4) boxes (x1, y1, x2, y2), normalised.
        offsets (Tensor): (B, N, P, 2) raw (x, y) offsets.

    Returns:
        Tensor: (B, N, P, 2) points (x, y), normalised.
    """
    centre = (roi[..., :2] + roi[..., 2:]) / 2
    size = roi[..., 2:] - roi[..., :2]
    mean = offsets.mean(dim=2, keepdim=True)
    std = offsets.std(dim=2, keepdim=True)
    unit = (offsets - mean) / (3 * (std + eps))
    return centre[:, :, None] + unit * size[:, :, None]


def sample_points(feat: Tensor, points: Tensor,
                  grad_bound: float = None) -> Tensor:
    """Bilinear samples of ``feat`` at ``points`` (zeros outside the map).

    Args:
        feat (Tensor): (B, C, H, W) map.
        points (Tensor): (B, N, P, 2) normalised (x, y) points.
        grad_bound (float, optional): clamp of the gradient reaching
            ``points`` (SparseFormer uses 1 / H). None: no clamp.

    Returns:
        Tensor: (B, N, P, C) sampled features.
    """
    if feat.dim() != 4 or points.dim() != 4 or points.shape[-1] != 2 or \
            points.shape[0] != feat.shape[0]:
        raise ValueError('sample_points expects feat (B, C, H, W) and points '
                         f'(B, N, P, 2); got {tuple(feat.shape)} and '
                         f'{tuple(points.shape)}')
    if grad_bound is not None and points.requires_grad:
        points = clamp_grad(points, grad_bound)
    grid = points.to(feat.dtype) * 2 - 1
    out = F.grid_sample(feat, grid, mode='bilinear', padding_mode='zeros',
                        align_corners=False)                 # (B, C, N, P)
    return out.permute(0, 2, 3, 1)


def sample_points_flops(batch: int, channels: int, tokens: int,
                        points: int) -> int:
    """MACs of :func:`sample_points`: 4 weighted taps per value."""
    return 4 * batch * channels * tokens * points


def adaptive_mixing(x: Tensor, channel_mix: Tensor, point_mix: Tensor,
                    channel_bias: Tensor = None,
                    point_bias: Tensor = None) -> Tensor:
    """AdaMixer-style mixing of each token's own sampled points.

    ``h = GELU(X Wc + bc)``, then ``GELU(Wp h + bp)``.

    Args:
        x (Tensor): (B, N, P, C) sampled features.
        channel_mix (Tensor): (B, N, C, C) per-token channel weights.
        point_mix (Tensor): (B, N, P, P) per-token point weights.
        channel_bias (Tensor, optional): (C, ).
        point_bias (Tensor, optional): (P, ).

    Returns:
        Tensor: (B, N, P, C).
    """
    h = torch.matmul(x, channel_mix)
    if channel_bias is not None:
        h = h + channel_bias
    h = torch.matmul(point_mix, F.gelu(h))
    if point_bias is not None:
        h = h + point_bias[:, None]
    return F.gelu(h)


def adaptive_mixing_flops(batch: int, tokens: int, points: int,
                          channels: int) -> int:
    """MACs of :func:`adaptive_mixing`: X Wc (P C C) and Wp h (P P C)."""
    return batch * tokens * points * channels * (channels + points)
