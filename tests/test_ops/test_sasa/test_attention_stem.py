"""The fused attention stem (patch attention + BatchNorm + ReLU + max pool)
against the unfused modules, which test_backbones checks against a
pixel-by-pixel brute force of the paper's formula."""
import copy

import pytest
import torch

from mmeffattn.models import AttentionStem
from mmeffattn.ops._ext import extension_available
from mmeffattn.ops.sasa.attention_stem import attention_stem_bn_relu_pool
from mmeffattn.ops.sasa.attention_stem_cpu import attention_stem_forward

pytestmark = pytest.mark.skipif(not extension_available(),
                                reason='the CPU kernel cannot be built here')


def make_stem(channels, heads, block, dtype, train, seed=0, **norm):
    torch.manual_seed(seed)
    stem = AttentionStem(3, channels, heads, 3, block).to(dtype)
    for p in stem.parameters():   # away from the near-uniform init
        torch.nn.init.normal_(p, std=0.5)
    with torch.no_grad():
        stem.norm.weight.uniform_(-1, 2)   # negative scales pool the min
        stem.norm.running_mean.normal_()
        stem.norm.running_var.uniform_(0.5, 2)
    for key, value in norm.items():
        setattr(stem.norm, key, value)
    return stem.train(train)


def run(stem, x, fused, monkeypatch):
    with monkeypatch.context() as m:
        if not fused:
            m.setattr(AttentionStem, '_fused', lambda self, x: False)
        else:
            assert stem._fused(x)
        out = stem(x)
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(
            1), dtype=out.dtype)
        params = [p for p in stem.parameters() if p.requires_grad]
        grads = torch.autograd.grad(out, [x] + params, grad)
    return out, grads


CASES = [  # channels, heads, block, (H, W), train, norm attributes
    (16, 2, 4, (13, 10), True, {}),
    (16, 4, 4, (8, 12), True, dict(momentum=None)),
    (8, 2, 8, (17, 9), True, {}),
    (16, 2, 4, (6, 5), False, {}),
    (16, 2, 4, (9, 9), False, dict(track_running_stats=False,
                                   running_mean=None, running_var=None)),
]


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('channels,heads,block,size,train,norm', CASES)
def test_fused_equals_unfused(channels, heads, block, size, train, norm,
                              dtype, monkeypatch):
    stem = make_stem(channels, heads, block, dtype, train, **norm)
    ref = copy.deepcopy(stem)
    x = torch.randn(2, 3, *size, dtype=dtype, requires_grad=True)
    out, grads = run(stem, x, True, monkeypatch)
    out_ref, grads_ref = run(ref, x, False, monkeypatch)
    tol = dict(atol=1e-10, rtol=1e-9) if dtype == torch.float64 else dict(
        atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(out, out_ref, **tol)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **tol)
    for name, buf in stem.norm.named_buffers():   # running stats, counter
        torch.testing.assert_close(buf, dict(ref.norm.named_buffers())[name],
                                   **tol)


def test_fused_gradcheck_through_batch_statistics():
    stem = make_stem(8, 2, 4, torch.float64, train=True, seed=3)
    x = torch.randn(2, 3, 8, 7, dtype=torch.float64, requires_grad=True)
    assert stem._fused(x)
    torch.autograd.gradcheck(stem, (x, ))


def test_frozen_stem_runs_without_autograd():
    stem = make_stem(16, 2, 4, torch.float32, train=False)
    stem.requires_grad_(False)
    x = torch.randn(1, 3, 8, 8)
    out = stem(x)
    assert out.shape == (1, 16, 2, 2) and out.grad_fn is None


def test_bad_block_and_shapes_are_named():
    x = torch.randn(1, 3, 6, 6)
    w = torch.randn(16, 3)
    wv = torch.randn(9, 16, 3)
    with pytest.raises(ValueError, match='block must be one of'):
        attention_stem_bn_relu_pool(x, w, w, wv, torch.randn(5, 4),
                                    torch.randn(5, 4), None, None, None,
                                    None, True, 0.1, 1e-5, 2, 3)
    with pytest.raises(RuntimeError, match=r'\(C, Cin, block\^2\)'):
        attention_stem_forward(torch.randn(1, 3, 8, 8), w, w,
                               torch.randn(16, 3, 9), torch.randn(7, 4),
                               torch.randn(7, 4), 2, 4)
