import pytest
import torch
import torch.nn.functional as F
from helpers import assert_same_set_attention

from mmeffattn.ops import (gaussian_sphere_kernel, grid_positions,
                           nystrom_features, positional_log_penalty,
                           set_attention)
from mmeffattn.ops._ext import extension_available


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


@pytest.mark.parametrize('hw,num_iters,masked', [((5, 3), 1, False),
                                                 ((7, 4), 3, True),
                                                 ((3, 2), 4, True)])
def test_fused_transport_equals_log_domain_with_gradients(hw, num_iters,
                                                          masked, device):
    """The fused function (hand-written backward, saves only the kernels)
    gives the log-domain autograd path's outputs and gradients."""
    psi_q, psi_k, v, refs, pos = (t.to(device) for t in inputs(*hw))
    mask = None
    if masked:
        mask = torch.ones(2, hw[0] * hw[1], dtype=torch.bool, device=device)
        mask[0, -2:] = False
    weight = torch.randn(2, 2, hw[0] * hw[1], 4, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(1)).to(
                             device)
    results = []
    for sinkhorn in ('log', 'scaling'):
        args = [t.clone().requires_grad_() for t in (psi_q, psi_k, v, refs,
                                                     pos)]
        out = set_attention(*args[:4], 0.7, num_iters, args[4], mask=mask,
                            sinkhorn=sinkhorn)
        (out * weight).sum().backward()
        results.append((out, [t.grad for t in args]))
    (ref, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref)
    for name, got, want in zip(('psi_q', 'psi_k', 'v', 'refs', 'pos'),
                               grads, ref_grads):
        torch.testing.assert_close(got, want, msg=name)


def test_fused_gradcheck_with_mask():
    psi_q, psi_k, v, refs, pos = inputs(height=3, width=3)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    args = [t.requires_grad_() for t in (psi_q, psi_k, v, refs, pos)]
    assert torch.autograd.gradcheck(
        lambda a, b, c, r, p: set_attention(a, b, c, r, 0.7, 2, p, mask=mask),
        args)


def test_fused_transport_under_bf16_autocast_runs_in_fp32():
    psi_q, psi_k, v, refs, pos = (t.float() for t in inputs())
    ref = set_attention(psi_q, psi_k, v, refs, 0.5, 3, pos)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = set_attention(psi_q, psi_k, v.bfloat16(), refs, 0.5, 3, pos)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


def _nystrom_case(masked, hw=(5, 3)):
    from mmeffattn.ops import nystrom_basis
    g = torch.Generator().manual_seed(0)
    dt = torch.float64
    bsz, heads, d, a, m = 3, 2, 4, 6, 4
    height, width = hw
    n = height * width
    qkv = torch.randn(bsz, n, 3, heads, d, generator=g, dtype=dt)
    anchors = torch.randn(heads, a, d, generator=g, dtype=dt)
    refs = torch.randn(heads, m, a, generator=g, dtype=dt)
    pos = positional_log_penalty(grid_positions(height, width, dtype=dt),
                                 grid_positions(2, 2, dtype=dt),
                                 torch.tensor([0.3, 0.6], dtype=dt))
    mask = None
    if masked:
        mask = torch.ones(bsz, n, dtype=torch.bool)
        mask[0, -3:] = False
        mask[1, n // 2:n // 2 + 7] = False

    def reference(qkv, anchors, refs, pos):
        basis = nystrom_basis(anchors, 0.5)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        return set_attention(
            nystrom_features(q, anchors, 0.5, basis=basis),
            nystrom_features(k, anchors, 0.5, basis=basis), v, refs, 0.7,
            3, pos, mask=mask, sinkhorn='log').transpose(1, 2)

    def fused(qkv, anchors, refs, pos, chunk_bytes=4 << 20, kernel=False):
        from mmeffattn.ops import set_attention_nystrom
        z, k_inv_sqrt = nystrom_basis(anchors, 0.5)
        weight = k_inv_sqrt @ refs.transpose(-1, -2) / 0.7
        return set_attention_nystrom(qkv, z, weight, 0.5, 3, pos, mask,
                                     chunk_bytes=chunk_bytes, kernel=kernel)

    return (qkv, anchors, refs, pos), reference, fused


@pytest.mark.parametrize('masked,hw', [(False, (5, 3)), (True, (5, 3)),
                                       (True, (23, 25))])
@pytest.mark.parametrize('path', [dict(chunk_bytes=4 << 20),
                                  dict(chunk_bytes=1),
                                  dict(kernel=True)])
def test_fused_nystrom_attention_equals_reference(masked, hw, path):
    """Features, log kernels and transport in one function (from the qkv
    layout; PyTorch batch chunk by chunk, or the CPU kernel group by
    group, 575 tokens being three of its 256-row tiles, the last partial)
    equal the log-domain autograd path."""
    if path.get('kernel') and not extension_available():
        pytest.skip('CPU extension not built')
    inputs_, reference, fused = _nystrom_case(masked, hw)
    weight = torch.randn(3, hw[0] * hw[1], 2, 4, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(1))
    results = []
    for fn in (reference, lambda *a: fused(*a, **path)):
        args = [t.clone().requires_grad_() for t in inputs_]
        out = fn(*args)
        (out * weight).sum().backward()
        results.append((out, [t.grad for t in args]))
    (ref, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref)
    for name, got, want in zip(('qkv', 'anchors', 'refs', 'pos'), grads,
                               ref_grads):
        torch.testing.assert_close(got, want, msg=name)


@pytest.mark.parametrize('kernel', [False, True])
def test_fused_nystrom_gradcheck(kernel):
    if kernel and not extension_available():
        pytest.skip('CPU extension not built')
    inputs_, _, fused = _nystrom_case(masked=True)
    args = [t.clone().requires_grad_() for t in inputs_]
    assert torch.autograd.gradcheck(
        lambda *a: fused(*a, chunk_bytes=1, kernel=kernel), args)


@pytest.mark.parametrize('kernel', [False, True])
def test_fused_nystrom_factored_positional_term(kernel):
    """``pos_log`` (1, N, m) with a per-head ``pos_scale`` (the module's
    form: the kernel never forms the (h, N, m) product) equals passing the
    product, outputs and gradients (through the product for the scale)."""
    from mmeffattn.ops import nystrom_basis, set_attention_nystrom
    if kernel and not extension_available():
        pytest.skip('CPU extension not built')
    g = torch.Generator().manual_seed(2)
    dt = torch.float64
    qkv = torch.randn(2, 15, 3, 2, 4, generator=g, dtype=dt)
    z, k_inv_sqrt = nystrom_basis(torch.randn(2, 6, 4, generator=g,
                                              dtype=dt), 0.5)
    weight = k_inv_sqrt @ torch.randn(2, 6, 4, generator=g, dtype=dt)
    dist2 = torch.rand(1, 15, 4, generator=g, dtype=dt)
    scale = torch.tensor([-2.0, -0.5], dtype=dt)
    outs = []
    for factored in (False, True):
        x, s = qkv.clone().requires_grad_(), scale.clone().requires_grad_()
        pos, pos_scale = (dist2, s) if factored else (s[:, None, None] * dist2,
                                                      None)
        out = set_attention_nystrom(x, z, weight, 0.5, 3, pos,
                                    pos_scale=pos_scale, kernel=kernel)
        out.square().sum().backward()
        outs.append((out, x.grad, s.grad))
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want)


def test_nystrom_kernel_rejects_bad_shapes():
    """The CPU kernel names the tensor whose shape is wrong."""
    if not extension_available():
        pytest.skip('CPU extension not built')
    from mmeffattn.ops import set_attention_nystrom
    qkv = torch.randn(1, 9, 3, 2, 4)
    weight = torch.randn(2, 5, 4)
    with pytest.raises(RuntimeError, match=r'z must be \(h, a, d\)'):
        set_attention_nystrom(qkv, torch.randn(3, 5, 4), weight, 0.5, 1,
                              kernel=True)
    with pytest.raises(RuntimeError, match=r'pos_log must be \(h or 1'):
        set_attention_nystrom(qkv, torch.randn(2, 5, 4), weight, 0.5, 1,
                              torch.randn(2, 8, 4), kernel=True)


def test_set_attention_module_fused_equals_log_domain():
    """SeTAttention's fused forward (Nystrom + scaling) and its log-domain
    reference path agree, outputs and every parameter's gradient."""
    from mmeffattn.models import SeTAttention
    torch.manual_seed(0)
    fused = SeTAttention(16, 2, num_refs=9).double()
    ref = SeTAttention(16, 2, num_refs=9, sinkhorn='log').double()
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(2, 15, 16, dtype=torch.float64)
    mask = torch.ones(2, 15, dtype=torch.bool)
    mask[1, -4:] = False
    assert_same_set_attention(fused, ref, x, (5, 3), (None, mask))
