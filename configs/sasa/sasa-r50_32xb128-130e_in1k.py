# Full-attention SASA-ResNet-50 (attention stem) on ImageNet-1k, the paper's
# recipe (App. A.2): 130 epochs, Nesterov, lr 1.6 for batch 4096 (32 GPUs x
# 128, the paper's 32 images per TPU core x 4; fits an 80 GB GPU, see
# README), 10-epoch linear warm-up then cosine per iteration, BN decay 0.9999
# and a 0.9999 EMA of weights. Fewer GPUs: `--auto-scale-lr`.
# Not given in the paper (our choice): weight decay 1e-4, standard
# RandomResizedCrop 224 + flip augmentation (mmpretrain imagenet_bs64).
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    'mmpretrain::_base_/datasets/imagenet_bs64.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SASAResNet',
        depth=50,
        stem='attention',
        kernel_size=7,
        num_heads=8,
        out_indices=(3, ),
        # TF's BN decay 0.9999 is PyTorch momentum 1e-4
        norm_cfg=dict(type='BN', momentum=1e-4)))

train_dataloader = dict(batch_size=128)

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=1.6, momentum=0.9, nesterov=True,
                   weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=120, by_epoch=True, begin=10,
         end=130, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=130, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=4096)
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
