"""Training memory of a config's model, measured on the CPU.

What a training step keeps on a GPU, by parts:

* **activations**: every tensor autograd saves for backward in the forward
  pass of the config's own model on a synthetic batch of the training input
  size (counted through ``torch.autograd.graph.saved_tensors_hooks``, once
  per storage, parameters excluded). Measured at batch 1 and 2 (2 and 4
  where train-mode BN needs 2 images): the difference per added image is
  the cost per image, the rest is fixed;
* **weights, gradients, optimizer state** (SGD momentum: 1 copy, Adam(W): 2)
  and one more copy for an ``EMAHook``, in the parameters' dtype.

Not counted: the transient buffers of backward (a few layers' worth), the
CUDA context and allocator slack; the 70 GB bar of configs/*/README.md leaves
10 GB of an 80 GB GPU for them. SASA's op keeps only q, k and v for
backward on both paths (the CPU kernel and the halo GEMMs recompute the
attention weights).
"""
from typing import Dict, Optional, Tuple

import torch

MIB = 2**20


def _hw(size, keep_ratio: bool) -> Tuple[int, int]:
    """(H, W) of a transform's size: an int, or mmcv's (w, h) scale, which
    with ``keep_ratio`` bounds the long and the short edge."""
    if isinstance(size, (int, float)):
        return int(size), int(size)
    if keep_ratio:
        return int(min(size)), int(max(size))
    return int(size[1]), int(size[0])


def _input_shape_from_pipeline(pipeline) -> Optional[Tuple[int, int]]:
    """(H, W) of the largest training input the pipeline produces."""
    shape = None
    for t in pipeline:
        typ, keep = t.get('type', ''), bool(t.get('keep_ratio', False))
        if typ == 'RandomResizedCrop':
            shape = _hw(t['scale'], False)
        elif typ in ('Resize', 'RandomResize') and t.get('scale'):
            shape = _hw(t['scale'], keep)
            if t.get('ratio_range'):
                shape = tuple(int(s * max(t['ratio_range'])) for s in shape)
        elif typ == 'RandomChoiceResize':
            shape = max((_hw(s, keep) for s in t['scales']),
                        key=lambda hw: hw[0] * hw[1])
        elif typ == 'CenterCrop':
            crop = t['crop_size']
            shape = (crop, crop) if isinstance(crop, int) else tuple(crop)
        elif typ == 'RandomCrop' and shape is not None:
            crop = t['crop_size']
            crop = (crop, crop) if isinstance(crop, int) else crop
            shape = (min(shape[0], int(crop[0])), min(shape[1], int(crop[1])))
        elif typ in ('RandomChoice', 'RandomApply'):
            for sub in t.get('transforms', []):
                sub_shape = _input_shape_from_pipeline(
                    sub if isinstance(sub, list) else [sub])
                if sub_shape and (shape is None or sub_shape[0] *
                                  sub_shape[1] > shape[0] * shape[1]):
                    shape = sub_shape
    return shape


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def _dataset_image_shape(dataset) -> Optional[Tuple[int, int]]:
    """(H, W) of the first image under the dataset's ``data_root`` (the
    images of a pipeline without resize go in at their own size), or of the
    embedded demo data's generator when that data is not written yet."""
    import os
    import os.path as osp
    root = str(dataset.get('data_root', '') or '')
    prefix = dataset.get('data_prefix', '')
    if isinstance(prefix, dict):
        prefix = prefix.get('img', prefix.get('img_path', ''))
    folder = osp.join(root, str(prefix or ''))
    if root and osp.isdir(folder):
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    from PIL import Image
                    with Image.open(osp.join(dirpath, name)) as img:
                        return img.height, img.width
    if 'demo/cls' in root.replace(os.sep, '/'):
        import inspect

        from mmeffattn.datasets.demo_data import generate_demo_data
        size = inspect.signature(generate_demo_data).parameters[
            'cls_image_size'].default
        return size, size
    return None


def config_input_shape(cfg, split: str = 'train') -> Tuple[int, int]:
    """The input size (H, W) of a config's ``train`` or ``test`` data: the
    crop of mmseg's data preprocessor, else the largest size the pipeline
    makes (mmdet's 1333 x 800 keep-ratio resize: H 800, W 1333), else (a
    pipeline that keeps the images' size) the size of the dataset's first
    image or, for the embedded demo digits not generated yet, their
    generator's size (32 x 32)."""
    size = cfg.model.get('data_preprocessor', {}).get('size')
    if size:  # mmseg pads/crops to a fixed size
        return int(size[0]), int(size[1])
    loader = cfg.get(f'{split}_dataloader', None) or cfg.get(
        'val_dataloader' if split == 'test' else 'test_dataloader', {}) or {}
    dataset = loader.get('dataset', {})
    while 'pipeline' not in dataset and 'dataset' in dataset:
        dataset = dataset.dataset  # wrappers (RepeatDataset, ...)
    shape = _input_shape_from_pipeline(dataset.get('pipeline', []))
    if shape is None:
        shape = _dataset_image_shape(dataset)
    if shape is None:
        raise ValueError(f'cannot infer the {split} input size of the '
                         'config (its pipeline keeps the images\' size and '
                         'its data_root has no image); pass --shape H W')
    return shape


def synthetic_batch(cfg, scope: str, model, batch_size: int,
                    height: int, width: int, seed: int = 0) -> dict:
    """A training batch of ``batch_size`` random images with targets."""
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    meta = dict(img_shape=(height, width), ori_shape=(height, width),
                scale_factor=(1.0, 1.0), flip=False, flip_direction=None)
    for _ in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, height, width),
                                    generator=gen, dtype=torch.uint8))
        if scope == 'mmdet':
            from mmdet.structures import DetDataSample
            from mmdet.structures.mask import BitmapMasks
            from mmengine.structures import InstanceData
            num = 8
            xy = torch.rand(num, 2, generator=gen) * torch.tensor(
                [width * 0.7, height * 0.7])
            wh = (torch.rand(num, 2, generator=gen) * 0.25 + 0.05) * \
                torch.tensor([width, height])
            boxes = torch.cat([xy, xy + wh], 1)
            inst = InstanceData(bboxes=boxes, labels=torch.randint(
                0, 10, (num, ), generator=gen))
            masks = torch.zeros(num, height, width, dtype=torch.uint8)
            for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
                masks[i, y0:y1, x0:x1] = 1
            inst.masks = BitmapMasks(masks.numpy(), height, width)
            sample = DetDataSample(metainfo=meta)
            sample.gt_instances = inst
            sample.ignored_instances = InstanceData(
                bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
        elif scope == 'mmseg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=dict(meta, pad_shape=(height,
                                                                  width)))
            sample.gt_sem_seg = PixelData(data=torch.randint(
                0, 10, (1, height, width), generator=gen))
        else:
            from mmpretrain.structures import DataSample
            sample = DataSample(metainfo=meta).set_gt_label(
                int(torch.randint(0, 10, (1, ), generator=gen)))
        samples.append(sample)
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples),
                                   True)


def saved_activation_bytes(model, data: dict) -> int:
    """Bytes autograd saves for backward in one training forward pass."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: Dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params:
            saved[ptr] = max(saved.get(ptr, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        losses = model(**data, mode='loss')
        total = sum(saved.values())
    del losses
    return total


def _saved(cfg, scope, model, bsz, height, width) -> int:
    data = synthetic_batch(cfg, scope, model, bsz, height, width)
    return saved_activation_bytes(model, data)


def _optimizer_copies(cfg) -> int:
    opt = cfg.get('optim_wrapper', {}).get('optimizer', {})
    typ = str(opt.get('type', 'SGD')).lower()
    if 'adam' in typ or 'lamb' in typ:
        return 2
    return 1 if opt.get('momentum', 0) else 0


def _has_ema(cfg) -> bool:
    return any('EMA' in str(h.get('type', ''))
               for h in cfg.get('custom_hooks', []) or [])


def training_memory(cfg, shape: Optional[Tuple[int, int]] = None,
                    batch_size: Optional[int] = None,
                    downscale: int = 1) -> dict:
    """Per-GPU training memory of ``cfg`` (see the module docstring).

    ``downscale`` > 1 measures at ``1/downscale`` of the input edge and
    scales the per-image activations by ``downscale**2``: exact for
    convolutions and attention linear in the pixels (SASA, SeT), an
    over-estimate for per-image work of fixed size (RoI heads); for inputs
    whose full-size measurement does not fit the host's memory.
    """
    from mmeffattn.utils.launch import build_config_model
    scope = cfg.get('default_scope', 'mmpretrain')
    full = shape or config_input_shape(cfg, 'train')
    height, width = (-(-s // downscale) for s in full)
    model = build_config_model(cfg)  # no init_weights: no pretrained file
    model.train()
    torch.manual_seed(0)
    try:
        small, act = 1, [_saved(cfg, scope, model, b, height, width)
                         for b in (1, 2)]
    except ValueError:  # train-mode BN of pooled 1x1 maps needs 2 images
        small, act = 2, [_saved(cfg, scope, model, b, height, width)
                         for b in (2, 4)]
    per_image = max(act[1] - act[0], 0) / small
    fixed_act = max(act[0] - small * per_image, 0)
    per_image *= downscale**2
    param_bytes = sum(p.numel() * p.element_size()
                      for p in model.parameters())
    grad_bytes = sum(p.numel() * p.element_size()
                     for p in model.parameters() if p.requires_grad)
    copies = _optimizer_copies(cfg) + int(_has_ema(cfg))
    state_bytes = param_bytes + grad_bytes + copies * grad_bytes
    batch = batch_size or cfg.train_dataloader.batch_size
    total = state_bytes + fixed_act + batch * per_image
    return dict(scope=scope, shape=tuple(full), downscale=downscale,
                batch_per_gpu=batch,
                params=sum(p.numel() for p in model.parameters()),
                act_per_image_mib=per_image / MIB,
                act_fixed_mib=fixed_act / MIB,
                state_mib=state_bytes / MIB,
                optimizer_copies=copies,
                total_gib=total / 2**30)
