# Castling-ViT, DeiT-Base-shaped: linear-angular attention in every layer,
# trained with the masked-softmax auxiliary branch annealed to zero over the
# first 3/4 of training. mmpretrain's DeiT-B recipe unchanged (drop path 0.1,
# EMA) (docs/castling_vit.md).
_base_ = 'mmpretrain::deit/deit-base_16xb64_in1k.py'

model = dict(backbone=dict(type='mmeffattn.CastlingViT'))

custom_hooks = [
    dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL'),
    dict(type='mmeffattn.LinearAngularAuxAnnealHook', start_weight=1.0,
         end=0.75),
]

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
