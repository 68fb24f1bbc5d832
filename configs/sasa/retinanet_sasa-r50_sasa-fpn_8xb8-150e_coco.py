# The paper's fully attentional RetinaNet (App. A.3): SASA backbone, FPN and
# heads (k=7, 8 heads; strided convs -> attention + 2x2 avg pool), batch 64,
# 150 epochs, lr linearly 0 -> 0.12 over 1 epoch then cosine, multiscale
# jitter, crop to 640, flip 0.5. Not in the paper (our choice): jitter range
# [0.8, 1.2] and weight decay 1e-4 (the TPU RetinaNet defaults).
_base_ = './retinanet_sasa-r50_fpn_1x_coco.py'

image_size = (640, 640)
model = dict(
    data_preprocessor=dict(pad_size_divisor=64),
    backbone=dict(frozen_stages=-1, norm_eval=False),
    neck=dict(type='mmeffattn.SASAFPN'),
    bbox_head=dict(type='mmeffattn.SASARetinaHead'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.2),
         keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(batch_size=8, num_workers=4,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 150
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.12, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.))  # as mmdet: no decay on BN
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True,
         begin=1, end=max_epochs, convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=64)

# `tools/test.py --tta`: the training scale and its jitter range, with flips
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug',
         transforms=[[dict(type='Resize', scale=s, keep_ratio=True)
                      for s in [(512, 512), (640, 640), (768, 768)]],
                     [dict(type='RandomFlip', prob=1.),
                      dict(type='RandomFlip', prob=0.)],
                     [dict(type='LoadAnnotations', with_bbox=True)],
                     [dict(type='PackDetInputs',
                           meta_keys=('img_id', 'img_path', 'ori_shape',
                                      'img_shape', 'scale_factor', 'flip',
                                      'flip_direction'))]])
]

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
