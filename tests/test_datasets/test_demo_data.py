import os.path as osp

import numpy as np

from mmeffattn.datasets import CLASSES, load_digits_split


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
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
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
    assert len(ds) == 16    # twice the detection canvases
    import cv2
    seg = cv2.imread(ds[0]['seg_map_path'], cv2.IMREAD_UNCHANGED)
    img = cv2.imread(ds[0]['img_path'])
    assert seg.shape == img.shape[:2] == (64, 64)
    # background and filled digit silhouettes; no "other" (ignored) pixels
    assert seg.dtype == np.uint8 and set(np.unique(seg)) <= set(range(1, 12))
    assert (seg == 1).any() and (seg >= 2).any()


def test_digit_silhouette_thickens_the_ink():
    from mmeffattn.datasets.demo_data import (_resize, digit_silhouette,
                                              load_digits_split)
    images, _ = load_digits_split()['val']
    for img in images[:20]:
        ink = np.clip(_resize(img, 32), 0, 1)
        blob = digit_silhouette(ink)
        assert blob[ink > 0.5].all()                 # covers the strokes
        assert blob.sum() > 1.2 * (ink > 0.35).sum()  # and more: a region
    assert not digit_silhouette(np.zeros((8, 8), np.float32)).any()
