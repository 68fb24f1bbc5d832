# UperNet with a small SASA-ResNet-26 on the embedded ADE20K-style digits
# (64x64 canvases; label 0 = "other", ignored via reduce_zero_label, is not
# used; 11 classes). The backbone starts from the published SASA classifier.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'

data_root = 'data/demo/seg/'
crop_size = (64, 64)
metainfo = dict(
    classes=('background', ) + tuple(f'digit_{i}' for i in range(10)),
    palette=[[0, 0, 0]] + [[(37 * i) % 256, (91 * i) % 256,
                            (173 * i) % 256] for i in range(1, 11)])
norm_cfg = dict(type='BN', requires_grad=True)
# background covers ~80 % of the pixels: a tenth of a digit's weight
class_weight = [0.1] + [1.0] * 10

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
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
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=64,
                     num_classes=11, norm_cfg=norm_cfg,
                     loss_decode=dict(class_weight=class_weight)),
    auxiliary_head=dict(in_channels=256, channels=32, num_classes=11,
                        norm_cfg=norm_cfg,
                        loss_decode=dict(class_weight=class_weight)))

# digits are not mirror-symmetric: no flips
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
test_pipeline = train_pipeline
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png',
               reduce_zero_label=True)
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        **dataset,
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        **dataset,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW (as the detection demos) instead of the 160k-iteration SGD recipe
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=dict(max_norm=10))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=100, end=1500,
         by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1500,
                 val_interval=500)
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(type='mmeffattn.AtomicCheckpointHook',
                                     by_epoch=False, interval=500,
                                     max_keep_ckpts=1))
randomness = dict(seed=0)
# `tools/test.py --tta`: scales 0.75-1.25 of the 64x64 canvas (no flips)
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug',
         transforms=[[dict(type='Resize', scale_factor=r, keep_ratio=True)
                      for r in (0.75, 1.0, 1.25)],
                     [dict(type='LoadAnnotations', reduce_zero_label=True)],
                     [dict(type='PackSegInputs')]])
]
