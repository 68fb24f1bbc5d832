# RetinaNet with an AlterNet-50 backbone (window 7: maps the window does not
# divide are padded and masked), mmdet's 1x schedule. The backbone starts
# from the ImageNet classifier: no ImageNet AlterNet weights exist publicly,
# train alternet-50_8xb32_in1k.py and publish it to `checkpoints/` with
# tools/model_converters/publish_model.py.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

checkpoint = 'checkpoints/alternet-50_8xb32_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.AlterNet',
        depth=50,
        window_size=7,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                      prefix='backbone.')))

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
