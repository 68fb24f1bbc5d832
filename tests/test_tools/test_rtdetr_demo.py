"""The published RT-DETR demo: tools/test.py reports COCO bbox mAP far above
an untrained model's 0.0, with --show-dir."""
import glob
import os.path as osp
import re

import pytest
from helpers import DEMO, TOOLS, published_checkpoint, run_tool

pytest.importorskip('mmdet')

RTDETR_NAME = 'rtdetr_r18vd-demo_1xb8-24e_digits'
RTDETR_CFG = osp.join(DEMO, RTDETR_NAME + '.py')


@pytest.mark.slow
def test_published_checkpoint_detects_the_digits(demo_cwd, tmp_path):
    show = tmp_path / 'show'
    proc = run_tool([osp.join(TOOLS, 'test.py'), RTDETR_CFG,
                     published_checkpoint(RTDETR_NAME), '--work-dir',
                     str(tmp_path / 'work'), '--show-dir', str(show)],
                    demo_cwd)
    found = re.findall(r'coco/bbox_mAP: ([\d.]+)', proc.stdout + proc.stderr)
    assert found and float(found[-1]) >= 0.5, proc.stdout[-2000:]
    drawn = glob.glob(str(tmp_path / '**' / '*.png'), recursive=True)
    assert drawn, 'no painted predictions under --show-dir'
