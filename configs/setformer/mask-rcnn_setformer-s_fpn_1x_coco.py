_base_ = './mask-rcnn_setformer-t_fpn_1x_coco.py'

checkpoint = 'checkpoints/setformer-s_8xb128_in1k.pth'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                      prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]))
