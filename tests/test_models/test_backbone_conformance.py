"""Every backbone of the mmeffattn registry behaves as its OpenMMLab family
(mmpretrain's backbone tests are the model): ``out_indices`` wraps negatives
and refuses what is out of range at build, ``frozen_stages`` keeps the
family's meaning up to its last stage, ``norm_eval`` acts on batch norms
only, ``init_cfg=Pretrained`` with a prefix loads a classifier's backbone, a
state_dict round trip is exact, and a bad input names the expected shape.

The backbones are discovered from the registry: one added without a case
below fails :func:`test_every_registered_backbone_has_a_case`.
"""
import re

import pytest
import torch
from helpers import CLS_CFG
from torch.nn.modules.batchnorm import _BatchNorm

import mmeffattn.models  # noqa: F401  (registers the modules)
from mmeffattn.registry import MODELS

VIT = dict(arch=dict(embed_dims=16, num_layers=2, num_heads=2,
                     feedforward_channels=16), img_size=32, patch_size=8)


def _resnet_stage(model, i):
    """ResNet family (mmpretrain ResNet): 0 the stem, i the layer i."""
    return model.stem if i == 0 else getattr(model, f'layer{i}')


def _swin_stage(model, i):
    """Swin family: stage i (the stem freezes with stage 0)."""
    return model.stages[i]


def _sparseformer_stage(model, i):
    return [model.early_conv, model.focus, model.cortex[0]][i]


def _vit_stage(model, i):
    """mmpretrain ViT: frozen_stages k >= 1 freezes the first k layers;
    stage 0 is the embedding, frozen only from k = 1."""
    return model.patch_embed if i == 0 else model.layers[i - 1]


#: name -> (tiny build kwargs, number of out stages (None: single output),
#: frozen_stages range (lowest freezing something, highest), stage getter,
#: norm_eval argument)
CASES = {
    'SASAResNet': (dict(depth=26, base_channels=8, num_heads=2, kernel_size=3,
                        stem_heads=2, stem_mixtures=2),
                   4, (0, 4), _resnet_stage, True),
    'AlterNet': (dict(base_channels=4, head_dim=4, window_size=2,
                      num_heads=(1, 1, 1, 1)),
                 4, (0, 4), _resnet_stage, True),
    'SeTformer': (dict(arch=dict(embed_dims=8, depths=[1, 1, 1, 1],
                                 num_heads=[1, 1, 2, 2], mlp_ratio=1),
                       num_refs=4, drop_path_rate=0.),
                  4, (0, 3), _swin_stage, True),
    'SparseFormer': (dict(arch=dict(num_tokens=4, embed_dims=(8, 16),
                                    cortex_depth=1),
                          num_points=4, early_channels=4, num_heads=2,
                          focus_iters=1),
                     None, (0, 2), _sparseformer_stage, True),
    'PResNet': (dict(depth=18, base_channels=4, stem_channels=4),
                4, (0, 4), _resnet_stage, True),
    'CastlingViT': (dict(VIT), 2, (1, 2), _vit_stage, False),
    'ToMeVisionTransformer': (dict(VIT, tome_r=1), 2, (1, 2), _vit_stage,
                              False),
}


def registered_backbones():
    return sorted(name for name, cls in MODELS.module_dict.items()
                  if cls.__module__.startswith('mmeffattn.models.backbones'))


BACKBONES = registered_backbones()


def build(name, **kwargs):
    if name not in CASES:
        pytest.fail(f'{name} is registered but has no conformance case')
    args = dict(CASES[name][0])
    args.update(kwargs)
    torch.manual_seed(0)
    return MODELS.module_dict[name](**args)


def mode(model, train):
    """``model.train(train)``, returning the model (mmpretrain's
    ``BaseBackbone.train`` returns None)."""
    model.train(train)
    return model


def image(batch=2, size=32):
    return torch.randn(batch, 3, size, size,
                       generator=torch.Generator().manual_seed(0))


def test_every_registered_backbone_has_a_case():
    assert BACKBONES, 'no backbone found in the registry'
    missing = sorted(set(BACKBONES) - set(CASES))
    assert not missing, f'registered backbones without a case: {missing}'


@pytest.mark.parametrize('name', BACKBONES)
def test_out_indices_wrap_and_range(name):
    stages = CASES[name][1] if name in CASES else None
    if stages is None:  # one output (as upstream's single-output nets)
        init = MODELS.module_dict[name].__init__
        assert 'out_indices' not in init.__code__.co_varnames
        return
    model = mode(build(name, out_indices=(0, -1)), False)
    assert tuple(model.out_indices) == (0, stages - 1)
    ref = mode(build(name, out_indices=(0, stages - 1)), False)
    with torch.no_grad():
        outs, ref_outs = model(image()), ref(image())
    assert len(outs) == 2
    for a, b in zip(outs, ref_outs):
        assert torch.equal(a, b)
    valid = re.escape(f'[{-stages}, {stages - 1}]')
    for bad in (stages, -stages - 1, (0, stages + 1)):
        with pytest.raises(ValueError,
                           match=f'out_indices=.*must be .*in {valid}'):
            build(name, out_indices=bad)


def _frozen(module, vit=False):
    """No gradient, and eval mode (mmpretrain's ViT sets it once at build;
    its ``train()`` does not keep it)."""
    return (vit or not module.training) and not any(
        p.requires_grad for p in module.parameters())


def _trainable(module):
    return module.training and all(p.requires_grad
                                   for p in module.parameters())


@pytest.mark.parametrize('name', BACKBONES)
def test_frozen_stages_boundaries(name):
    _, _, (low, high), stage, _ = CASES[name]
    vit = stage is _vit_stage
    # the first frozen and the first trainable stage at every boundary
    for k in sorted({low, high - 1}):
        model = mode(build(name, frozen_stages=k), True)
        assert _frozen(stage(model, k), vit), (name, k)
        assert _trainable(stage(model, k + 1)), (name, k)
    model = mode(build(name, frozen_stages=high), True)
    assert all(_frozen(stage(model, i), vit)
               for i in range(low, high + 1))
    model = mode(build(name, frozen_stages=-1), True)
    assert all(_trainable(stage(model, i)) for i in range(low, high + 1))
    with pytest.raises(ValueError, match=re.escape(
            f'frozen_stages={high + 1} is invalid; it must be an int in '
            f'[-1, {high}]')):
        build(name, frozen_stages=high + 1)
    with pytest.raises(ValueError, match='frozen_stages=-2'):
        build(name, frozen_stages=-2)


@pytest.mark.parametrize('name', BACKBONES)
def test_frozen_stages_documented(name):
    doc = MODELS.module_dict[name].__doc__
    assert 'frozen_stages' in doc and 'out_indices' in doc or (
        CASES[name][1] is None and 'frozen_stages' in doc)
    assert 'Example:' in doc


@pytest.mark.parametrize('name', BACKBONES)
def test_norm_eval_acts_on_batch_norms_only(name):
    if not CASES[name][4]:
        pytest.skip('no norm_eval argument upstream (mmpretrain ViT)')
    model = mode(build(name, norm_eval=True), True)
    norms = [m for m in model.modules()
             if isinstance(m, (_BatchNorm, torch.nn.LayerNorm))]
    assert norms
    for m in norms:
        assert m.training != isinstance(m, _BatchNorm), type(m)
    model = mode(build(name, norm_eval=False), True)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize('name', BACKBONES)
def test_pretrained_prefix_loads_a_classifiers_backbone(name, tmp_path):
    source = build(name)
    source.init_weights()
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(10, 4)
    path = str(tmp_path / 'classifier.pth')
    torch.save(dict(state_dict=state), path)
    torch.manual_seed(1)
    model = MODELS.module_dict[name](**dict(
        CASES[name][0], init_cfg=dict(type='Pretrained', checkpoint=path,
                                      prefix='backbone.')))
    model.init_weights()
    want = source.state_dict()
    got = model.state_dict()
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


@pytest.mark.parametrize('name', BACKBONES)
def test_state_dict_round_trip_is_exact(name):
    source = build(name)
    source.init_weights()
    torch.manual_seed(1)
    target = MODELS.module_dict[name](**CASES[name][0])
    target.init_weights()
    target.load_state_dict(source.state_dict(), strict=True)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    mode(source, False)
    mode(target, False)
    with torch.no_grad():
        for a, b in zip(source(image()), target(image())):
            assert torch.equal(a, b)


@pytest.mark.parametrize('name', BACKBONES)
def test_bad_inputs_name_the_expected_shape(name):
    model = mode(build(name), False)
    want = re.escape('expects a (B, 3, H, W) float tensor')
    with pytest.raises(ValueError, match=want):
        model(torch.randn(3, 32, 32))                       # 3-D
    with pytest.raises(ValueError, match=want + '.*got a .*1, 1'):
        model(torch.randn(1, 3, 1, 1))                      # 1x1 image
    with pytest.raises(ValueError, match=want):
        model(torch.randn(1, 1, 32, 32))                    # grey
    with pytest.raises(ValueError, match='normalise images first'):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


# every constructor argument family, refused at build with one message
# naming the argument, the value and what is allowed
SASA = CASES['SASAResNet'][0]
SET = CASES['SeTformer'][0]
ALTER = CASES['AlterNet'][0]
SPARSE = CASES['SparseFormer'][0]
ARG_CASES = [
    # zero / negative ints
    ('SASAResNet',
     dict(SASA, num_heads=0),
     r'num_heads=0 is invalid; it must be an int >= 1'),
    ('SASAResNet',
     dict(SASA, base_channels=-8),
     r'base_channels=-8 is invalid; it must be an int >= 1'),
    ('SASAResNet',
     dict(SASA, stem_heads=0),
     r'stem_heads=0 is invalid'),
    ('SASAResNet',
     dict(SASA, in_channels=0),
     r'in_channels=0 is invalid'),
    ('AlterNet',
     dict(ALTER, window_size=0),
     r'window_size=0 is invalid; it must be an int >= 1'),
    ('AlterNet',
     dict(ALTER, num_heads=(1, 0, 1, 1)),
     r'num_heads\[1\]=0 is invalid'),
    ('AlterNet',
     dict(ALTER, head_dim=-4),
     r'head_dim=-4 is invalid'),
    ('SeTformer',
     dict(SET, num_refs=0),
     r'num_refs=0 is invalid; it must be a perfect square int >= 1'),
    ('SeTformer',
     dict(SET, num_refs=-2),
     r'num_refs=-2 is invalid'),
    ('SeTformer',
     dict(SET, num_iters=0),
     r'num_iters=0 is invalid; it must be an int >= 1'),
    ('SeTformer',
     dict(SET, arch=dict(SET['arch'], num_heads=[0, 1, 2, 2])),
     r'arch.num_heads\[0\]=0 is invalid'),
    ('SeTformer',
     dict(SET, arch=dict(SET['arch'], depths=[1, 0, 1, 1])),
     r'arch.depths\[1\]=0 is invalid'),
    ('SparseFormer',
     dict(SPARSE, num_heads=0),
     r'num_heads=0 is invalid'),
    ('SparseFormer',
     dict(SPARSE, focus_iters=0),
     r'focus_iters=0 is invalid'),
    ('SparseFormer',
     dict(SPARSE, num_points=0),
     r'num_points=0 is invalid; it must be a perfect square'),
    ('CastlingViT',
     dict(VIT, dconv_kernel=0),
     r'dconv_kernel=0 is invalid; it must be an odd int >= 1'),
    # kernels: even or negative
    ('SASAResNet',
     dict(SASA, kernel_size=4),
     r'kernel_size=4 is invalid; it must be an odd int in \[1, 63\]'),
    ('SASAResNet',
     dict(SASA, kernel_size=-3),
     r'kernel_size=-3 is invalid'),
    ('CastlingViT',
     dict(VIT, dconv_kernel=4),
     r'dconv_kernel=4 is invalid; it must be an odd int'),
    # heads that do not divide the width
    ('SASAResNet',
     dict(SASA, num_heads=3),
     r'base_channels \* 1=8 is invalid; it must be divisible by 2'
     r' \* num_heads=6'),
    ('SeTformer',
     dict(SET, arch=dict(SET['arch'], num_heads=[3, 1, 2, 2])),
     r'embed_dims \* 1=8 is invalid; it must be divisible by'
     r' arch.num_heads\[0\]=3'),
    ('SparseFormer',
     dict(SPARSE, num_heads=3),
     r'divisible by num_heads=3'),
    # real numbers out of their interval
    ('SeTformer',
     dict(SET, ot_eps=0),
     r'ot_eps=0 is invalid; it must be a number in \(0, inf\)'),
    ('SeTformer',
     dict(SET, drop_path_rate=1.5),
     r'drop_path_rate=1.5 is invalid; it must be a number in \[0,'
     r' 1\]'),
    ('AlterNet',
     dict(ALTER, drop_path_rate=-0.1),
     r'drop_path_rate=-0.1 is invalid'),
    ('SparseFormer',
     dict(SPARSE, mlp_ratio=0),
     r'mlp_ratio=0 is invalid; it must be a number in \(0, inf\)'),
    ('CastlingViT',
     dict(VIT, aux_threshold=2),
     r'aux_threshold=2 is invalid; it must be a number in \[0, 1\]'),
    # the attention modules themselves
    ('LocalSelfAttention2d',
     dict(in_channels=8, out_channels=8, kernel_size=4),
     r'kernel_size=4 is invalid; it must be an odd int'),
    ('LocalSelfAttention2d',
     dict(in_channels=8, out_channels=8, num_heads=0),
     r'num_heads=0 is invalid'),
    ('AttentionStem',
     dict(in_channels=3, out_channels=8, num_heads=0),
     r'AttentionStem: num_heads=0 is invalid'),
    ('SeTAttention',
     dict(embed_dims=8, num_heads=0),
     r'SeTAttention: num_heads=0 is invalid; it must be an int >= 1'),
    ('SeTAttention',
     dict(embed_dims=8, num_heads=2, num_refs=0),
     r'num_refs=0 is invalid'),
    ('SeTAttention',
     dict(embed_dims=8, num_heads=2, ot_eps=-1.),
     r'ot_eps=-1.0 is invalid'),
    ('WindowSelfAttention2d',
     dict(in_channels=8, out_channels=8, num_heads=0),
     r'num_heads=0 is invalid'),
    ('LinearAngularAttention',
     dict(embed_dims=8, num_heads=0),
     r'num_heads=0 is invalid'),
]


@pytest.mark.parametrize('name,kwargs,match', ARG_CASES,
                         ids=[f'{i}-{c[0]}' for i, c in enumerate(ARG_CASES)])
def test_bad_arguments_refused_at_build(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.module_dict[name](**kwargs)


def test_kernel_size_4_fails_when_the_config_is_built():
    """Not at the first forward, after the work dir is written."""
    from mmengine.config import Config

    from mmeffattn.utils.launch import build_config_model
    cfg = Config.fromfile(CLS_CFG)
    cfg.merge_from_dict({'model.backbone.kernel_size': 4})
    with pytest.raises(ValueError, match='kernel_size=4 is invalid'):
        build_config_model(cfg)


@pytest.mark.parametrize('backbone', ['SASAResNet', 'SeTformer'])
@pytest.mark.parametrize('bad, why', [
    (torch.zeros(3, 32, 32), 'of shape (3, 32, 32)'),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), 'torch.uint8'),
    (torch.zeros(1, 3, 1, 1), 'of shape (1, 3, 1, 1)'),
    (torch.zeros(1, 1, 32, 32), 'of shape (1, 1, 32, 32)'),
])
def test_backbone_rejects_bad_input_in_one_line(backbone, bad, why):
    from mmeffattn.models import SASAResNet, SeTformer
    model = dict(SASAResNet=lambda: SASAResNet(26, base_channels=16,
                                               num_heads=4),
                 SeTformer=lambda: SeTformer(dict(
                     embed_dims=16, depths=[1, 1, 1, 1],
                     num_heads=[1, 1, 2, 2], mlp_ratio=2),
                     num_refs=4))[backbone]()
    with pytest.raises(ValueError) as err:
        model(bad)
    msg = str(err.value)
    assert msg.startswith(f'{backbone} expects a (B, 3, H, W) float tensor '
                          'with H, W >= 32, got')
    assert why in msg and '\n' not in msg
