"""AlterNet: structure and full-size counts, outputs at odd sizes,
freezing and norm_eval, errors."""
import pytest
import torch

from mmeffattn.models.backbones import AlterNet
from mmeffattn.models.backbones.alternet import MSABlock, PreActBottleneck


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_alternet50_alternates_conv_and_msa_at_stage_ends():
    model = AlterNet(depth=50)
    pattern = [''.join('M' if isinstance(b, MSABlock) else 'C'
                       for b in getattr(model, f'layer{i}'))
               for i in range(1, 5)]
    assert pattern == ['CCC', 'CCCM', 'CMCMCM', 'CMCM']
    assert all(isinstance(b, (MSABlock, PreActBottleneck))
               for i in range(1, 5) for b in getattr(model, f'layer{i}'))
    heads = [b.attn.num_heads for i in range(2, 5)
             for b in getattr(model, f'layer{i}') if isinstance(b, MSABlock)]
    assert heads == [6, 12, 12, 12, 24, 24]
    block = model.layer3[1]
    assert block.attn.q.out_channels == 12 * 64          # heads x dim_head
    assert block.attn.q.in_channels == 1024 // 4         # width = in / 4
    assert block.attn.proj.out_channels == 1024
    assert block.attn.rel_pos_bias.shape == (13, 13)     # one table
    # backbone only (get_flops of the configs adds the 1000-way head)
    assert _count(model) == 33_866_038


def test_alternet_outputs_and_odd_sizes():
    model = AlterNet(base_channels=8, num_heads=(1, 1, 2, 2), head_dim=8,
                     window_size=4, out_indices=(0, 1, 2, 3)).eval()
    outs = model(torch.randn(1, 3, 50, 61))
    assert [tuple(o.shape) for o in outs] == [
        (1, 32, 13, 16), (1, 64, 7, 8), (1, 128, 4, 4), (1, 256, 2, 2)]
    assert model.out_channels == [32, 64, 128, 256]
    assert all((o >= 0).all() for o in outs)              # BN-ReLU outputs


def test_alternet_frozen_stages_and_norm_eval():
    model = AlterNet(base_channels=8, num_heads=(1, 1, 2, 2), head_dim=8,
                     window_size=4, out_indices=(0, 3), frozen_stages=1,
                     norm_eval=True)
    model.train()
    frozen = [model.stem, model.layer1, model.out_norm0]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not model.layer2[0].norm1.training          # norm_eval
    assert model.layer2[0].training


def test_alternet_errors():
    with pytest.raises(KeyError, match='invalid depth 34 for AlterNet'):
        AlterNet(depth=34)
    with pytest.raises(ValueError, match='out_indices'):
        AlterNet(out_indices=(4, ))
    with pytest.raises(ValueError, match='num_heads needs 4'):
        AlterNet(num_heads=(1, 2))
