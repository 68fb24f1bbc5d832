# A small SeTformer (1-1-2-1 blocks, 4 SeT references) on the embedded digits
# (ImageNet-style folders, 32x32): the SeT counterpart of the SASA demo.
_base_ = ['./sasa-r26-demo_1xb64-20e_digits.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SeTformer',
        arch=dict(embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
                  mlp_ratio=2),
        num_refs=4,
        drop_path_rate=0.0),
    head=dict(in_channels=256))

optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.refs': dict(decay_mult=0.0),
            '.anchors': dict(decay_mult=0.0),
            '.pos_log_sigma': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=2, end=30),
]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=10)
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=1))
