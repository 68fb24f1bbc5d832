# UperNet with a SeTformer-T backbone (from the ImageNet classifier), the
# Swin/NAT ADE20K recipe: AdamW lr 6e-5, wd 0.01, 1500-iter warm-up, poly,
# 160k iterations, 8 GPUs x 2 images.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'

checkpoint = 'checkpoints/setformer-t_8xb128_in1k.pth'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SeTformer',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                      prefix='backbone.')),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                   weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'norm': dict(decay_mult=0.0),
            '.refs': dict(decay_mult=0.0),
            '.anchors': dict(decay_mult=0.0),
            '.pos_log_sigma': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000,
         by_epoch=False),
]
train_dataloader = dict(batch_size=2)

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
