# A small ConvMixer (mmpretrain's class: 128 dims, depth 8, 2x2 patches,
# 5x5 depthwise kernels) on the embedded digits.
_base_ = ['./poolformer-demo_1xb64-30e_digits.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvMixer',
        arch=dict(embed_dims=128, depth=8, patch_size=2, kernel_size=5)),
    head=dict(in_channels=128))
