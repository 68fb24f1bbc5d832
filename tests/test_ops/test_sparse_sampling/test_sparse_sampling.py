"""SparseFormer's sampling and mixing against loop references (fp64)."""
import math

import pytest
import torch
import torch.nn as nn

from mmeffattn.ops import (adaptive_mixing, adaptive_mixing_flops,
                           roi_sampling_points, sample_points,
                           sample_points_flops)


def bilinear_loop(feat, points):
    """Each (x, y) in [0, 1] image coordinates: pixel (i, j) has its centre
    at ((j + .5) / W, (i + .5) / H); the 4 neighbours are weighted by
    distance, neighbours outside the map count as zero."""
    b, c, h, w = feat.shape
    _, n, p, _ = points.shape
    out = torch.zeros(b, n, p, c, dtype=feat.dtype)
    for bi in range(b):
        for ni in range(n):
            for pi in range(p):
                x = points[bi, ni, pi, 0].item() * w - 0.5
                y = points[bi, ni, pi, 1].item() * h - 0.5
                x0, y0 = math.floor(x), math.floor(y)
                for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                    for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                        if 0 <= yy < h and 0 <= xx < w:
                            out[bi, ni, pi] += wy * wx * feat[bi, :, yy, xx]
    return out


def test_sampling_equals_bilinear_loop_including_borders():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
    points = torch.rand(2, 4, 6, 2, generator=g, dtype=torch.float64)
    points = points * 1.4 - 0.2          # some points fall outside the map
    points[0, 0, 0] = torch.tensor([0., 0.])          # the corner
    points[0, 0, 1] = torch.tensor([0.5 / 7, 0.5 / 5])  # a pixel centre
    points[0, 0, 2] = torch.tensor([1., 1.])
    out = sample_points(feat, points)
    torch.testing.assert_close(out, bilinear_loop(feat, points),
                               atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out[0, 0, 1], feat[0, :, 0, 0])


def test_gradient_to_points_is_clamped():
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(1, 4, 6, 6, generator=g, dtype=torch.float64) * 50
    points = torch.rand(1, 3, 5, 2, generator=g, dtype=torch.float64)
    free = points.clone().requires_grad_()
    sample_points(feat, free).sum().backward()
    bounded = points.clone().requires_grad_()
    sample_points(feat, bounded, grad_bound=1 / 6).sum().backward()
    assert free.grad.abs().max() > 1 / 6          # the clamp matters here
    torch.testing.assert_close(bounded.grad, free.grad.clamp(-1 / 6, 1 / 6))


def test_gradcheck_sampling_and_mixing():
    g = torch.Generator().manual_seed(2)
    feat = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64,
                       requires_grad=True)
    points = (torch.rand(1, 2, 4, 2, generator=g, dtype=torch.float64) * .8
              + .1).requires_grad_()
    wc = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64,
                     requires_grad=True)
    wp = torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda f, pt, a, b: adaptive_mixing(sample_points(f, pt), a, b),
        (feat, points, wc, wp))


def test_mixing_equals_loop():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    wc = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    wp = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    bc = torch.randn(5, generator=g, dtype=torch.float64)
    bp = torch.randn(4, generator=g, dtype=torch.float64)
    gelu = nn.functional.gelu
    ref = torch.empty_like(x)
    for b in range(2):
        for n in range(3):
            h = gelu(x[b, n] @ wc[b, n] + bc)          # (P, C)
            ref[b, n] = gelu(wp[b, n] @ h + bp[:, None])
    torch.testing.assert_close(adaptive_mixing(x, wc, wp, bc, bp), ref)


def test_points_are_standardised_inside_the_roi():
    g = torch.Generator().manual_seed(4)
    roi = torch.tensor([[[0.1, 0.2, 0.5, 0.8]]], dtype=torch.float64)
    offsets = torch.randn(1, 1, 36, 2, generator=g, dtype=torch.float64) * 7
    pts = roi_sampling_points(roi, offsets)[0, 0]
    torch.testing.assert_close(pts.mean(0), torch.tensor(
        [0.3, 0.5], dtype=torch.float64))
    torch.testing.assert_close(pts.std(0), torch.tensor(
        [0.4 / 3, 0.6 / 3], dtype=torch.float64), atol=1e-5, rtol=1e-4)


class _Sampler(nn.Module):

    def forward(self, feat, points, wc, wp):
        return adaptive_mixing(sample_points(feat, points), wc, wp)


def test_sampling_and_mixing_macs_are_counted():
    from mmeffattn.analysis.flops import count_complexity
    b, c, n, p = 2, 6, 5, 9
    inputs = (torch.randn(b, c, 8, 8), torch.rand(b, n, p, 2),
              torch.randn(b, n, c, c), torch.randn(b, n, p, p))
    res = count_complexity(_Sampler(), inputs)
    assert sample_points_flops(b, c, n, p) == 4 * b * c * n * p
    assert res['macs'] == (sample_points_flops(b, c, n, p) +
                           adaptive_mixing_flops(b, n, p, c))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r'points \(B, N, P, 2\)'):
        sample_points(torch.zeros(1, 3, 4, 4), torch.zeros(1, 5, 2))
