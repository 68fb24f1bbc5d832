"""SparseFormer equals the official implementation: the golden fixture
(tests/data/parity/sparseformer: an official-layout state dict of a tiny
model, its input and the official outputs, commit recorded) converted by
mmeffattn.converters.sparseformer reproduces the official
outputs in float64, in eval and in train mode (drop path, same seed)."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import PARITY_DATA, REPO

from mmeffattn.converters import sparseformer

FIXTURE = osp.join(PARITY_DATA, 'sparseformer', 'fixture.pth')
TOOL = osp.join(REPO, 'tools', 'model_converters',
                'sparseformer_to_mmeffattn.py')


def load_converter():
    return sparseformer


def _classifier(fixture):
    from mmengine.registry import init_default_scope
    from mmpretrain.models import ImageClassifier

    import mmeffattn  # noqa: F401
    init_default_scope('mmpretrain')  # earlier tests may leave mmdet's
    return ImageClassifier(
        backbone=dict(type='mmeffattn.SparseFormer', **fixture['ours_args']),
        head=dict(type='LinearClsHead', num_classes=fixture['num_classes'],
                  in_channels=fixture['ours_args']['arch']['embed_dims'][1]))


@pytest.mark.slow
def test_converted_fixture_reproduces_the_official_outputs(tmp_path):
    fixture = torch.load(FIXTURE, weights_only=True)
    assert len(fixture['commit']) == 40
    src, dst = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save(dict(model=fixture['state_dict']), src)
    proc = subprocess.run([sys.executable, TOOL, str(src), str(dst)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    state = torch.load(dst, weights_only=True)['state_dict']
    model = _classifier(fixture)
    model.load_state_dict(state, strict=True)
    model.double().eval()
    x = fixture['input'].double()
    with torch.no_grad():
        trace = []
        tokens = model.backbone.forward_tokens(x, trace)
        logits = model.head.fc(model.backbone.norm(tokens.mean(1)))
    tight = dict(rtol=0, atol=1e-10)
    torch.testing.assert_close(logits, fixture['logits'], **tight)
    torch.testing.assert_close(trace[-1]['roi'], fixture['roi'], **tight)
    model.train()
    torch.manual_seed(fixture['train_seed'])
    xg = x.clone().requires_grad_()
    train = model(xg, mode='tensor')
    train.pow(2).sum().backward()
    torch.testing.assert_close(train.detach(), fixture['train_logits'],
                               **tight)
    torch.testing.assert_close(xg.grad, fixture['train_input_grad'], **tight)


def test_converter_names_a_key_that_does_not_map():
    conv = load_converter()
    fixture = torch.load(FIXTURE, weights_only=True)
    state = dict(fixture['state_dict'])
    state['layers.0.stage_embedding.weight'] = torch.zeros(2, 16)
    with pytest.raises(KeyError, match=r"'layers\.0\.stage_embedding"):
        conv.convert(state)
    ema = {'module.' + k: v for k, v in fixture['state_dict'].items()}
    picked = conv.official_state_dict(dict(model={}, model_ema=ema))
    assert set(picked) == set(fixture['state_dict'])


def test_converter_reads_an_official_training_checkpoint(tmp_path,
                                                         monkeypatch):
    """The Swin-codebase checkpoint pickles its yacs ``config``: it is read
    weights-only (as data) and ``model_ema`` is picked."""
    import types
    conv = load_converter()
    yacs, config = types.ModuleType('yacs'), types.ModuleType('yacs.config')

    class CfgNode(dict):

        def __init__(self, init=None):
            super().__init__(init or {})
            self.__dict__['__immutable__'] = True

    CfgNode.__module__, CfgNode.__qualname__ = 'yacs.config', 'CfgNode'
    config.CfgNode, yacs.config = CfgNode, config
    monkeypatch.setitem(sys.modules, 'yacs', yacs)
    monkeypatch.setitem(sys.modules, 'yacs.config', config)
    weights = {'token_roi.weight': torch.rand(4, 4)}
    path = tmp_path / 'ckpt_epoch_299.pth'
    torch.save(dict(model={}, model_ema={'module.token_roi.weight':
                                         weights['token_roi.weight']},
                    epoch=299, config=CfgNode(dict(MODEL=CfgNode(
                        dict(TYPE='sparseformer'))))), path)
    monkeypatch.delitem(sys.modules, 'yacs.config')
    monkeypatch.delitem(sys.modules, 'yacs')
    ckpt = conv.load_official(str(path))
    assert ckpt['config']['MODEL']['TYPE'] == 'sparseformer'
    state = conv.official_state_dict(ckpt)
    torch.testing.assert_close(state['token_roi.weight'],
                               weights['token_roi.weight'])
