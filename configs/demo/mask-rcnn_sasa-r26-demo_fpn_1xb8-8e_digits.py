# Mask R-CNN with a small SASA-ResNet-26 on the embedded COCO-format digits
# (boxes + RLE instance masks; 128x128 canvases). The backbone starts from the
# published SASA demo classifier; RPN anchors from 16 px fit the digits.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/digits_coco_instance.py',
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
    rpn_head=dict(in_channels=64, feat_channels=64,
                  anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=10),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(num_convs=2, in_channels=64, conv_out_channels=64,
                       num_classes=10)),
    # a few digits per canvas: far fewer proposals and sampled RoIs than
    # COCO's (the RoI heads dominated the step time on 2 cores)
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(max_per_img=20)))

# AdamW learns much faster here than the SGD of mmdet's 1x schedule
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=dict(max_norm=10))
train_cfg = dict(max_epochs=8, val_interval=4)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=8,
         milestones=[6], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(type='mmeffattn.AtomicCheckpointHook',
                                     interval=4, max_keep_ckpts=1))
randomness = dict(seed=0)
