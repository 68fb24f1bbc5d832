"""tools/deployment/pytorch2onnx.py exports a demo classifier with a dynamic
batch and checks it in onnxruntime."""
import os.path as osp

import pytest
import torch
from helpers import CLS_CFG, TOOLS, run_tool

pytest.importorskip('onnx', reason='requirements/optional.txt')
pytest.importorskip('onnxruntime', reason='requirements/optional.txt')
pytest.importorskip('onnxscript', reason='requirements/optional.txt')


@pytest.mark.slow
def test_tool_exports_and_checks(tmp_path):
    out = run_tool([osp.join(TOOLS, 'deployment', 'pytorch2onnx.py'),
                    CLS_CFG, '--shape', '32', '32', '--dynamic', '--out',
                    str(tmp_path / 'm.onnx')], str(tmp_path))
    assert 'onnxruntime matches PyTorch' in out.stdout
    import onnxruntime as ort
    sess = ort.InferenceSession(str(tmp_path / 'm.onnx'))
    res = sess.run(None, {sess.get_inputs()[0].name:
                          torch.randn(3, 3, 32, 32).numpy()})
    assert res[0].shape == (3, 10)  # dynamic batch
