# RT-DETR-R18: ResNet-18-vd, hybrid encoder with CSP expansion 0.5, 3
# decoder layers; otherwise the R50 recipe.
_base_ = './rtdetr_r50vd_8xb2-72e_coco.py'

model = dict(
    # no ResNet-18-vd on the OpenMMLab hub: the v1c weights (deep stem, no
    # average-pool shortcut) load into all but the 3 strided shortcut convs
    backbone=dict(
        depth=18,
        init_cfg=dict(prefix=None, checkpoint='open-mmlab://resnet18_v1c')),
    neck=[
        dict(type='mmeffattn.HybridEncoder',
             in_channels=[128, 256, 512],
             hidden_dim=256,
             ffn_dim=1024,
             expansion=0.5),
        dict(type='ChannelMapper',
             in_channels=[256, 256, 256],
             kernel_size=1,
             out_channels=256,
             act_cfg=None,
             norm_cfg=dict(type='BN', requires_grad=True),
             num_outs=3),
    ],
    decoder=dict(num_layers=3))
