"""Deployment: ONNX export equal in onnxruntime (never silently wrong), and
torch.compile without graph breaks."""
import os.path as osp
import sys

import pytest
import torch
from conftest import CLS_CFG, REPO, RETINA_CFG, SET_CFG

sys.path.insert(0, osp.join(REPO, 'tools', 'deployment'))

onnx = pytest.importorskip('onnx', reason='requirements/optional.txt')
pytest.importorskip('onnxruntime', reason='requirements/optional.txt')
pytest.importorskip('onnxscript', reason='requirements/optional.txt')

from pytorch2onnx import ExportError, build_model, check_onnx, export  # noqa

CASES = {'sasa-cls': (CLS_CFG, 32), 'setformer-cls': (SET_CFG, 32),
         'retinanet-sasa': (RETINA_CFG, 64)}


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """name -> (onnx path, input, eager outputs)."""
    out = {}
    for name, (cfg, size) in CASES.items():
        torch.manual_seed(0)
        model = build_model(cfg)
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            refs = model(x)
        path = str(tmp_path_factory.mktemp('onnx') / f'{name}.onnx')
        export(model, x, path, dynamic=False, opset=18)
        out[name] = (path, x, refs)
    return out


@pytest.mark.parametrize('name', sorted(CASES))
def test_onnxruntime_equals_pytorch(name, exported):
    path, x, refs = exported[name]
    diffs = check_onnx(path, x, refs, atol=1e-4)
    assert len(diffs) == len(refs)
    print(name, 'max abs diff / scale:', diffs)


def test_a_wrong_export_cannot_pass(exported, tmp_path):
    from onnx import numpy_helper
    path, x, refs = exported['sasa-cls']
    model = onnx.load(path)
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    arr = numpy_helper.to_array(init) * 1.01
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    bad = str(tmp_path / 'perturbed.onnx')
    onnx.save(model, bad)
    with pytest.raises(ExportError, match='the export is wrong'):
        check_onnx(bad, x, refs, atol=1e-4)


def test_tool_exports_and_checks(tmp_path):
    from conftest import TOOLS, run_tool
    out = run_tool([osp.join(TOOLS, 'deployment', 'pytorch2onnx.py'),
                    CLS_CFG, '--shape', '32', '32', '--dynamic', '--out',
                    str(tmp_path / 'm.onnx')], str(tmp_path))
    assert 'onnxruntime matches PyTorch' in out.stdout
    import onnxruntime as ort
    sess = ort.InferenceSession(str(tmp_path / 'm.onnx'))
    res = sess.run(None, {sess.get_inputs()[0].name:
                          torch.randn(3, 3, 32, 32).numpy()})
    assert res[0].shape == (3, 10)  # dynamic batch


def _small_backbones():
    from mmeffattn.models import SASAResNet, SeTformer
    return {
        'SASAResNet': SASAResNet(26, base_channels=16, num_heads=4,
                                 attn_scale='head_dim'),
        'SeTformer': SeTformer(dict(embed_dims=32, depths=[1, 1, 2, 1],
                                    num_heads=[1, 2, 4, 8], mlp_ratio=2),
                               num_refs=4, drop_path_rate=0.),
    }


@pytest.mark.parametrize('name', ['SASAResNet', 'SeTformer'])
def test_compile_has_no_graph_break_and_equals_eager(name):
    import torch._dynamo
    torch.manual_seed(0)
    model = _small_backbones()[name]
    model.init_weights()
    x = torch.randn(2, 3, 64, 64)
    for mode in ('eval', 'train'):
        getattr(model, mode)()
        torch._dynamo.reset()
        explain = torch._dynamo.explain(model)(x)
        assert explain.graph_break_count == 0, explain.break_reasons
    model.train()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    grads = []
    for fn in (model, compiled):
        model.zero_grad(set_to_none=True)
        outs = fn(x)
        sum(o.square().mean() for o in outs).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        if fn is model:
            ref = [o.detach() for o in outs]
        else:
            for a, b in zip(ref, outs):
                torch.testing.assert_close(b.detach(), a, atol=1e-4,
                                           rtol=1e-4)
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-3)


def test_setformer_eval_caches_nystrom_normalisation(monkeypatch):
    from mmeffattn.models import SeTformer
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
