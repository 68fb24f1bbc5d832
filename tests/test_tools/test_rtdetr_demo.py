"""The published RT-DETR demo: tools/test.py reports COCO bbox mAP far above
an untrained model's 0.0, with --show-dir, and mmdet's DetInferencer finds
the digits of a val image."""
import glob
import json
import os.path as osp
import re

import pytest
from conftest import DEMO, TOOLS, published_checkpoint, run_tool

pytest.importorskip('mmdet')

RTDETR_NAME = 'rtdetr_r18vd-demo_1xb8-24e_digits'
RTDETR_CFG = osp.join(DEMO, RTDETR_NAME + '.py')


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


def _iou(a, b):
    ix = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


def test_det_inferencer_finds_every_digit(demo_cwd, monkeypatch):
    from mmdet.apis import DetInferencer

    import mmeffattn  # noqa: F401
    monkeypatch.chdir(demo_cwd)
    root = osp.join('data', 'demo', 'det')
    coco = json.load(open(osp.join(root, 'annotations',
                                   'instances_val.json')))
    image = coco['images'][0]
    label_of = {c['id']: i for i, c in enumerate(coco['categories'])}
    gts = [(label_of[a['category_id']],
            [a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
             a['bbox'][1] + a['bbox'][3]])
           for a in coco['annotations'] if a['image_id'] == image['id']]
    assert gts
    inferencer = DetInferencer(model=RTDETR_CFG,
                               weights=published_checkpoint(RTDETR_NAME),
                               device='cpu')
    pred = inferencer(osp.join(root, 'val', image['file_name']),
                      no_save_vis=True)['predictions'][0]
    confident = [(label, box) for label, score, box in zip(
        pred['labels'], pred['scores'], pred['bboxes']) if score > 0.3]
    for label, box in gts:
        assert any(pl == label and _iou(pb, box) > 0.5
                   for pl, pb in confident), (label, box, confident)
