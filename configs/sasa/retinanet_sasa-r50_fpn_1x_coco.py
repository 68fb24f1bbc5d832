# RetinaNet with an attention backbone only (conv FPN and head), mmdet's 1x
# schedule. The backbone starts from the ImageNet SASA-R50 classifier
# (publish it to `checkpoints/` with tools/model_converters/publish_model.py).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

checkpoint = 'checkpoints/sasa-r50_32xb128-130e_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SASAResNet',
        depth=50,
        stem='attention',
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                      prefix='backbone.')))

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
