# The PoolFormer demo with RIFormer's affine token mixer (mmpretrain's
# RIFormer, same shape), trained from the labels alone: the baseline of the
# module-imitation demo.
_base_ = ['./poolformer-demo_1xb64-30e_digits.py']

model = dict(backbone=dict(type='RIFormer'))
