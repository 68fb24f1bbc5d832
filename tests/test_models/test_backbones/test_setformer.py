"""SeTformer: the archs' sizes, odd input sizes, freezing, errors, and the
eval-mode cache of the Nystrom normalisation."""
import pytest
import torch

from mmeffattn.models import SeTformer


def n_params(m):
    return sum(p.numel() for p in m.parameters())


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


def test_setformer_eval_caches_nystrom_normalisation(monkeypatch):
    torch.manual_seed(0)
    model = SeTformer(dict(embed_dims=32, depths=[1, 1, 1, 1],
                           num_heads=[1, 2, 2, 4], mlp_ratio=2), num_refs=4,
                      drop_path_rate=0.)
    model.init_weights()
    x = torch.randn(1, 3, 64, 64)
    model.train()
    with torch.no_grad():
        ref = model(x)  # computes the normalisation in the forward
    model.eval()  # caches it
    calls = []
    real = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, 'eigh',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        outs = model(x)
    assert not calls  # no eigendecomposition in an eval forward
    for a, b in zip(ref, outs):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # new weights -> recomputed once
        for p in model.parameters():
            p.mul_(1.01)
        model(x)
    assert calls
