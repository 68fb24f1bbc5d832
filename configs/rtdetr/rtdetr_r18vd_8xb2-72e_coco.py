# RT-DETR-R18: ResNet-18-vd, hybrid encoder with CSP expansion 0.5, 3
# decoder layers; otherwise the R50 recipe, with the official R18 changes
# (rtdetr_r18vd_6x_coco.yml): nothing frozen, the backbone's BN trains
# (SyncBN, lr x0.1 and no weight decay, as the rest of the backbone's lr).
_base_ = './rtdetr_r50vd_8xb2-72e_coco.py'

model = dict(
    # no ResNet-18-vd on the OpenMMLab hub: the v1c weights (deep stem, no
    # average-pool shortcut) load into all but the 3 strided shortcut convs
    # and layer1's 64->64 shortcut, which start fresh
    backbone=dict(
        depth=18,
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(prefix=None, checkpoint='open-mmlab://resnet18_v1c')),
    neck=[
        dict(type='mmeffattn.HybridEncoder',
             in_channels=[128, 256, 512],
             hidden_dim=256,
             ffn_dim=1024,
             expansion=0.5,
             norm_cfg=dict(type='SyncBN', requires_grad=True)),
        dict(type='ChannelMapper',
             in_channels=[256, 256, 256],
             kernel_size=1,
             out_channels=256,
             act_cfg=None,
             norm_cfg=dict(type='SyncBN', requires_grad=True),
             num_outs=3),
    ],
    decoder=dict(num_layers=3))

# the backbone's norms (stem, bn1/bn2 of every block, shortcut BN): backbone
# lr, no weight decay (mmengine tries longer keys first: these outrank
# 'backbone')
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'backbone.stem.1.': dict(lr_mult=0.1, decay_mult=0.0),
            'backbone.stem.4.': dict(lr_mult=0.1, decay_mult=0.0),
            'backbone.stem.7.': dict(lr_mult=0.1, decay_mult=0.0),
            '.bn1.weight': dict(lr_mult=0.1, decay_mult=0.0),
            '.bn1.bias': dict(lr_mult=0.1, decay_mult=0.0),
            '.bn2.weight': dict(lr_mult=0.1, decay_mult=0.0),
            '.bn2.bias': dict(lr_mult=0.1, decay_mult=0.0),
            '.downsample.2.': dict(lr_mult=0.1, decay_mult=0.0),
        }))
