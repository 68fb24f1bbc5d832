# UperNet with an AlterNet-50 backbone (from the ImageNet classifier, see
# alternet-50_8xb32_in1k.py), mmseg's 160k ADE20K schedule, 8 GPUs x 2 images.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'

checkpoint = 'checkpoints/alternet-50_8xb32_in1k.pth'
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmeffattn.AlterNet',
        depth=50,
        window_size=7,
        out_indices=(0, 1, 2, 3),
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                      prefix='backbone.')))
train_dataloader = dict(batch_size=2)

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
