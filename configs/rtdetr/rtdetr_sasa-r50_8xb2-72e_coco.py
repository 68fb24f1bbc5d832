# RT-DETR on a fully attentional SASA-ResNet-50 (strides 8/16/32: 512, 1024,
# 2048 channels), from the ImageNet classifier (publish it to `checkpoints/`
# with tools/model_converters/publish_model.py); stem frozen and BN in eval
# mode as RT-DETR-R50's backbone. The rest is RT-DETR-R50.
_base_ = './rtdetr_r50vd_8xb2-72e_coco.py'

checkpoint = 'checkpoints/sasa-r50_32xb128-130e_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SASAResNet',
        depth=50,
        stem='attention',
        out_indices=(1, 2, 3),
        frozen_stages=0,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                      prefix='backbone.')))

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
