"""SASAResNet: parameter counts of the paper, odd input sizes with both
stems, attention stages, freezing and norm_eval."""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmeffattn.models import LocalSelfAttention2d, SASAResNet


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
