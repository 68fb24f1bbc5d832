"""Deployment: ONNX export equal in onnxruntime (never silently wrong), a
dynamic batch that stays dynamic, and torch.compile without graph breaks."""
import pytest
import torch
import torch.nn as nn
from helpers import CLS_CFG, RETINA_CFG, SET_CFG

from mmeffattn.deployment.onnx_export import (ExportError, build_model,
                                              check_batch_axis, check_onnx,
                                              export, export_input)

onnx = pytest.importorskip('onnx', reason='requirements/optional.txt')
pytest.importorskip('onnxruntime', reason='requirements/optional.txt')
pytest.importorskip('onnxscript', reason='requirements/optional.txt')

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


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CASES))
def test_onnxruntime_equals_pytorch(name, exported):
    path, x, refs = exported[name]
    diffs = check_onnx(path, x, refs, atol=1e-4)
    assert len(diffs) == len(refs)
    print(name, 'max abs diff / scale:', diffs)


@pytest.mark.slow
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


class _Windows(nn.Module):
    """AlterNet's window attention (padded windows) as an image model."""

    def __init__(self):
        super().__init__()
        from mmeffattn.models import WindowSelfAttention2d
        self.attn = WindowSelfAttention2d(3, 4, num_heads=2, head_dim=4,
                                          window_size=4)

    def forward(self, x):
        return (self.attn(x), )


def test_dynamic_export_is_dynamic_at_batch_1(tmp_path):
    pytest.importorskip('onnxruntime', reason='requirements/optional.txt')
    pytest.importorskip('onnxscript', reason='requirements/optional.txt')
    import onnx
    from onnx import TensorProto, helper
    torch.manual_seed(0)
    model = _Windows().eval()
    x = export_input(torch.randn(1, 3, 10, 9), dynamic=True)
    assert x.shape[0] == 2          # a size-1 batch would be specialised
    path = str(tmp_path / 'dynamic.onnx')
    export(model, x, path, dynamic=True, opset=18)
    check_batch_axis(path, True, 2)
    for batch in (1, 3):            # not the export batch
        xb = torch.randn(batch, 3, 10, 9)
        with torch.no_grad():
            check_onnx(path, xb, model(xb), atol=1e-4)
    # what torch.export makes of a size-1 batch: a static axis, refused
    graph = helper.make_graph(
        [helper.make_node('Identity', ['input'], ['out'])], 'static',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT,
                                       [1, 3, 4, 4])],
        [helper.make_tensor_value_info('out', TensorProto.FLOAT,
                                       [1, 3, 4, 4])])
    static = str(tmp_path / 'static.onnx')
    onnx.save(helper.make_model(graph), static)
    with pytest.raises(ExportError, match='the input batch is static'):
        check_batch_axis(static, True, 1)
    check_batch_axis(static, False, 1)


def _small_backbones():
    from mmeffattn.models import SASAResNet, SeTformer
    return {
        'SASAResNet': SASAResNet(26, base_channels=16, num_heads=4,
                                 attn_scale='head_dim'),
        'SeTformer': SeTformer(dict(embed_dims=32, depths=[1, 1, 2, 1],
                                    num_heads=[1, 2, 4, 8], mlp_ratio=2),
                               num_refs=4, drop_path_rate=0.),
    }


@pytest.mark.slow
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
