# SparseFormer-S on ImageNet-1k with the official recipe (Swin codebase):
# 300 epochs, batch 8 x 128, AdamW lr 5e-4 per 512 images (1e-3 here), 20
# warm-up epochs, gradient clip 5.0, EMA 0.9999, drop path 0.3; the Swin
# augmentations (RandAugment, Mixup, CutMix, label smoothing, random erasing).
_base_ = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SparseFormer',
        arch='small',
        drop_path_rate=0.3),
    neck=None,
    head=dict(in_channels=640))

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        '.token_embed': dict(decay_mult=0.0),
        '.token_roi': dict(decay_mult=0.0),
    }))
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
