"""AlterNet-50 against the official xxxnell/how-do-vits-work model through
mmeffattn.converters.alternet (fp64).

tests/data/parity/alternet/alternet.pth (written by generate.py next to
it) holds the official state dict's layout, the official logits and stage
means; the weights are rebuilt by synthetic.py, RNG-free."""
import os.path as osp

import pytest
import torch
from helpers import PARITY_DATA, load_file

from mmeffattn.converters import alternet

DATA = osp.join(PARITY_DATA, 'alternet')


@pytest.fixture(scope='module')
def converter():
    return alternet


@pytest.mark.slow
def test_alternet50_equals_official(converter):
    from mmengine.registry import init_default_scope
    from mmpretrain.models import ImageClassifier
    init_default_scope('mmpretrain')  # earlier tests may leave mmdet's
    synthetic = load_file('synthetic', osp.join(DATA, 'synthetic.py'))
    ref = torch.load(osp.join(DATA, 'alternet.pth'), weights_only=True)
    official = synthetic.synthetic_state_dict(ref['layout'])
    model = ImageClassifier(
        backbone=dict(type='mmeffattn.AlterNet', depth=50,
                      window_size=ref['window_size']),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=ref['num_classes'],
                  in_channels=2048)).double().eval()
    state = converter.convert(converter.official_state_dict(
        dict(state_dict=official)))
    model.load_state_dict(state, strict=True)
    stages = []
    hooks = [getattr(model.backbone, f'layer{i}').register_forward_hook(
        lambda m, i, o: stages.append(o.mean((2, 3)))) for i in range(1, 5)]
    with torch.no_grad():
        logits = model(synthetic.synthetic_input(), mode='tensor')
    for h in hooks:
        h.remove()
    for ours, theirs in zip(stages, ref['stage_means']):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    torch.testing.assert_close(logits, ref['logits'], rtol=1e-12, atol=0)


def test_converter_names_what_it_cannot_map(converter):
    with pytest.raises(KeyError, match='classifier.0.dense1.weight'):
        converter.convert({'classifier.0.dense1.weight': torch.zeros(2, 2)})
    with pytest.raises(ValueError, match='layer0.layer0.0.weight.*3x3 stem'):
        converter.convert(
            {'layer0.layer0.0.weight': torch.zeros(64, 3, 3, 3)})
