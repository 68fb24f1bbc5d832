# RT-DETR-R101: ResNet-101-vd, hybrid encoder of width 384 with a 2048-wide
# AIFI FFN (projected to the decoder's 256); otherwise the R50 recipe, with
# the official R101 changes (rtdetr_r101vd_6x_coco.yml): backbone lr x0.01,
# and its parameter groups replace the R50 ones, so every other parameter
# (biases and norms included) has weight decay 1e-4.
_base_ = './rtdetr_r50vd_8xb2-72e_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/'
            'resnet/resnetv1d101_b32x8_imagenet_20210531-6e13bcd3.pth')),
    neck=[
        dict(type='mmeffattn.HybridEncoder',
             in_channels=[512, 1024, 2048],
             hidden_dim=384,
             ffn_dim=2048,
             expansion=1.0,
             norm_cfg=dict(type='SyncBN', requires_grad=True)),
        dict(type='ChannelMapper',
             in_channels=[384, 384, 384],
             kernel_size=1,
             out_channels=256,
             act_cfg=None,
             norm_cfg=dict(type='SyncBN', requires_grad=True),
             num_outs=3),
    ],
)
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True, custom_keys={'backbone': dict(lr_mult=0.01)}))
