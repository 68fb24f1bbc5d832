"""AlterNet's window attention against a per-window loop (fp64)."""
import pytest
import torch

from mmeffattn.ops import (relative_position_index, window_attention2d,
                           window_attention2d_flops)


def brute_force(q, k, v, ws, table, heads):
    """Per image, head and query pixel: softmax over the real pixels of its
    window, logits q.k / sqrt(d) + table[dr + ws - 1, dc + ws - 1]."""
    b, c, h, w = q.shape
    d, dv = c // heads, v.shape[1] // heads
    out = torch.zeros(b, v.shape[1], h, w, dtype=q.dtype)
    for n in range(b):
        for head in range(heads):
            qs, ks = slice(head * d, (head + 1) * d), slice(head * d,
                                                            (head + 1) * d)
            vs = slice(head * dv, (head + 1) * dv)
            for i in range(h):
                for j in range(w):
                    r0, c0 = i // ws * ws, j // ws * ws
                    keys = [(r, cc) for r in range(r0, min(r0 + ws, h))
                            for cc in range(c0, min(c0 + ws, w))]
                    logits = torch.stack([
                        (q[n, qs, i, j] * k[n, ks, r, cc]).sum() / d**0.5 +
                        (table[r - i + ws - 1, cc - j + ws - 1]
                         if table is not None else 0.)
                        for r, cc in keys])
                    weights = logits.softmax(0)
                    out[n, vs, i, j] = sum(
                        wt * v[n, vs, r, cc]
                        for wt, (r, cc) in zip(weights, keys))
    return out


@pytest.mark.parametrize('h,w,ws,heads', [
    (8, 8, 4, 2),      # divisible
    (7, 9, 4, 2),      # padded bottom and right
    (3, 2, 5, 1),      # window larger than the map
    (5, 11, 3, 3),     # odd sizes
])
def test_equals_per_window_loop(h, w, ws, heads, device):
    g = torch.Generator().manual_seed(h * 100 + w)
    q, k = (torch.randn(2, heads * 4, h, w, generator=g, dtype=torch.float64)
            for _ in range(2))
    v = torch.randn(2, heads * 3, h, w, generator=g, dtype=torch.float64)
    table = torch.randn(2 * ws - 1, 2 * ws - 1, generator=g,
                        dtype=torch.float64)
    for t in (table, None):
        out = window_attention2d(q.to(device), k.to(device), v.to(device),
                                 ws, None if t is None else t.to(device),
                                 heads)
        torch.testing.assert_close(out.cpu(),
                                   brute_force(q, k, v, ws, t, heads),
                                   atol=1e-10, rtol=1e-10)


def test_gradcheck_padded():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 5, 3, generator=g, dtype=torch.float64,
                           requires_grad=True) for _ in range(3))
    table = torch.randn(5, 5, generator=g, dtype=torch.float64,
                        requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *a: window_attention2d(*a, 3, table, 2), (q, k, v))
    assert torch.autograd.gradcheck(
        lambda t: window_attention2d(q, k, v, 3, t, 2), (table, ))


def test_relative_position_index_is_offset_of_key_from_query():
    idx = relative_position_index(3)
    # query (0, 0) -> key (2, 1): offset (+2, +1) -> (4, 3) in a 5x5 table
    assert idx[0, 2 * 3 + 1] == 4 * 5 + 3
    assert idx.diagonal().unique().tolist() == [2 * 5 + 2]


def test_errors_name_the_problem():
    x = torch.randn(1, 8, 4, 4)
    with pytest.raises(ValueError, match='rel_bias must be'):
        window_attention2d(x, x, x, 3, torch.zeros(3, 3), 2)
    with pytest.raises(ValueError, match='divisible by num_heads=3'):
        window_attention2d(x, x, x, 2, None, 3)
    with pytest.raises(ValueError, match='one .B, C, H, W. shape'):
        window_attention2d(x, x[:, :4], x, 2, None, 2)


def test_module_macs_are_counted():
    """The FLOP counter sees the windowed SDPA: 1x1 projections + q k^T and
    attn v over the padded windows."""
    from mmeffattn.analysis.flops import count_complexity
    from mmeffattn.models import WindowSelfAttention2d
    layer = WindowSelfAttention2d(16, 32, num_heads=2, head_dim=8,
                                  window_size=4).eval()
    h, w = 7, 9
    res = count_complexity(layer, (torch.randn(1, 16, h, w), ))
    proj = h * w * (16 * 16 + 16 * 32 + 16 * 32)
    attn = window_attention2d_flops(1, 2, h, w, 8, 4)
    assert attn == 2 * (2 * 3) * 16 * 16 * 16
    assert res['macs'] == proj + attn


def test_benchmark_baseline_equals_the_op():
    """--suite window compares like with like: the einsum baseline (the
    reference code's formulation) computes what the op computes."""
    from helpers import load_tool
    WindowAttentionCase = load_tool(
        'analysis_tools/benchmark/attention_cases.py').WindowAttentionCase
    x = torch.randn(2, 3 * 24, 9, 10, dtype=torch.float64)
    ours = WindowAttentionCase(3, 4, 'ours').double()
    einsum = WindowAttentionCase(3, 4, 'einsum').double()
    einsum.load_state_dict(ours.state_dict())
    torch.testing.assert_close(einsum(x), ours(x))
