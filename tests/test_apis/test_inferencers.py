"""The OpenMMLab inferencers run our demo configs with the published
checkpoints, and their predictions are right on a val image; the documented
two-inferencer pattern works in one process."""
import json
import os.path as osp

import pytest
from helpers import DEMO, published_checkpoint

pytest.importorskip('mmdet')

RTDETR_NAME = 'rtdetr_r18vd-demo_1xb8-24e_digits'
RTDETR_CFG = osp.join(DEMO, RTDETR_NAME + '.py')


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


def _iou(a, b):
    ix = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


def test_det_inferencer_rtdetr_finds_every_digit(demo_cwd, monkeypatch):
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


def test_two_inferencers_in_one_process():
    """An inferencer of another toolbox (MMSegInferencer, DetInferencer)
    leaves its default scope; the pattern of docs/get_started.md builds
    mmpretrain's next to it."""
    import numpy as np
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
