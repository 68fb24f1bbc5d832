import pytest
import torch

from mmeffattn.ops import (local_attention2d, local_attention2d_forward,
                           local_attention2d_qkv, local_attention2d_unfold)


def brute_force(q, k, v, rel_row, rel_col, kernel_size, border, scale=None):
    """Pixel-by-pixel loops, straight from the SASA formula."""
    bsz, heads, height, width, d = q.shape
    r = kernel_size // 2
    out = torch.zeros_like(q)
    s = 1.0 if scale is None else scale
    for i in range(height):
        for j in range(width):
            logits, values = [], []
            for a in range(-r, r + 1):
                for b in range(-r, r + 1):
                    y, x = i + a, j + b
                    inside = 0 <= y < height and 0 <= x < width
                    if not inside and border == 'mask':
                        continue
                    rel = torch.cat([rel_row[a + r], rel_col[b + r]])
                    key = k[:, :, y, x] if inside else torch.zeros_like(
                        k[:, :, 0, 0])
                    val = v[:, :, y, x] if inside else torch.zeros_like(
                        v[:, :, 0, 0])
                    logits.append((s * q[:, :, i, j] * (key + rel)).sum(-1))
                    values.append(val)
            attn = torch.stack(logits, -1).softmax(-1)  # (B,h,n)
            out[:, :, i, j] = (attn[..., None] *
                               torch.stack(values, -2)).sum(-2)
    return out


def make_inputs(shape, kernel_size, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(shape, generator=g, dtype=dtype) for _ in range(3))
    d = shape[-1]
    rel_row = torch.randn(kernel_size, d // 2, generator=g, dtype=dtype)
    rel_col = torch.randn(kernel_size, d // 2, generator=g, dtype=dtype)
    return q, k, v, rel_row, rel_col


CASES = [
    # (B, heads, H, W, d), k, block
    ((2, 2, 5, 7, 4), 3, 4),
    ((1, 3, 9, 6, 2), 5, 8),
    ((1, 1, 3, 2, 4), 7, 8),   # H, W smaller than k
    ((2, 2, 11, 13, 6), 7, 4),  # odd sizes, several blocks
    ((1, 2, 8, 8, 4), 1, 3),
]


IMPLS = ['cpp', 'halo']


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('border', ['zero', 'mask'])
@pytest.mark.parametrize('shape,kernel_size,block', CASES)
def test_matches_brute_force(shape, kernel_size, block, border, impl,
                             device):
    if impl == 'cpp' and device != 'cpu':
        pytest.skip('the C++ kernel is the CPU path')
    inputs = make_inputs(shape, kernel_size)
    ref = brute_force(*inputs, kernel_size, border)
    on_device = [t.to(device) for t in inputs]
    out = local_attention2d(*on_device, kernel_size, border,
                            block_size=block, impl=impl)
    torch.testing.assert_close(out.cpu(), ref, atol=1e-10, rtol=1e-10)
    unf = local_attention2d_unfold(*on_device, kernel_size, border)
    torch.testing.assert_close(unf.cpu(), ref, atol=1e-10, rtol=1e-10)


def test_cpp_accepts_a_1x1_map():
    """Size-1 dimensions have arbitrary strides: a contiguous 1x1 map (and
    1-row, 1-column maps) go through the C++ kernel."""
    for shape in [(1, 2, 1, 1, 4), (2, 1, 1, 5, 2), (1, 3, 4, 1, 2)]:
        inputs = make_inputs(shape, 3)
        ref = brute_force(*inputs, 3, 'zero')
        out = local_attention2d(*inputs, 3, impl='cpp')
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    qkv = torch.randn(1, 12, 1, 1, dtype=torch.float64)
    rel = torch.randn(3, 1, dtype=torch.float64)
    out = local_attention2d_qkv(qkv, 2, rel, rel, 3, impl='cpp')
    ref = local_attention2d_qkv(qkv, 2, rel, rel, 3, impl='halo')
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('border', ['zero', 'mask'])
def test_fp32_and_scale(border, impl):
    inputs = make_inputs((2, 4, 10, 9, 8), 5, dtype=torch.float64)
    ref = brute_force(*inputs, 5, border, scale=8**-0.5)
    out = local_attention2d(*(t.float() for t in inputs), 5, border,
                            scale=8**-0.5, impl=impl)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('border', ['zero', 'mask'])
@pytest.mark.parametrize('shape,kernel_size,block',
                         [((1, 2, 5, 4, 4), 3, 2), ((1, 1, 3, 5, 2), 5, 8),
                          ((2, 2, 6, 7, 4), 5, 4)])
def test_gradcheck(shape, kernel_size, block, border, impl):
    inputs = [t.requires_grad_() for t in make_inputs(shape, kernel_size)]
    assert torch.autograd.gradcheck(
        lambda *x: local_attention2d(*x, kernel_size, border,
                                     block_size=block, impl=impl), inputs)


@pytest.mark.parametrize('border', ['zero', 'mask'])
def test_cpp_and_halo_agree_on_gradients(border):
    inputs = [t.float().requires_grad_()
              for t in make_inputs((2, 3, 9, 12, 8), 7)]
    grad = torch.randn(2, 3, 9, 12, 8)
    g = [torch.autograd.grad(local_attention2d(*inputs, 7, border,
                                               scale=0.3, impl=impl),
                             inputs, grad) for impl in IMPLS]
    for a, b in zip(*g):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_recompute_backward_equals_plain_autograd(device):
    inputs = [t.to(device).requires_grad_()
              for t in make_inputs((2, 2, 7, 9, 4), 5)]
    grad = torch.randn(2, 2, 7, 9, 4, dtype=torch.float64, device=device)
    g1 = torch.autograd.grad(local_attention2d(*inputs, 5, 'mask'), inputs,
                             grad)
    g2 = torch.autograd.grad(local_attention2d_forward(*inputs, 5, 'mask'),
                             inputs, grad)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('kwargs,match', [
    (dict(kernel_size=4), 'odd'),
    (dict(border='clamp'), 'border'),
    (dict(impl='cuda'), 'impl'),
])
def test_bad_arguments(kwargs, match):
    q, k, v, rr, rc = make_inputs((1, 1, 4, 4, 4), 3)
    args = dict(kernel_size=3, border='zero')
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        local_attention2d(q, k, v, rr, rc, **args)


def test_bad_shapes():
    q, k, v, rr, rc = make_inputs((1, 1, 4, 4, 4), 3)
    with pytest.raises(ValueError, match='same shape'):
        local_attention2d(q, k[..., :2], v, rr, rc, 3)
    with pytest.raises(ValueError, match='rel_row'):
        local_attention2d(q, k, v, rr[:2], rc, 3)


def _split_qkv(qkv, heads):
    """(B, 3C, H, W) -> q, k, v as (B, heads, H, W, d) views."""
    bsz, c3, height, width = qkv.shape
    return qkv.view(bsz, 3, heads, c3 // 3 // heads, height,
                    width).permute(1, 0, 2, 4, 5, 3)


QKV_CASES = [
    # (B, heads, d, H, W), k: rows wider than one 8-query block, maps
    # smaller than the window, key rows finished after the last query row
    ((2, 2, 4, 6, 19), 5),
    ((1, 3, 6, 11, 9), 7),
    ((2, 1, 2, 3, 2), 5),
    ((1, 2, 4, 9, 17), 3),
    ((1, 2, 4, 10, 21), 9),  # offset blocks of 8 and a remainder of 1
]


@pytest.mark.parametrize('border', ['zero', 'mask'])
@pytest.mark.parametrize('shape,kernel_size', QKV_CASES)
def test_qkv_matches_brute_force(shape, kernel_size, border):
    bsz, heads, d, height, width = shape
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(bsz, 3 * heads * d, height, width, generator=g,
                      dtype=torch.float64)
    rr, rc = (torch.randn(kernel_size, d // 2, generator=g,
                          dtype=torch.float64) for _ in range(2))
    want = brute_force(*_split_qkv(qkv, heads), rr, rc, kernel_size, border,
                       scale=0.7)
    want = want.permute(0, 1, 4, 2, 3).reshape(bsz, heads * d, height, width)
    for impl in IMPLS:
        got = local_attention2d_qkv(qkv, heads, rr, rc, kernel_size, border,
                                    scale=0.7, impl=impl)
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize('border', ['zero', 'mask'])
@pytest.mark.parametrize('shape,kernel_size', QKV_CASES[:3])
def test_qkv_gradcheck(shape, kernel_size, border):
    bsz, heads, d, height, width = shape
    g = torch.Generator().manual_seed(2)
    qkv = torch.randn(bsz, 3 * heads * d, height, width, generator=g,
                      dtype=torch.float64, requires_grad=True)
    rr, rc = (torch.randn(kernel_size, d // 2, generator=g,
                          dtype=torch.float64, requires_grad=True)
              for _ in range(2))
    torch.autograd.gradcheck(
        lambda *x: local_attention2d_qkv(x[0], heads, x[1], x[2],
                                         kernel_size, border, scale=0.6,
                                         impl='cpp'), (qkv, rr, rc))


def test_qkv_gradient_is_one_tensor_and_matches_halo():
    """The kernel's backward writes the stacked gradient itself (no stack or
    cat node), equal to the halo path's."""
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(2, 3 * 32, 14, 21, generator=g, requires_grad=True)
    rr, rc = (torch.randn(7, 8, generator=g, requires_grad=True)
              for _ in range(2))
    grad = torch.randn(2, 32, 14, 21, generator=g)
    out = local_attention2d_qkv(qkv, 2, rr, rc, 7, impl='cpp')
    assert out.is_contiguous()
    nodes, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in nodes:
            nodes.add(type(node).__name__)
            todo.extend(n for n, _ in node.next_functions)
    assert not [n for n in nodes if 'Cat' in n or 'Stack' in n or
                'Unbind' in n or 'Permute' in n], nodes
    g_cpp = torch.autograd.grad(out, (qkv, rr, rc), grad)
    g_halo = torch.autograd.grad(
        local_attention2d_qkv(qkv, 2, rr, rc, 7, impl='halo'), (qkv, rr, rc),
        grad)
    for a, b in zip(g_cpp, g_halo):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_qkv_bad_shape():
    with pytest.raises(ValueError, match='qkv must be'):
        local_attention2d_qkv(torch.zeros(1, 10, 4, 4), 2,
                              torch.zeros(3, 1), torch.zeros(3, 1), 3)
