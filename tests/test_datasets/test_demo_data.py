import json
import os
import os.path as osp

import numpy as np
import pytest

from mmeffattn.datasets import (CLASSES, generate_demo_data,
                                load_digits_split)


def test_split_is_disjoint_and_deterministic():
    a, b = load_digits_split(), load_digits_split()
    np.testing.assert_array_equal(a['train'][0], b['train'][0])
    train = {x.tobytes() for x in a['train'][0]}
    val = {x.tobytes() for x in a['val'][0]}
    # disjoint source scans (a few digits are exact duplicates in UCI)
    assert len(train & val) <= 2
    assert len(a['train'][1]) + len(a['val'][1]) == 1797


def test_formats(demo_cwd):
    root = osp.join(demo_cwd, 'data', 'demo')
    # ImageNet-style classification
    lines = open(osp.join(root, 'cls', 'meta', 'train.txt')).read().split()
    assert len(lines) == 2 * 128 and osp.isfile(osp.join(root, 'cls',
                                                         lines[0]))
    # COCO json, validated by pycocotools
    from pycocotools.coco import COCO
    from pycocotools import mask as mask_utils
    ann = osp.join(root, 'det', 'annotations', 'instances_val.json')
    coco = COCO(ann)
    assert len(coco.getImgIds()) == 8
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
        CLASSES)
    a = coco.loadAnns(coco.getAnnIds())[0]
    m = coco.annToMask(a)
    assert m.sum() == a['area'] and mask_utils.toBbox(
        mask_utils.encode(np.asfortranarray(m))).tolist() == a['bbox']
    # ADE20K-style segmentation, through mmseg's dataset class
    from mmseg.datasets import BaseSegDataset
    ds = BaseSegDataset(
        data_root=osp.join(root, 'seg'),
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
        metainfo=dict(classes=tuple(f'c{i}' for i in range(11))),
        lazy_init=False)
    assert len(ds) == 8
    import cv2
    seg = cv2.imread(ds[0]['seg_map_path'], cv2.IMREAD_UNCHANGED)
    assert seg.dtype == np.uint8 and set(np.unique(seg)) <= set(range(12))
    assert (seg == 1).any() and (seg >= 2).any()


def test_deterministic_and_refuses_overwrite(tmp_path):
    a = generate_demo_data(str(tmp_path / 'a'), num_det_train=2,
                           num_det_val=1, max_cls_train=3, max_cls_val=2)
    b = generate_demo_data(str(tmp_path / 'b'), num_det_train=2,
                           num_det_val=1, max_cls_train=3, max_cls_val=2)
    ja = json.load(open(osp.join(a, 'det/annotations/instances_train.json')))
    jb = json.load(open(osp.join(b, 'det/annotations/instances_train.json')))
    assert ja == jb
    with pytest.raises(FileExistsError, match='exists'):
        generate_demo_data(a)
    # nothing half-written is left beside the output
    assert sorted(os.listdir(tmp_path)) == ['a', 'b']
