# A narrow AlterNet-50 on the embedded 32x32 digits: the same (3, 4, 6, 4)
# blocks and (0, 1, 3, 2) MSA blocks, base width 16, 16-channel heads
# (1, 2, 4, 8), window 4 (the authors' setting for small inputs; stage maps
# are 8, 4, 2, 1 pixels, so the last two stages attend over padded, masked
# windows).
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
