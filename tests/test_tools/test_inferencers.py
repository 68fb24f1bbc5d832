"""The OpenMMLab inferencers run our demo configs with the published
checkpoints, and their predictions are right on a val image."""
import json
import os.path as osp

import pytest
from conftest import DEMO, published_checkpoint

pytest.importorskip('mmdet')


def test_image_classification_inferencer(demo_cwd):
    from mmengine.registry import init_default_scope
    from mmpretrain import ImageClassificationInferencer

    import mmeffattn  # noqa: F401
    init_default_scope('mmpretrain')  # earlier tests may leave mmdet's
    name = 'sasa-r26-demo_1xb64-20e_digits'
    inferencer = ImageClassificationInferencer(
        osp.join(DEMO, name + '.py'), pretrained=published_checkpoint(name),
        device='cpu')
    root = osp.join(demo_cwd, 'data', 'demo', 'cls')
    lines = open(osp.join(root, 'meta', 'val.txt')).read().split('\n')[:20]
    paths, labels = zip(*(line.split() for line in lines))
    results = inferencer([osp.join(root, p) for p in paths], batch_size=10)
    correct = sum(r['pred_label'] == int(label)
                  for r, label in zip(results, labels))
    assert correct >= 18, (correct, 'of 20')   # the demo: 98.6 % top-1


def test_det_inferencer_retinanet(demo_cwd, monkeypatch):
    from mmdet.apis import DetInferencer

    import mmeffattn  # noqa: F401
    monkeypatch.chdir(demo_cwd)    # the config's backbone init path
    name = 'retinanet_sasa-r26-demo_fpn_1xb8-16e_digits'
    inferencer = DetInferencer(model=osp.join(DEMO, name + '.py'),
                               weights=published_checkpoint(name),
                               device='cpu')
    root = osp.join('data', 'demo', 'det')
    coco = json.load(open(osp.join(root, 'annotations',
                                   'instances_val.json')))
    image = coco['images'][0]
    label_of = {c['id']: i for i, c in enumerate(coco['categories'])}
    gts = [label_of[a['category_id']] for a in coco['annotations']
           if a['image_id'] == image['id']]
    pred = inferencer(osp.join(root, 'val', image['file_name']),
                      no_save_vis=True)['predictions'][0]
    top = [label for label, score in zip(pred['labels'], pred['scores'])
           if score > 0.5]
    assert sorted(top) == sorted(gts), (top, gts)


def test_mmseg_inferencer_upernet(demo_cwd, monkeypatch):
    import cv2
    import numpy as np
    from mmseg.apis import MMSegInferencer

    import mmeffattn  # noqa: F401
    monkeypatch.chdir(demo_cwd)    # the config's backbone init path
    name = 'upernet_sasa-r26-demo_1xb16-1500iter_digits-64x64'
    inferencer = MMSegInferencer(model=osp.join(DEMO, name + '.py'),
                                 weights=published_checkpoint(name),
                                 device='cpu')
    root = osp.join('data', 'demo', 'seg')
    image = osp.join(root, 'images', 'validation', 'val_00000.jpg')
    gt = cv2.imread(osp.join(root, 'annotations', 'validation',
                             'val_00000.png'), cv2.IMREAD_UNCHANGED)
    gt = gt.astype(np.int64) - 1    # reduce_zero_label: 0 = background
    pred = inferencer(image)['predictions']
    assert pred.shape == gt.shape
    # every digit on the canvas is found, as itself, and nothing else
    classes = [c for c in np.unique(pred) if c > 0 and (pred == c).sum() > 20]
    assert sorted(classes) == sorted(c for c in np.unique(gt) if c > 0), (
        classes, np.unique(gt))
    digits = gt > 0
    assert (pred[digits] == gt[digits]).mean() > 0.8
    assert (pred[~digits] == 0).mean() > 0.9


def test_seg_demo_figure_tool(demo_cwd, tmp_path):
    import cv2
    from conftest import TOOLS, run_tool
    name = 'upernet_sasa-r26-demo_1xb16-1500iter_digits-64x64'
    out = str(tmp_path / 'fig.png')
    run_tool([osp.join(TOOLS, 'analysis_tools', 'seg_demo_figure.py'),
              osp.join(DEMO, name + '.py'), published_checkpoint(name),
              '--num', '2', '--scale', '1', '--out', out], demo_cwd)
    assert cv2.imread(out).shape == (2 * 64, 3 * 64, 3)
    bad = run_tool([osp.join(TOOLS, 'analysis_tools', 'seg_demo_figure.py'),
                    osp.join(DEMO, name + '.py'), 'nowhere.pth', '--out',
                    out], demo_cwd, check=False)
    assert bad.returncode == 2 and 'nowhere.pth' in bad.stderr
