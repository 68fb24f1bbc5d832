# RT-DETR-R50 (Lv et al., CVPR 2024) on mmdet 3.3's DINO machinery:
# ResNet-50-vd (mmeffattn.PResNet, the official PResNet layout),
# HybridEncoder (AIFI on S5 + CCFM), 300 queries chosen from the encoder by
# class score, 6 post-norm deformable decoder layers, 100 denoising queries,
# IoU-aware varifocal loss. Recipe as the official rtdetr_r50vd_6x_coco.yml:
# AdamW 1e-4 (backbone x0.1, stem and BN frozen), weight decay 1e-4 except
# encoder/decoder biases and norm gains, gradient clip 0.1, constant lr (no
# warm-up), EMA 0.9999 with a 2000-iteration ramp, 72 epochs, SyncBN, one
# size in 480..800 per batch, 640 test. See docs/rtdetr.md.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/default_runtime.py',
]

model = dict(
    type='mmeffattn.RTDETR',
    num_queries=300,
    num_feature_levels=3,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        # the official multi-scale: one square size per batch, the images
        # (640x640 from the pipeline) resized together, so nothing is padded
        batch_augments=[
            dict(type='BatchSyncRandomResize', random_size_range=(480, 800),
                 size_divisor=32, interval=1)
        ]),
    backbone=dict(
        type='mmeffattn.PResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=0,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        # official: freeze_at=0 (stem), freeze_norm=True (every BN); the
        # ImageNet ResNet-50-vd is mmpretrain's (the official code starts
        # from Paddle's; see docs/rtdetr.md)
        init_cfg=dict(
            type='Pretrained',
            prefix='backbone.',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/'
            'resnet/resnetv1d50_b32x8_imagenet_20210531-db14775a.pth')),
    # the official run converts every trainable BN to SyncBN (sync_bn: True);
    # mmengine turns SyncBN back into BN when training is not distributed
    neck=[
        dict(type='mmeffattn.HybridEncoder',
             in_channels=[512, 1024, 2048],
             hidden_dim=256,
             ffn_dim=1024,
             expansion=1.0,
             norm_cfg=dict(type='SyncBN', requires_grad=True)),
        # the decoder's per-level input projection (1x1 conv + BN)
        dict(type='ChannelMapper',
             in_channels=[256, 256, 256],
             kernel_size=1,
             out_channels=256,
             act_cfg=None,
             norm_cfg=dict(type='SyncBN', requires_grad=True),
             num_outs=3),
    ],
    encoder=None,
    decoder=dict(
        num_layers=6,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.0),
            cross_attn_cfg=dict(embed_dims=256, num_heads=8, num_levels=3,
                                num_points=4, dropout=0.0),
            ffn_cfg=dict(embed_dims=256, feedforward_channels=1024,
                         ffn_drop=0.0)),
        post_norm_cfg=None),
    bbox_head=dict(
        type='mmeffattn.RTDETRHead',
        num_classes=80,
        sync_cls_avg_factor=True,
        loss_cls=dict(type='mmeffattn.RTDETRVarifocalLoss', alpha=0.75,
                      gamma=2.0, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0, alpha=0.25, gamma=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=300))

# RT-DETR's augmentation with mmdet transforms: photometric distortion, zoom
# out, IoU crop, flip, a 640x640 resize; the data preprocessor then resizes
# each batch to one square size in 480..800 (step 32)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PhotoMetricDistortion'),
    dict(type='Expand', mean=[123.675, 116.28, 103.53], to_rgb=True,
         ratio_range=(1, 4), prob=0.5),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),
         min_crop_size=0.3),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(640, 640), keep_ratio=False),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(640, 640), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=2,
    dataset=dict(filter_cfg=dict(filter_empty_gt=False),
                 pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# official parameter groups: backbone lr x0.1; no weight decay on encoder /
# decoder biases and on the norm gains whose official names contain "norm"
# (the HybridEncoder's input BN and enc_output's LayerNorm are decayed)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'neck.0.input_proj.0.bn.weight': dict(decay_mult=1.0),
            'neck.0.input_proj.1.bn.weight': dict(decay_mult=1.0),
            'neck.0.input_proj.2.bn.weight': dict(decay_mult=1.0),
            'memory_trans_norm.weight': dict(decay_mult=1.0),
            # attention biases are not named "bias" (bias_decay_mult misses
            # them)
            'in_proj_bias': dict(decay_mult=0.0),
        },
        norm_decay_mult=0.0,
        bias_decay_mult=0.0))
max_epochs = 72
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# the official MultiStepLR milestone (epoch 1000) is never reached
param_scheduler = []
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001,
         gamma=2000, update_buffers=True, priority=49)
]
auto_scale_lr = dict(base_batch_size=16)

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
