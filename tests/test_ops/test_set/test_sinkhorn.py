import pytest
import torch

from mmeffattn.ops import sinkhorn_log, sinkhorn_scaling

SOLVERS = [sinkhorn_log, sinkhorn_scaling]


def brute_force_sinkhorn(log_kernel, a, b, iters, last):
    """Scaling-domain Sinkhorn in fp64 with explicit loops over batch."""
    out = torch.empty_like(log_kernel)
    for idx in range(log_kernel.shape[0]):
        kern = log_kernel[idx].exp()
        v = torch.ones(kern.shape[1], dtype=kern.dtype)
        u = a[idx] / (kern @ v)
        if last == 'col':
            v = b[idx] / (kern.t() @ u)
        for _ in range(iters - (last == 'col')):
            if last == 'col':
                u = a[idx] / (kern @ v)
                v = b[idx] / (kern.t() @ u)
            else:
                v = b[idx] / (kern.t() @ u)
                u = a[idx] / (kern @ v)
        out[idx] = u[:, None] * kern * v[None, :]
    return out


@pytest.mark.parametrize('solve', SOLVERS)
@pytest.mark.parametrize('last', ['row', 'col'])
def test_matches_scaling_domain(last, solve, device):
    torch.manual_seed(0)
    logk = torch.randn(3, 17, 5, dtype=torch.float64)
    a = torch.rand(3, 17, dtype=torch.float64) + 0.1
    a = a / a.sum(-1, keepdim=True)
    b = torch.full((3, 5), 0.2, dtype=torch.float64)
    plan = solve(logk.to(device), 7, a.to(device), b.to(device), last=last)
    ref = brute_force_sinkhorn(logk, a, b, 7, last)
    torch.testing.assert_close(plan.cpu(), ref)


@pytest.mark.parametrize('solve', SOLVERS)
def test_marginals_converge_and_nonnegative(solve):
    torch.manual_seed(0)
    logk = torch.randn(2, 4, 50, 9) * 3
    plan = solve(logk, 100)
    assert (plan >= 0).all()
    torch.testing.assert_close(plan.sum(-1), torch.full((2, 4, 50), 1 / 50),
                               atol=1e-3 / 50, rtol=0)
    torch.testing.assert_close(plan.sum(-2), torch.full((2, 4, 9), 1 / 9),
                               atol=1e-3 / 9, rtol=0)


@pytest.mark.parametrize('solve', SOLVERS)
@pytest.mark.parametrize('last', ['row', 'col'])
def test_last_marginal_exact(last, solve):
    logk = torch.randn(2, 31, 7) * 5
    plan = solve(logk, 2, last=last)
    if last == 'row':
        torch.testing.assert_close(plan.sum(-1), torch.full((2, 31), 1 / 31))
    else:
        torch.testing.assert_close(plan.sum(-2), torch.full((2, 7), 1 / 7))


@pytest.mark.parametrize('solve', SOLVERS)
def test_mask(solve):
    torch.manual_seed(0)
    logk = torch.randn(2, 10, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 6:] = False
    plan = solve(logk, 50, mask=mask)
    assert (plan[0, 6:] == 0).all()
    torch.testing.assert_close(plan[0].sum(-1)[:6],
                               torch.full((6, ), 1 / 6, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    # masked rows equal an unmasked run on the valid rows only
    ref = solve(logk[0, :6], 50)
    torch.testing.assert_close(plan[0, :6], ref)
    plan.sum().backward()
    assert torch.isfinite(logk.grad).all()
    assert (logk.grad[0, 6:] == 0).all()


@pytest.mark.parametrize('solve', SOLVERS)
def test_gradcheck(solve):
    logk = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6], dtype=torch.bool)
    assert torch.autograd.gradcheck(
        lambda x: solve(x, 4, mask=mask, last='row'), (logk, ))


@pytest.mark.parametrize('solve', SOLVERS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_extreme_inputs(dtype, solve):
    logk = (torch.randn(2, 64, 9) * 1e3).to(dtype)
    plan = solve(logk, 3)
    assert plan.dtype == dtype and torch.isfinite(plan).all()


@pytest.mark.parametrize('solve', SOLVERS)
def test_bad_arguments(solve):
    with pytest.raises(ValueError, match='num_iters'):
        solve(torch.zeros(3, 2), 0)
    with pytest.raises(ValueError, match='last'):
        solve(torch.zeros(3, 2), 1, last='both')


@pytest.mark.parametrize('last', ['row', 'col'])
@pytest.mark.parametrize('num_iters', [1, 3])
def test_cpu_kernel_iterates_and_reverse_pass_equal_pytorch(
        last, num_iters, monkeypatch):
    """SeT's Sinkhorn iterations and their reverse pass: the C++ loops
    (_ext/csrc/sinkhorn_cpu.cpp) give the batched-matmul path's every iterate
    and rank-1 gradient terms, with a masked (all-zero) row."""
    import mmeffattn.ops.set.sinkhorn_iterates as st
    from mmeffattn.ops._ext import extension_available
    if not extension_available():
        pytest.skip('the CPU kernel cannot be built here')
    g = torch.Generator().manual_seed(0)
    kern = torch.rand(2, 3, 11, 5, generator=g, dtype=torch.float64)
    kern[1, 2, 4] = 0                            # a masked token
    a = torch.full((2, 3, 11, 1), 1 / 11, dtype=torch.float64)
    a[1, 2, 4] = 0
    b = torch.full((2, 3, 1, 5), 1 / 5, dtype=torch.float64)
    grad_u = torch.randn(2, 3, 11, 1, generator=g, dtype=torch.float64)
    grad_v = torch.randn(2, 3, 1, 5, generator=g, dtype=torch.float64)
    results = []
    for use_kernel in (True, False):
        if not use_kernel:
            monkeypatch.setattr(st, 'sinkhorn_kernel_runs', lambda kern: False)
        u, v, trace = st.scaling_iterates(kern, a, b, num_iters, last)
        terms = st._trace_rank1_terms(kern, trace, grad_u, grad_v)
        results.append((u, v, *trace, *terms))
    assert results[0][2].shape[0] == num_iters + (last == 'row')
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)
