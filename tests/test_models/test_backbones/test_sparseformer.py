"""SparseFormer: full-size counts of the paper, the sampling units and their
official initialisation, outputs and gradients, freezing, errors, and the
published demo's trained sampling units."""
import os.path as osp

import pytest
import torch
from helpers import REPO, published_checkpoint

from mmeffattn.models.backbones import SparseFormer


@pytest.mark.slow
@pytest.mark.parametrize('arch,params,macs', [
    ('tiny', 32e6, 2.0e9), ('small', 48e6, 3.8e9), ('base', 81e6, 7.8e9)])
def test_sparseformer_params_and_flops_match_the_paper(arch, params, macs):
    """get_flops.py of the ImageNet configs at 224: +-5 % params, +-10 %
    (G)FLOPs of the paper (which counts multiply-adds, as Swin does)."""
    from mmeffattn.analysis.config_flops import get_flops
    cfg = osp.join(REPO, 'configs', 'sparseformer',
                   f'sparseformer-{arch[0]}_8xb128_in1k.py')
    res = get_flops(cfg, (224, 224))
    assert abs(res['params'] / params - 1) <= 0.05, res['params']
    assert abs(res['macs'] / macs - 1) <= 0.10, res['macs']
    assert 'aten::grid_sampler' not in res['unsupported']
    assert 'aten::scaled_dot_product_attention' not in res['unsupported']


def _small_sparseformer(**kwargs):
    return SparseFormer(dict(num_tokens=9, embed_dims=(16, 32),
                             cortex_depth=2), num_points=4,
                        early_channels=8, num_heads=2, **kwargs)


def test_sparseformer_focusing_unit_is_shared_and_only_first_cortex_samples():
    model = _small_sparseformer()
    model.init_weights()
    assert model.cortex[0].mixer is not None
    assert model.cortex[1].mixer is None
    trace = []
    tokens = model.forward_tokens(torch.randn(2, 3, 37, 45), trace)
    assert tokens.shape == (2, 9, 32)
    assert len(trace) == 4 + 1                # 4 focusing passes + cortex
    first = trace[0]
    assert first['roi'].shape == (2, 9, 4)
    assert first['points'].shape == (2, 9, 4, 2)
    # at init: RoI deltas are 0, so the RoIs are the official grid of
    # half-size boxes inside the image, column-major
    torch.testing.assert_close(first['roi'][0, :2],
                               torch.tensor([[0., 0., .5, .5],
                                             [0., .25, .5, .75]]))
    assert first['roi'].min() >= 0 and first['roi'].max() <= 1
    # the 2x2 grid of offsets standardised: points inside the RoI
    pts, roi = first['points'][0], first['roi'][0]
    assert ((pts >= roi[:, None, :2]) & (pts <= roi[:, None, 2:])).all()


def test_sparseformer_initialisation_is_the_official_one():
    """Every sampling unit (the focusing unit and the first cortex unit):
    unit-norm LN gains, RoI deltas 0, the generator's last weight 0 and its
    bias a Xavier draw (non-zero mixing from the start)."""
    torch.manual_seed(0)
    model = _small_sparseformer()
    model.init_weights()
    for unit, d in ((model.focus, 16), (model.cortex[0], 32)):
        mixer = unit.mixer
        for norm in (mixer.roi_norm, mixer.offset_norm, mixer.generator_norm):
            torch.testing.assert_close(norm.weight, torch.full((d, ), d**-.5))
        assert not mixer.roi_delta.weight.any()
        assert not mixer.generator[1].weight.any()
        bias = mixer.generator[1].bias
        channel, point = bias[:64].view(8, 8), bias[64:].view(4, 4)
        assert channel.abs().max() <= (6 / 16)**.5 and channel.std() > .1
        assert point.abs().max() <= (6 / 8)**.5 and point.std() > .1
        torch.testing.assert_close(mixer.offsets.bias, torch.tensor(
            [-.25, -.25, .25, -.25, -.25, .25, .25, .25]))
        assert 0 < mixer.offsets.weight.std() < .03
    assert 0.8 < model.token_embed.std() < 1.2
    assert model.token_embed.abs().max() <= 2
    assert model.drop_path_rates == [0.] * 6     # 4 passes + 2 units


def test_sparseformer_output_types_and_gradients():
    model = _small_sparseformer()
    model.init_weights()
    out = model(torch.randn(2, 3, 32, 32))
    assert len(out) == 1 and out[0].shape == (2, 32)
    out[0].pow(2).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing                        # token_roi included
    tokens = _small_sparseformer(out_type='tokens')(torch.randn(1, 3, 32, 32))
    assert tokens[0].shape == (1, 9, 32)


def test_sparseformer_frozen_stages():
    model = _small_sparseformer(frozen_stages=1)
    model.train()
    assert not model.token_embed.requires_grad
    assert not any(p.requires_grad for p in model.focus.parameters())
    assert all(p.requires_grad for p in model.cortex.parameters())
    assert not model.focus.training


def test_sparseformer_errors():
    with pytest.raises(KeyError, match="arch 'huge' is not a SparseFormer"):
        SparseFormer('huge')
    with pytest.raises(ValueError, match='num_tokens.*square'):
        SparseFormer(dict(num_tokens=10, embed_dims=(64, 64),
                          cortex_depth=1))
    with pytest.raises(ValueError, match='out_type'):
        SparseFormer('tiny', out_type='featmap')
    with pytest.raises(ValueError, match='expects a'):
        _small_sparseformer()(torch.randn(1, 3, 8, 8))


def test_published_sparseformer_demo_trained_its_sampling_units():
    """The published demo left the initial point: in both sampling units the
    generator's weight (0 at init) and the mixer's output weight moved."""
    state = torch.load(published_checkpoint(
        'sparseformer-demo_1xb64-30e_digits'), weights_only=True)['state_dict']
    for unit in ('focus', 'cortex.0'):
        prefix = f'backbone.{unit}.mixer.'
        assert state[prefix + 'generator.1.weight'].abs().min() > 0
        assert state[prefix + 'offsets.weight'].abs().max() > 1e-3
        assert state[prefix + 'channel_bias'].abs().max() > 0
