# SparseFormer-T on ImageNet-1k with the official recipe (Swin codebase):
# 300 epochs, batch 8 x 128, AdamW lr 5e-4 per 512 images (1e-3 here), 20
# warm-up epochs, gradient clip 5.0, EMA 0.9999, drop path 0.2; the Swin
# augmentations (RandAugment, Mixup, CutMix, label smoothing, random erasing).
# Weight decay 0.05 spares the 1-D parameters and the RoIs; the token
# embeddings are decayed, as officially.
_base_ = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SparseFormer',
        arch='tiny',
        drop_path_rate=0.2),
    neck=None,
    head=dict(in_channels=512))

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        '.token_roi': dict(decay_mult=0.0),
    }))
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
