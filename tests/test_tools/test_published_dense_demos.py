"""Every published detection and segmentation demo checkpoint, evaluated by
tools/test.py on the full embedded val set (as `make data` writes it),
reproduces the number in configs/demo/README.md within 1 point."""
import os.path as osp
import re

import pytest
from helpers import DEMO, REPO, TOOLS, published_checkpoint, run_tool

BBOX, SEGM = r'coco/bbox_mAP: ([\d.]+)', r'coco/segm_mAP: ([\d.]+)'
MIOU = r'mIoU: ([\d.]+)'
# config name -> (metric in tools/test.py's output, README value), ...
PUBLISHED = {
    'retinanet_sasa-r26-demo_fpn_1xb8-16e_digits': [(BBOX, 0.559)],
    'mask-rcnn_sasa-r26-demo_fpn_1xb8-8e_digits': [(BBOX, 0.704),
                                                   (SEGM, 0.740)],
    'rtdetr_r18vd-demo_1xb8-24e_digits': [(BBOX, 0.797)],
    'upernet_sasa-r26-demo_1xb16-1500iter_digits-64x64': [(MIOU, 67.51)],
}


@pytest.fixture(scope='module')
def full_demo_cwd(tmp_path_factory):
    """The embedded data at its full size (100 val canvases)."""
    import os

    from mmeffattn.datasets import generate_demo_data
    cwd = tmp_path_factory.mktemp('full_demo')
    generate_demo_data(osp.join(cwd, 'data', 'demo'))
    os.symlink(osp.join(REPO, 'checkpoints'), osp.join(cwd, 'checkpoints'))
    return str(cwd)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_published_checkpoint_reproduces(name, full_demo_cwd, tmp_path):
    proc = run_tool([osp.join(TOOLS, 'test.py'), osp.join(DEMO, name + '.py'),
                     published_checkpoint(name), '--work-dir', str(tmp_path)],
                    full_demo_cwd)
    for pattern, expected in PUBLISHED[name]:
        values = re.findall(pattern, proc.stdout + proc.stderr)
        assert values, proc.stdout[-2000:]
        value = float(values[-1])
        point = 1.0 if expected > 1 else 0.01
        assert abs(value - expected) <= point, (name, pattern, value)
