# The ViT demo (6 layers, 96 dims, 4x4 patches) with Castling-ViT's
# linear-angular attention; the masked-softmax auxiliary branch is annealed
# to zero over the first 3/4 of training.
_base_ = ['./vit-demo_1xb64-60e_digits.py']

# qkv_bias=True: the published demo checkpoint has qkv biases (the official
# Castling-ViT default, and CastlingViT's, is no bias)
model = dict(backbone=dict(type='mmeffattn.CastlingViT', qkv_bias=True))

custom_hooks = [dict(type='mmeffattn.LinearAngularAuxAnnealHook',
                     start_weight=1.0, end=0.75)]
