"""tools/analysis_tools/visualize_rois.py on the published SparseFormer demo:
it draws what the model computes (the RoIs and points of its trace) and
names a config without a SparseFormer."""
import glob
import os.path as osp

import pytest
import torch
from helpers import DEMO, REPO, published_checkpoint, run_tool

from mmeffattn.visualization.sparseformer_rois import (build_classifier,
                                                       trace_image)

SPARSE_CFG = osp.join(DEMO, 'sparseformer-demo_1xb64-30e_digits.py')
SPARSE_NAME = 'sparseformer-demo_1xb64-30e_digits'
TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'visualize_rois.py')


@pytest.mark.slow
def test_draws_the_models_rois(demo_cwd, tmp_path):
    image = sorted(glob.glob(osp.join(demo_cwd, 'data', 'demo', 'cls', 'val',
                                      '*', '*.png')))[0]
    proc = run_tool([TOOL, SPARSE_CFG, published_checkpoint(SPARSE_NAME),
                     image, '--out-dir', str(tmp_path), '--tokens', '0', '5'],
                    cwd=demo_cwd)
    png = tmp_path / (osp.splitext(osp.basename(image))[0] + '_rois.png')
    assert png.stat().st_size > 5_000, proc.stdout
    assert '5 sampling steps' in proc.stdout
    # the trace is the model's: the points drawn are standardised around
    # the centres of the RoIs drawn
    model = build_classifier(SPARSE_CFG, published_checkpoint(SPARSE_NAME))
    _, trace, label = trace_image(model, image)
    assert len(trace) == model.backbone.focus_iters + 1
    step = trace[-1]
    assert step['points'].shape == (1, 16, 9, 2)
    roi = step['roi'][0]
    torch.testing.assert_close(step['points'][0].mean(1),
                               (roi[:, :2] + roi[:, 2:]) / 2)
    assert 0 <= label < 10


@pytest.mark.slow
def test_rejects_a_model_without_rois(demo_cwd, tmp_path):
    proc = run_tool([TOOL,
                     osp.join(DEMO, 'convmixer-demo_1xb64-30e_digits.py'),
                     published_checkpoint(SPARSE_NAME), 'x.png', '--out-dir',
                     str(tmp_path)], cwd=demo_cwd, check=False)
    assert proc.returncode != 0
    assert 'RoIs exist only in mmeffattn.SparseFormer' in proc.stderr
    assert 'the backbone is ConvMixer' in proc.stderr
