"""AttentionStem (SASA's spatially-aware stem): shapes, the paper's formula
pixel by pixel (fp64), gradcheck."""
import pytest
import torch

from mmeffattn.models import AttentionStem


def test_attention_stem_shapes():
    stem = AttentionStem(3, 32, num_heads=4)
    out = stem(torch.randn(2, 3, 30, 21))
    assert out.shape == (2, 32, 8, 6)
    with pytest.raises(ValueError, match='divisible'):
        AttentionStem(3, 30, num_heads=4)


def stem_brute_force(stem, x):
    """The stem's attention output before BN (B, C, Hp, Wp), pixel by pixel
    from the paper's formula (fp64): inside each block x block patch,
    softmax_ab(q_ij . k_ab + q_ij . r_{a-i, b-j}) v_ab, with spatially-aware
    values v_ab = (sum_m p(a, b, m) W_V^m) x_ab."""
    b, heads, c = stem.block, stem.num_heads, stem.out_channels
    d = c // heads
    wq, wk = stem.query.weight[:, :, 0, 0], stem.key.weight[:, :, 0, 0]
    wv = stem.value.weight[:, :, 0, 0].view(stem.num_mixtures, c, -1)
    bsz, _, height, width = x.shape
    out = torch.zeros(bsz, c, height, width, dtype=x.dtype)
    for i in range(height):
        for j in range(width):
            pi, pj = i - i % b, j - j % b   # the patch's corner
            q = wq @ x[:, :, i, j].T        # (C, B)
            logits, values = [], []
            for a in range(pi, pi + b):
                for bb in range(pj, pj + b):
                    mix = ((stem.emb_row[a - pi] + stem.emb_col[bb - pj])
                           @ stem.emb_mix.T).softmax(-1)
                    w_v = (mix[:, None, None] * wv).sum(0)
                    k = wk @ x[:, :, a, bb].T
                    values.append(w_v @ x[:, :, a, bb].T)   # (C, B)
                    rel = torch.cat([stem.rel_row[a - i + b - 1],
                                     stem.rel_col[bb - j + b - 1]])
                    logits.append(torch.stack([
                        (q[h * d:(h + 1) * d] * (k[h * d:(h + 1) * d] +
                                                 rel[:, None])).sum(0)
                        for h in range(heads)]))    # (heads, B)
            attn = torch.stack(logits, -1).softmax(-1)  # (heads, B, b^2)
            vals = torch.stack(values, -1).view(heads, d, bsz, b * b)
            out[:, :, i, j] = (attn[:, None] * vals).sum(-1).reshape(
                c, bsz).T
    return out


def test_attention_stem_matches_brute_force():
    torch.manual_seed(0)
    stem = AttentionStem(3, 16, num_heads=2, num_mixtures=3).double()
    for p in stem.parameters():   # away from the near-uniform init
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)

    class Capture(torch.nn.Module):
        def forward(self, t):
            self.attn = t
            return t

    stem.norm, stem.act = Capture(), torch.nn.Identity()
    stem(x)
    with torch.no_grad():
        torch.testing.assert_close(stem.norm.attn, stem_brute_force(stem, x))


def test_attention_stem_gradcheck():
    torch.manual_seed(1)
    stem = AttentionStem(2, 8, num_heads=2, num_mixtures=2,
                         block=2).double()
    stem.norm.eval()   # BN in eval: a function of its input alone
    x = torch.randn(1, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(stem, (x, ))
