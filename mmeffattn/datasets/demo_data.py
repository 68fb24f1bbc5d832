"""Embedded demo data: three real-format datasets from scikit-learn's digits.

scikit-learn ships the UCI handwritten digits (1,797 real 8x8 scans, 10
classes).
:func:`generate_demo_data` turns them, deterministically, into

* ``cls/``: ImageNet-style classification (``train/<class>/*.png``,
  ``val/<class>/*.png``, ``meta/{train,val}.txt`` with ``path label`` lines,
  ``meta/classes.txt``) for mmpretrain's ``CustomDataset``/``ImageNet``;
* ``det/``: canvases with several scaled, tinted digits and COCO json
  (``annotations/instances_{train,val}.json``: boxes, RLE instance masks) for
  mmdet's ``CocoDataset`` and ``CocoMetric``;
* ``seg/``: smaller canvases (64x64, one or two digits of 24-40 px, about the
  classifier's digit size) in ADE20K layout (``images/{training,validation}``
  JPEGs, ``annotations/{training,validation}`` PNG label maps, 1 = background,
  2..11 = digits 0..9; 0 = "other", ignored as in ADE20K, is not used) for
  mmseg. A digit's label is its silhouette (the ink blurred by a Gaussian of
  a tenth of the digit's size, above 30 % of its peak: strokes thickened and
  small gaps closed), not its thin strokes: a region, as ADE20K's objects
  are, that a stride-4 decoder can draw.

Train and validation use disjoint source digits (a fixed 80/20 split).
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List, Sequence, Tuple

import numpy as np

CLASSES = tuple(str(i) for i in range(10))
SEG_CLASSES = ('background', ) + tuple(f'digit_{i}' for i in range(10))
SEG_PALETTE = [[0, 0, 0]] + [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256]
                             for i in range(1, 11)]
VAL_FRACTION = 0.2


def load_digits_split(
        seed: int = 0) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Digits as float images in [0, 1], split into disjoint train / val.

    Returns:
        dict: ``split -> (images (N, 8, 8) float32, labels (N,) int64)``.
    """
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    order = np.random.RandomState(seed).permutation(len(labels))
    num_val = int(round(len(labels) * VAL_FRACTION))
    val_idx, train_idx = np.sort(order[:num_val]), np.sort(order[num_val:])
    return dict(train=(images[train_idx], labels[train_idx]),
                val=(images[val_idx], labels[val_idx]))


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def _write_png(path: str, array: np.ndarray) -> None:
    import cv2
    if not cv2.imwrite(path, array):
        raise OSError(f'could not write image {path}')


def _make_classification(root: str, splits, image_size: int,
                         limits: Dict[str, int]) -> None:
    os.makedirs(osp.join(root, 'meta'))
    with open(osp.join(root, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(CLASSES) + '\n')
    for split, (images, labels) in splits.items():
        lines = []
        for idx, (img, label) in enumerate(
                zip(images[:limits[split]], labels[:limits[split]])):
            rel = f'{split}/{label}/{split}_{idx:05d}.png'
            os.makedirs(osp.join(root, split, str(label)), exist_ok=True)
            gray = np.clip(_resize(img, image_size) * 255, 0, 255)
            _write_png(osp.join(root, rel),
                       np.repeat(gray.astype(np.uint8)[..., None], 3, -1))
            lines.append(f'{rel} {label}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


def _place_digits(rng, images, labels, canvas_size: int,
                  digit_range: Tuple[int, int], max_digits: int):
    """One canvas: (RGB uint8 (S, S, 3), instances [(label, intensity
    map)])."""
    canvas = rng.uniform(0, 40, (canvas_size, canvas_size, 3))
    occupied = np.zeros((canvas_size, canvas_size), bool)
    instances = []
    for _ in range(rng.randint(1, max_digits + 1)):
        for _attempt in range(20):
            size = rng.randint(digit_range[0], digit_range[1] + 1)
            y, x = rng.randint(0, canvas_size - size + 1, 2)
            if not occupied[y:y + size, x:x + size].any():
                break
        else:
            continue
        k = rng.randint(len(labels))
        inten = np.clip(_resize(images[k], size), 0, 1)
        full = np.zeros((canvas_size, canvas_size), np.float32)
        full[y:y + size, x:x + size] = inten
        occupied[y:y + size, x:x + size] = True
        tint = rng.uniform(0.6, 1.0, 3) * 255
        canvas = canvas * (1 - full[..., None]) + full[..., None] * tint
        instances.append((int(labels[k]), full))
    return np.clip(canvas, 0, 255).astype(np.uint8), instances


def _make_detection(det_root: str, splits, canvas_size: int,
                    counts: Dict[str, int], seed: int) -> None:
    from pycocotools import mask as mask_utils
    os.makedirs(osp.join(det_root, 'annotations'))
    for split, (images, labels) in splits.items():
        rng = np.random.RandomState(seed + (0 if split == 'train' else 1))
        img_dir = osp.join(det_root, f'{split}')
        os.makedirs(img_dir)
        coco = dict(images=[], annotations=[],
                    categories=[dict(id=i + 1, name=c)
                                for i, c in enumerate(CLASSES)])
        for img_id in range(counts[split]):
            canvas, instances = _place_digits(
                rng, images, labels, canvas_size,
                (canvas_size // 6, canvas_size // 2), 4)
            name = f'{split}_{img_id:05d}'
            _write_png(osp.join(img_dir, name + '.png'), canvas[..., ::-1])
            coco['images'].append(dict(id=img_id, file_name=name + '.png',
                                       width=canvas_size, height=canvas_size))
            for label, inten in instances:
                mask = np.asfortranarray((inten > 0.35).astype(np.uint8))
                ys, xs = np.nonzero(mask)
                if len(ys) == 0:
                    continue
                rle = mask_utils.encode(mask)
                rle['counts'] = rle['counts'].decode('ascii')
                x0, y0 = int(xs.min()), int(ys.min())
                coco['annotations'].append(dict(
                    id=len(coco['annotations']) + 1, image_id=img_id,
                    category_id=label + 1, iscrowd=0,
                    bbox=[x0, y0, int(xs.max()) - x0 + 1,
                          int(ys.max()) - y0 + 1],
                    area=int(mask.sum()), segmentation=rle))
        with open(osp.join(det_root, 'annotations',
                           f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)


def digit_silhouette(intensity: np.ndarray) -> np.ndarray:
    """(S, S) ink intensity of one placed digit -> (S, S) bool silhouette:
    the ink blurred by a Gaussian of a tenth of the digit's extent, above
    30 % of its peak (strokes thickened, small gaps closed; large holes, as
    a 0's, may stay). Empty if there is no ink."""
    import cv2
    ys, xs = np.nonzero(intensity > 0.35)
    if len(ys) == 0:
        return np.zeros(intensity.shape, bool)
    extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    blob = cv2.GaussianBlur(intensity, (0, 0), extent / 10.0)
    return blob > 0.3 * blob.max()


def _make_segmentation(seg_root: str, splits, canvas_size: int,
                       counts: Dict[str, int], seed: int) -> None:
    seg_dirs = dict(train='training', val='validation')
    digit_range = (canvas_size * 3 // 8, canvas_size * 5 // 8)
    for split, (images, labels) in splits.items():
        rng = np.random.RandomState(seed + (2 if split == 'train' else 3))
        img_dir = osp.join(seg_root, 'images', seg_dirs[split])
        ann_dir = osp.join(seg_root, 'annotations', seg_dirs[split])
        for d in (img_dir, ann_dir):
            os.makedirs(d)
        for img_id in range(counts[split]):
            canvas, instances = _place_digits(rng, images, labels,
                                              canvas_size, digit_range, 2)
            name = f'{split}_{img_id:05d}'
            seg_map = np.ones((canvas_size, canvas_size), np.uint8)
            for label, inten in instances:
                seg_map[digit_silhouette(inten)] = label + 2
            _write_png(osp.join(img_dir, name + '.jpg'), canvas[..., ::-1])
            _write_png(osp.join(ann_dir, name + '.png'), seg_map)


def generate_demo_data(out_dir: str,
                       cls_image_size: int = 32,
                       canvas_size: int = 128,
                       num_det_train: int = 400,
                       num_det_val: int = 100,
                       seg_canvas_size: int = 64,
                       num_seg_train: int = None,
                       num_seg_val: int = None,
                       max_cls_train: int = None,
                       max_cls_val: int = None,
                       seed: int = 0,
                       overwrite: bool = False) -> str:
    """Write ``cls/``, ``det/`` and ``seg/`` under ``out_dir``.

    Writing happens in a temporary sibling folder that is renamed into place
    at the end, so an interrupted run leaves nothing half written.

    Returns:
        str: ``out_dir``.
    """
    out_dir = osp.abspath(out_dir)
    if osp.exists(out_dir) and not overwrite:
        raise FileExistsError(
            f'demo data folder {out_dir} exists; pass overwrite=True '
            '(--overwrite) to replace it')
    parent = osp.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    splits = load_digits_split(seed)
    tmp = tempfile.mkdtemp(prefix='.demo-data-', dir=parent)
    try:
        limits = dict(train=max_cls_train or len(splits['train'][1]),
                      val=max_cls_val or len(splits['val'][1]))
        _make_classification(osp.join(tmp, 'cls'), splits, cls_image_size,
                             limits)
        _make_detection(osp.join(tmp, 'det'), splits, canvas_size,
                        dict(train=num_det_train, val=num_det_val), seed)
        # segmentation: twice as many (smaller) canvases as detection
        _make_segmentation(
            osp.join(tmp, 'seg'), splits, seg_canvas_size,
            dict(train=num_seg_train or 2 * num_det_train,
                 val=num_seg_val or 2 * num_det_val), seed)
        with open(osp.join(tmp, 'README.txt'), 'w') as f:
            f.write(__doc__)
        if osp.exists(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def check_data_root(data_root: str, required: Sequence[str] = ()) -> None:
    """Raise one clear error if a dataset root (or a file in it) is missing."""
    if not osp.isdir(data_root):
        raise FileNotFoundError(
            f'data root {data_root!r} does not exist; generate the embedded '
            'demo data with `python tools/misc/make_demo_data.py` (or '
            '`make data`), or point data_root at your dataset')
    missing: List[str] = [p for p in required
                          if not osp.exists(osp.join(data_root, p))]
    if missing:
        raise FileNotFoundError(
            f'data root {data_root!r} lacks {missing}')
