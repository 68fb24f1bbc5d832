import pytest
import torch

from mmeffattn.ops.cpu_extension import cpu_extension_available
from mmeffattn.ops.patch_attention import (patch_attention,
                                           patch_attention_cpu,
                                           patch_attention_reference)

needs_kernel = pytest.mark.skipif(not cpu_extension_available(),
                                  reason='the CPU kernel cannot be built here')


def make_inputs(bsz, n_h, n_w, heads, d, block, dtype=torch.float64,
                seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (bsz, n_h * n_w, heads * d, block * block)
    q, k, v = (torch.randn(shape, generator=g, dtype=dtype) for _ in range(3))
    rr, rc = (torch.randn(2 * block - 1, d // 2, generator=g, dtype=dtype)
              for _ in range(2))
    return q, k, v, rr, rc


def brute_force(q, k, v, rr, rc, heads, n_h, n_w, block):
    """Position by position, straight from the formula."""
    bsz, n, channels, positions = q.shape
    d = channels // heads
    out = torch.zeros(bsz, channels, n_h * block, n_w * block,
                      dtype=q.dtype)
    for patch in range(n):
        py0, px0 = patch // n_w * block, patch % n_w * block
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            for p in range(positions):
                logits = []
                for s in range(positions):
                    rel = torch.cat([rr[s // block - p // block + block - 1],
                                     rc[s % block - p % block + block - 1]])
                    logits.append((q[:, patch, sl, p] *
                                   (k[:, patch, sl, s] + rel)).sum(-1))
                attn = torch.stack(logits, -1).softmax(-1)  # (B, P)
                val = (attn[:, None] * v[:, patch, sl]).sum(-1)  # (B, d)
                out[:, sl, py0 + p // block, px0 + p % block] = val
    return out


CASES = [(2, 2, 3, 2, 4, 2), (1, 1, 2, 3, 6, 3), (1, 2, 1, 1, 2, 4)]


@pytest.mark.parametrize('impl', ['reference', 'cpp'])
@pytest.mark.parametrize('bsz,n_h,n_w,heads,d,block', CASES)
def test_matches_brute_force(bsz, n_h, n_w, heads, d, block, impl):
    if impl == 'cpp' and not cpu_extension_available():
        pytest.skip('no CPU kernel')
    inputs = make_inputs(bsz, n_h, n_w, heads, d, block)
    fn = patch_attention_cpu if impl == 'cpp' else patch_attention_reference
    torch.testing.assert_close(
        fn(*inputs, heads, n_h, n_w, block),
        brute_force(*inputs, heads, n_h, n_w, block))


@needs_kernel
@pytest.mark.parametrize('bsz,n_h,n_w,heads,d,block', CASES)
def test_kernel_gradcheck(bsz, n_h, n_w, heads, d, block):
    inputs = [t.requires_grad_() for t in
              make_inputs(bsz, n_h, n_w, heads, d, block, seed=1)]
    torch.autograd.gradcheck(
        lambda *x: patch_attention_cpu(*x, heads, n_h, n_w, block), inputs)


@needs_kernel
def test_kernel_and_reference_agree_in_fp32_with_gradients():
    inputs = [t.float().requires_grad_() for t in
              make_inputs(2, 3, 4, 4, 16, 4, seed=2)]
    grad = torch.randn(2, 64, 12, 16)
    g = [torch.autograd.grad(fn(*inputs, 4, 3, 4, 4), inputs, grad)
         for fn in (patch_attention_cpu, patch_attention_reference)]
    for a, b in zip(*g):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_bad_shape_is_named():
    q, k, v, rr, rc = make_inputs(1, 2, 2, 2, 4, 2)
    with pytest.raises(ValueError, match=r'must be \(B, 2\*3'):
        patch_attention(q, k, v, rr, rc, 2, 2, 3, 2)
