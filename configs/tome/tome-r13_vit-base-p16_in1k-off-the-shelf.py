# ToMe off the shelf on mmpretrain's ViT-B/16: the unmodified model and
# checkpoint, merging r=13 tokens per layer (the paper's ViT-B/16 AugReg
# off-the-shelf row: 309 -> 511 img/s, 84.57 -> 82.60 top-1 on a V100).
# Evaluate any mmpretrain ViT-B/16 224px checkpoint with
#   python tools/test.py THIS_CONFIG CHECKPOINT
# (state_dict keys are VisionTransformer's; nothing is retrained).
_base_ = 'mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py'

model = dict(
    backbone=dict(type='mmeffattn.ToMeVisionTransformer', tome_r=13,
                  prop_attn=True))
