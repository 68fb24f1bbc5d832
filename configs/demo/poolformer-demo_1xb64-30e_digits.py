# A small PoolFormer (mmpretrain's class: 1-1-2-1 blocks, 32-256 dims, pooling
# token mixer) on the embedded digits: the teacher of the RIFormer
# module-imitation demo.
_base_ = ['./sasa-r26-demo_1xb64-20e_digits.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='PoolFormer',
        arch=dict(layers=[1, 1, 2, 1], embed_dims=[32, 64, 128, 256],
                  mlp_ratios=[2, 2, 2, 2], layer_scale_init_value=1e-5),
        in_patch_size=3, in_stride=2, in_pad=1),   # 32x32 -> 16, 8, 4, 2
    head=dict(in_channels=256))

optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=2, end=30),
]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=10)
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=1))
