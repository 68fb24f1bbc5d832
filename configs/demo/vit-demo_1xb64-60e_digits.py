# A small plain ViT (mmpretrain's VisionTransformer: 6 layers, 96 dims, 4x4
# patches, 64 tokens + cls) on the embedded digits, trained WITHOUT token
# merging: the off-the-shelf model of the ToMe sweep
# (tools/analysis_tools/tome_sweep.py), whose checkpoint loads unchanged into
# mmeffattn.ToMeVisionTransformer.
_base_ = ['./sasa-r26-demo_1xb64-20e_digits.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionTransformer',
        arch=dict(embed_dims=96, num_layers=6, num_heads=3,
                  feedforward_channels=192),
        img_size=32,
        patch_size=4,
        drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=10,
        in_channels=96,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ])

# small random shifts and scales: a ViT has no translation prior of its own
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.7, 1.0),
         aspect_ratio_range=(0.85, 1.15)),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

# the DeiT recipe, shortened: AdamW, warm-up, cosine, no decay on norms,
# biases, cls token and position embedding
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5, end=60),
]
train_cfg = dict(by_epoch=True, max_epochs=60, val_interval=20)
default_hooks = dict(checkpoint=dict(interval=20, max_keep_ckpts=1))
