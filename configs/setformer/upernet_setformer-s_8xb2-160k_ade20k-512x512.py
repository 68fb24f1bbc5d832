_base_ = './upernet_setformer-t_8xb2-160k_ade20k-512x512.py'

checkpoint = 'checkpoints/setformer-s_8xb128_in1k.pth'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                      prefix='backbone.')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
