"""The tools report what they claim: get_memory infers the input size of
the demo configs and names a config it cannot measure in one line;
pytorch2onnx's --dynamic batch is dynamic whatever the export batch (window
attention, AlterNet's, exports); the benchmark runs on a named device; the
documented two-inferencer pattern works."""
import glob
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn
from conftest import DEMO, TOOLS


def test_every_demo_config_has_an_input_size():
    """Without the demo data: the digits keep their generator's 32 x 32."""
    from mmengine.config import Config

    from mmeffattn.utils.memory import config_input_shape
    configs = sorted(glob.glob(osp.join(DEMO, '*.py')))
    assert len(configs) > 10
    for path in configs:
        height, width = config_input_shape(Config.fromfile(path))
        assert height >= 32 and width >= 32, path
    name = 'setformer-demo_1xb64-30e_digits.py'
    cfg = Config.fromfile(osp.join(DEMO, name))
    assert config_input_shape(cfg) == (32, 32)


def test_get_memory_names_an_unmeasurable_config_in_one_line(tmp_path):
    """Measured in a child process (several configs): its failure is one
    line naming the config, not a CalledProcessError."""
    import argparse
    sys.path.insert(0, osp.join(TOOLS, 'analysis_tools'))
    from get_memory import MeasureError, measure
    bad = tmp_path / 'no-size.py'
    base = osp.join(DEMO, 'setformer-demo_1xb64-30e_digits.py')
    bad.write_text(
        f"_base_ = ['{base}']\n"
        "train_dataloader = dict(dataset=dict(data_root='elsewhere/'))\n")
    args = argparse.Namespace(shape=None, batch_size=None, downscale=1,
                              cfg_options=None)
    with pytest.raises(MeasureError) as info:
        measure(str(bad), args, isolated=True)
    msg = str(info.value)
    assert msg.startswith(f'{bad}: cannot infer the train input size')
    assert '\n' not in msg and 'not measured' not in msg


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
    sys.path.insert(0, osp.join(TOOLS, 'deployment'))
    from pytorch2onnx import (ExportError, check_batch_axis, check_onnx,
                              export, export_input)
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


def test_benchmark_device_flag():
    sys.path.insert(0, osp.join(TOOLS, 'analysis_tools'))
    from benchmark_attention import MODULE, main

    from mmeffattn.utils.benchmark import run_isolated
    with pytest.raises(SystemExit):
        main(['--device', 'tpu'])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            main(['--device', 'cuda'])
        return
    row = run_isolated(MODULE, dict(kind='window', impl='ours', B=1, C=8,
                                    heads=2, window=4, H=6, W=6, repeat=1,
                                    device='cuda'))
    assert 'error' not in row and row['fwd_ms'] > 0, row


def test_two_inferencers_in_one_process():
    """An inferencer of another toolbox (MMSegInferencer, DetInferencer)
    leaves its default scope; the pattern of docs/get_started.md builds
    mmpretrain's next to it."""
    import numpy as np
    from conftest import published_checkpoint
    from mmengine.registry import DefaultScope
    from mmpretrain import ImageClassificationInferencer

    import mmeffattn  # noqa: F401
    name = 'sasa-r26-demo_1xb64-20e_digits'
    args = (osp.join(DEMO, name + '.py'), )
    kwargs = dict(pretrained=published_checkpoint(name), device='cpu')
    with DefaultScope.overwrite_default_scope('mmseg'):  # as left by
        with pytest.raises(KeyError, match='mmseg::transform'):  # mmseg
            ImageClassificationInferencer(*args, **kwargs)   # upstream
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            cls = ImageClassificationInferencer(*args, **kwargs)
    digit = (np.random.RandomState(0).rand(32, 32, 3) * 255).astype(
        np.uint8)
    assert 0 <= cls(digit)[0]['pred_label'] < 10
