# A small RT-DETR on the embedded COCO-format digits (128x128 canvases, ~2.4
# digits each): ResNet-18-vd of base width 16 from scratch, HybridEncoder
# width 64 (AIFI on S5, one RepVGG block per CSP layer), 3 decoder layers,
# 30 queries, 20 denoising queries. The loss, matcher and query selection are
# the full model's. AdamW 1e-3 (no backbone multiplier: nothing is
# pretrained), EMA as the full recipe. The backbone stays mmdet's ResNetV1d
# (identity shortcut in layer1, unlike the official PResNet of the COCO
# configs) and the data the fixed-size digits: the published checkpoint was
# trained so.
_base_ = [
    '../rtdetr/rtdetr_r18vd_8xb2-72e_coco.py',
]

data_root = 'data/demo/det/'
metainfo = dict(classes=tuple(str(i) for i in range(10)))
image_size = (128, 128)
hidden = 64

model = dict(
    num_queries=30,
    data_preprocessor=dict(batch_augments=None),
    backbone=dict(type='ResNetV1d', depth=18, base_channels=16,
                  frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False, init_cfg=None),
    neck=[
        dict(type='mmeffattn.HybridEncoder',
             in_channels=[32, 64, 128],
             hidden_dim=hidden,
             num_heads=4,
             ffn_dim=2 * hidden,
             expansion=0.5,
             depth_mult=0.34),
        dict(type='ChannelMapper',
             in_channels=[hidden] * 3,
             kernel_size=1,
             out_channels=hidden,
             act_cfg=None,
             norm_cfg=dict(type='BN', requires_grad=True),
             num_outs=3),
    ],
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=hidden, num_heads=4),
            cross_attn_cfg=dict(embed_dims=hidden, num_heads=4),
            ffn_cfg=dict(embed_dims=hidden,
                         feedforward_channels=4 * hidden))),
    bbox_head=dict(num_classes=10, embed_dims=hidden),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=20)),
    test_cfg=dict(max_per_img=30))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
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
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=8),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(_delete_=True,
                       custom_keys={'backbone': dict(lr_mult=1.0)},
                       norm_decay_mult=0.0))
max_epochs = 24
train_cfg = dict(max_epochs=max_epochs, val_interval=8)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs,
         milestones=[20], gamma=0.1),
]
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002,
         gamma=200, update_buffers=True, priority=49)
]
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=8, max_keep_ckpts=1))
randomness = dict(seed=0)
