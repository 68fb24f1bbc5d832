# A small SparseFormer on the embedded 32x32 digits: 16 latent tokens with
# RoIs, 9 sampling points each, widths 64/128, 2 cortex units, a 32-channel
# early conv (8x8 map), 4 heads. `tools/analysis_tools/visualize_rois.py`
# draws its RoIs and sampling points.
_base_ = ['./poolformer-demo_1xb64-30e_digits.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmeffattn.SparseFormer',
        arch=dict(num_tokens=16, embed_dims=(64, 128), cortex_depth=2),
        num_points=9,
        early_channels=32,
        num_heads=4),
    neck=None,
    head=dict(in_channels=128))
# no weight decay on the RoIs (as officially)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.token_roi': dict(decay_mult=0.0)}))
