# A narrow AlterNet-50 on the embedded digits, upsampled to 64x64: the same
# (3, 4, 6, 4) blocks and (0, 1, 3, 2) MSA blocks, base width 16, 16-channel
# heads (1, 2, 4, 8), window 4 (the authors' setting for small inputs). Stage
# maps are 16, 8, 4, 2 pixels: at the digits' own 32x32 the last stage's map
# is 1x1, where each window holds one key and its MSA cannot learn (its query
# weights and relative bias get exactly zero gradients).
_base_ = ['./poolformer-demo_1xb64-30e_digits.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.AlterNet',
        depth=50,
        base_channels=16,
        num_heads=(1, 2, 4, 8),
        head_dim=16,
        window_size=4),
    head=dict(in_channels=512))

pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64)),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=pipeline))
val_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = val_dataloader
