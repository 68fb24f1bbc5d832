# RT-DETR on a SeTformer-T backbone (strides 8/16/32: 128, 256, 512
# channels), from the ImageNet classifier (publish it to `checkpoints/` with
# tools/model_converters/publish_model.py). The hybrid encoder, decoder and
# recipe are RT-DETR-R50's; the backbone's SeT parameters have no weight
# decay, as in its ImageNet recipe.
_base_ = './rtdetr_r50vd_8xb2-72e_coco.py'

checkpoint = 'checkpoints/setformer-t_8xb128_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SeTformer',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                      prefix='backbone.')),
    neck=[
        dict(type='mmeffattn.HybridEncoder',
             in_channels=[128, 256, 512],
             hidden_dim=256,
             ffn_dim=1024,
             expansion=1.0),
        dict(type='ChannelMapper',
             in_channels=[256, 256, 256],
             kernel_size=1,
             out_channels=256,
             act_cfg=None,
             norm_cfg=dict(type='BN', requires_grad=True),
             num_outs=3),
    ])
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'backbone': dict(lr_mult=0.1),
        '.refs': dict(decay_mult=0.0),
        '.anchors': dict(decay_mult=0.0),
        '.pos_log_sigma': dict(decay_mult=0.0),
    }))

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
