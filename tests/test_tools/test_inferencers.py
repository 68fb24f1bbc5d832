"""The OpenMMLab inferencers run our demo configs with the published
checkpoints, and their predictions are right on a val image."""
import glob
import json
import os.path as osp

import numpy as np
import pytest

from conftest import DEMO, REPO

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')


def _ckpt(name):
    found = glob.glob(osp.join(REPO, 'checkpoints', 'demo', f'{name}_*.pth'))
    assert len(found) == 1, f'no published checkpoint for {name}'
    return found[0]


def test_image_classification_inferencer(demo_cwd):
    from mmpretrain import ImageClassificationInferencer
    import mmeffattn  # noqa: F401
    name = 'sasa-r26-demo_1xb64-20e_digits'
    inferencer = ImageClassificationInferencer(
        osp.join(DEMO, name + '.py'), pretrained=_ckpt(name), device='cpu')
    root = osp.join(demo_cwd, 'data', 'demo', 'cls')
    lines = open(osp.join(root, 'meta', 'val.txt')).read().split('\n')[:4]
    for line in lines:
        path, label = line.split()
        result = inferencer(osp.join(root, path))[0]
        assert result['pred_label'] == int(label), (path, result)


def test_det_inferencer_retinanet(demo_cwd, monkeypatch):
    from mmdet.apis import DetInferencer
    import mmeffattn  # noqa: F401
    monkeypatch.chdir(demo_cwd)    # the config's backbone init path
    name = 'retinanet_sasa-r26-demo_fpn_1xb8-16e_digits'
    inferencer = DetInferencer(model=osp.join(DEMO, name + '.py'),
                               weights=_ckpt(name), device='cpu')
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


def test_mmseg_inferencer(demo_cwd, monkeypatch):
    from mmseg.apis import MMSegInferencer
    import mmcv
    import mmeffattn  # noqa: F401
    monkeypatch.chdir(demo_cwd)
    name = 'upernet_sasa-r26-demo_1xb8-800_digits-128x128'
    inferencer = MMSegInferencer(model=osp.join(DEMO, name + '.py'),
                                 weights=_ckpt(name), device='cpu')
    root = osp.join('data', 'demo', 'seg')
    image = osp.join(root, 'images', 'validation', 'val_00000.jpg')
    truth = mmcv.imread(osp.join(root, 'annotations', 'validation',
                                 'val_00000.png'), flag='unchanged')
    pred = inferencer(image)['predictions']       # (H, W), reduced labels
    digits = truth > 0                            # 0 = "other", ignored
    assert digits.any()
    accuracy = (pred[digits] == truth[digits] - 1).mean()
    assert accuracy > 0.8, accuracy
    assert set(np.unique(truth[digits] - 1)) <= set(np.unique(pred))
