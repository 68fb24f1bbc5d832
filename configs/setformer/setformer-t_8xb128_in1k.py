# SeTformer-T on ImageNet-1k. The paper's recipe is unknown: we use the Swin
# recipe it is compared with (AdamW lr 1e-3 for batch 1024, wd 0.05, 300
# epochs cosine with 20 warm-up epochs, RandAugment/Mixup/CutMix/label
# smoothing), no weight decay on norms, biases, SeT references, Nystrom
# anchors and positional sigmas. See docs/setformer.md.
_base_ = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SeTformer',
        arch='tiny',
        drop_path_rate=0.1),
    head=dict(in_channels=512))

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '.refs': dict(decay_mult=0.0),
            '.anchors': dict(decay_mult=0.0),
            '.pos_log_sigma': dict(decay_mult=0.0),
        }))

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
