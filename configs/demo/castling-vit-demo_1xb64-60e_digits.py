# The ViT demo (6 layers, 96 dims, 4x4 patches) with Castling-ViT's
# linear-angular attention; the masked-softmax auxiliary branch is annealed
# to zero over the first 3/4 of training.
_base_ = ['./vit-demo_1xb64-60e_digits.py']

model = dict(backbone=dict(type='mmeffattn.CastlingViT'))

custom_hooks = [dict(type='mmeffattn.LinearAngularAuxAnnealHook',
                     start_weight=1.0, end=0.75)]
