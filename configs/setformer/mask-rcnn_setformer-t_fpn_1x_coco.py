# Mask R-CNN with a SeTformer-T backbone initialised from the ImageNet
# classifier (publish it to `checkpoints/`), the Swin detection recipe
# (AdamW lr 1e-4, wd 0.05, 1x schedule).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

checkpoint = 'checkpoints/setformer-t_8xb128_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SeTformer',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                      prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            '.refs': dict(decay_mult=0.0),
            '.anchors': dict(decay_mult=0.0),
            '.pos_log_sigma': dict(decay_mult=0.0),
        }))

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
