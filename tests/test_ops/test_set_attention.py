import pytest
import torch
import torch.nn.functional as F

from mmeffattn.ops import (grid_positions, gaussian_sphere_kernel,
                           nystrom_features, positional_log_penalty,
                           set_attention)


def test_nystrom_exact_on_anchors_and_approximates_kernel():
    torch.manual_seed(0)
    anchors = torch.randn(2, 16, 4, dtype=torch.float64)
    # on the anchors themselves the Nystrom map reproduces the kernel
    feats = nystrom_features(anchors[None], anchors, sigma=0.5, eps=1e-9)
    z = F.normalize(anchors, dim=-1)
    want = gaussian_sphere_kernel(z, z, 0.5)
    torch.testing.assert_close(feats[0] @ feats[0].transpose(-1, -2), want,
                               atol=1e-5, rtol=0)
    # elsewhere it approximates it (many anchors in 4-d)
    anchors = torch.randn(1, 256, 4, dtype=torch.float64)
    x = torch.randn(1, 1, 20, 4, dtype=torch.float64)
    f = nystrom_features(x, anchors, sigma=0.8, eps=1e-8)[0, 0]
    u = F.normalize(x[0, 0], dim=-1)
    err = (f @ f.t() - gaussian_sphere_kernel(u, u, 0.8)).abs().max()
    assert err < 1e-2


def brute_force_set(psi_q, psi_k, v, refs, eps, iters, pos_log):
    """Dense attention matrix A = N m T^q T^k^T, built explicitly."""
    from mmeffattn.ops import sinkhorn_log
    log_k = psi_k @ refs.transpose(-1, -2) / eps + pos_log
    log_q = psi_q @ refs.transpose(-1, -2) / eps + pos_log
    tk = sinkhorn_log(log_k, iters, last='col')
    tq = sinkhorn_log(log_q, iters, last='row')
    n, m = tk.shape[-2:]
    attn = n * m * tq @ tk.transpose(-1, -2)  # (B, h, N, N)
    return attn @ v, attn


def inputs(height=5, width=3, heads=2, d=4, m=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    n = height * width
    psi_q = torch.rand(2, heads, n, d, generator=g, dtype=dtype)
    psi_k = torch.rand(2, heads, n, d, generator=g, dtype=dtype)
    v = torch.randn(2, heads, n, d, generator=g, dtype=dtype)
    refs = torch.randn(heads, m, d, generator=g, dtype=dtype)
    side = int(m**0.5)
    pos = positional_log_penalty(
        grid_positions(height, width, dtype=dtype),
        grid_positions(side, side, dtype=dtype),
        torch.tensor([0.3, 0.6], dtype=dtype)[:heads])
    return psi_q, psi_k, v, refs, pos


@pytest.mark.parametrize('sinkhorn', ['log', 'scaling'])
def test_matches_dense_attention_and_is_stochastic(sinkhorn):
    psi_q, psi_k, v, refs, pos = inputs()
    out, (tq, tk) = set_attention(psi_q, psi_k, v, refs, 0.5, 5, pos,
                                  return_plans=True, sinkhorn=sinkhorn)
    ref, attn = brute_force_set(psi_q, psi_k, v, refs, 0.5, 5, pos)
    torch.testing.assert_close(out, ref)
    assert (tq >= 0).all() and (tk >= 0).all() and (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn[..., 0]))


def test_permutation_equivariance_without_positions():
    psi_q, psi_k, v, refs, _ = inputs(height=4, width=4)
    perm = torch.randperm(16)
    out = set_attention(psi_q, psi_k, v, refs, 0.5, 3)
    out_p = set_attention(psi_q[:, :, perm], psi_k[:, :, perm],
                          v[:, :, perm], refs, 0.5, 3)
    torch.testing.assert_close(out_p, out[:, :, perm])


def test_gradcheck():
    psi_q, psi_k, v, refs, pos = inputs(height=3, width=2)
    args = [t.requires_grad_() for t in (psi_q, psi_k, v, refs, pos)]
    assert torch.autograd.gradcheck(
        lambda a, b, c, r, p: set_attention(a, b, c, r, 0.7, 3, p), args)


def test_mask_excludes_padding_tokens():
    psi_q, psi_k, v, refs, _ = inputs(height=4, width=2)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[0, 5:] = False
    out = set_attention(psi_q, psi_k, v, refs, 0.5, 3, mask=mask)
    v2 = v.clone()
    v2[0, :, 5:] = 1e6  # values of padded tokens must not leak
    out2 = set_attention(psi_q, psi_k, v2, refs, 0.5, 3, mask=mask)
    torch.testing.assert_close(out[0, :, :5], out2[0, :, :5])
