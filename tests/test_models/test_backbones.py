import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmeffattn.models import (AttentionStem, LocalSelfAttention2d, SASAResNet,
                              SeTformer)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize('depth,params', [(26, 10.3e6), (38, 14.1e6),
                                          (50, 18.0e6)])
def test_sasa_resnet_params_match_paper(depth, params):
    model = SASAResNet(depth)
    total = n_params(model) + 2048 * 1000 + 1000  # + the ImageNet fc
    assert abs(total - params) / params < 0.03


def test_sasa_resnet_outputs_odd_sizes_and_stems():
    for stem in ('attention', 'conv'):
        model = SASAResNet(26, stem=stem, base_channels=16, num_heads=4,
                           kernel_size=5, out_indices=(0, 1, 2, 3))
        outs = model(torch.randn(2, 3, 45, 37))
        assert [o.shape[1] for o in outs] == [64, 128, 256, 512]
        assert outs[0].shape[2:] == (12, 10) and outs[3].shape[2:] == (2, 2)
        outs[-1].sum().backward()


def test_sasa_resnet_attention_stages_and_errors():
    model = SASAResNet(26, attention_stages=(False, False, True, True))
    assert isinstance(model.layer1[0].conv2, torch.nn.Conv2d)
    assert isinstance(model.layer3[0].conv2, LocalSelfAttention2d)
    with pytest.raises(KeyError, match='invalid depth 34'):
        SASAResNet(34)
    with pytest.raises(ValueError, match='stem'):
        SASAResNet(26, stem='patchify')
    with pytest.raises(ValueError, match='4 entries'):
        SASAResNet(26, attention_stages=(True, ))


def test_sasa_resnet_frozen_stages_and_norm_eval():
    model = SASAResNet(26, base_channels=16, num_heads=4, frozen_stages=1,
                       norm_eval=True)
    model.train()
    assert all(not p.requires_grad for p in model.stem.parameters())
    assert all(not p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert all(not m.training for m in model.modules()
               if isinstance(m, _BatchNorm))


def test_attention_stem_shapes():
    stem = AttentionStem(3, 32, num_heads=4)
    out = stem(torch.randn(2, 3, 30, 21))
    assert out.shape == (2, 32, 8, 6)
    with pytest.raises(ValueError, match='divisible'):
        AttentionStem(3, 30, num_heads=4)


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_setformer_archs_build(arch):
    model = SeTformer(arch)
    budget = dict(tiny=(10e6, 20e6), small=(25e6, 35e6),
                  base=(49e6 * 0.9, 49e6 * 1.1))[arch]
    assert budget[0] < n_params(model) < budget[1]


def test_setformer_outputs_and_odd_sizes():
    model = SeTformer(dict(embed_dims=16, depths=[1, 1, 1, 1],
                           num_heads=[1, 2, 2, 4], mlp_ratio=2),
                      num_refs=4, out_indices=(0, 1, 2, 3))
    outs = model(torch.randn(2, 3, 57, 43))
    assert [tuple(o.shape[1:]) for o in outs] == [(16, 15, 11), (32, 8, 6),
                                                  (64, 4, 3), (128, 2, 2)]
    outs[-1].sum().backward()


def test_setformer_frozen_and_errors():
    model = SeTformer('tiny', frozen_stages=1, norm_eval=True)
    model.train()
    assert not any(p.requires_grad for p in model.stages[0].parameters())
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    # norm_eval acts on batch norms only (mmpretrain): LN keeps its mode
    assert model.stages[2][0].norm1.training
    with pytest.raises(KeyError, match='not in default archs'):
        SeTformer('huge')
    with pytest.raises(ValueError, match='Custom arch needs'):
        SeTformer(dict(embed_dims=16))


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
