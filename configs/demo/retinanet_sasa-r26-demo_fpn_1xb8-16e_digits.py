# RetinaNet with a small SASA-ResNet-26 on the embedded COCO-format digits
# (128x128 canvases). The backbone starts from the published SASA demo
# classifier (same architecture, trained on single 32x32 digits); anchors
# from 16 px (octave base scale 2) fit the 16-40 px digits.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/digits_coco_detection.py',
    '../_base_/schedules/digits_det_12e.py',
    'mmdet::_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SASAResNet',
        depth=26,
        stem='attention',
        base_channels=16,
        kernel_size=5,
        num_heads=4,
        attn_scale='head_dim',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/demo/sasa-r26-demo_1xb64-20e_digits.pth',
            prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    bbox_head=dict(num_classes=10, in_channels=64, feat_channels=64,
                   stacked_convs=2,
                   anchor_generator=dict(octave_base_scale=2)))

# AdamW learns much faster here than the SGD of mmdet's 1x schedule
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=dict(max_norm=10))
train_cfg = dict(max_epochs=16, val_interval=4)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=16,
         milestones=[12, 15], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(type='mmeffattn.AtomicCheckpointHook',
                                     interval=4, max_keep_ckpts=1))
randomness = dict(seed=0)
tta_model = dict(
    type='DetTTAModel',
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug',
         transforms=[[dict(type='Resize', scale=s, keep_ratio=True)
                      for s in [(128, 128), (160, 160)]],
                     [dict(type='RandomFlip', prob=1.),
                      dict(type='RandomFlip', prob=0.)],
                     [dict(type='LoadAnnotations', with_bbox=True)],
                     [dict(type='PackDetInputs',
                           meta_keys=('img_id', 'img_path', 'ori_shape',
                                      'img_shape', 'scale_factor', 'flip',
                                      'flip_direction'))]])
]
