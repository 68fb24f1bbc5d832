"""The stem's patch attention (its unfused path) against a position by
position brute force; test_attention_stem checks the fused kernel against
it."""
import pytest
import torch

from mmeffattn.ops import patch_attention


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


@pytest.mark.parametrize('bsz,n_h,n_w,heads,d,block', CASES)
def test_matches_brute_force(bsz, n_h, n_w, heads, d, block):
    inputs = make_inputs(bsz, n_h, n_w, heads, d, block)
    torch.testing.assert_close(
        patch_attention(*inputs, heads, n_h, n_w, block),
        brute_force(*inputs, heads, n_h, n_w, block))


def test_bad_shape_is_named():
    q, k, v, rr, rc = make_inputs(1, 2, 2, 2, 4, 2)
    with pytest.raises(ValueError, match=r'must be \(B, 2\*3'):
        patch_attention(q, k, v, rr, rc, 2, 2, 3, 2)
