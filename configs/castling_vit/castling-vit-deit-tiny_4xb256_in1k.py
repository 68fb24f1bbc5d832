# Castling-ViT, DeiT-Tiny-shaped: linear-angular attention in every layer,
# trained with the masked-softmax auxiliary branch annealed to zero over the
# first 3/4 of training (LinearAngularAuxAnnealHook). The released code has no
# training recipe; we use mmpretrain's DeiT-Tiny recipe unchanged
# (docs/castling_vit.md).
_base_ = 'mmpretrain::deit/deit-tiny_4xb256_in1k.py'

model = dict(backbone=dict(type='mmeffattn.CastlingViT'))

custom_hooks = [dict(type='mmeffattn.LinearAngularAuxAnnealHook',
                     start_weight=1.0, end=0.75)]

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
