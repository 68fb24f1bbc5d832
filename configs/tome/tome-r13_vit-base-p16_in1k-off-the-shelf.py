# ToMe off the shelf on mmpretrain's published ViT-B/16 at 224 px
# (vit-base-p16_32xb128-mae_in1k: supervised on ImageNet-1k with MAE's
# fine-tuning recipe, 82.37 top-1), merging r=13 tokens per layer with
# proportional attention (the paper's ViT-B/16 off-the-shelf r; its row is the
# AugReg model, 84.57 -> 82.60 top-1, 309 -> 511 img/s on a V100). The model,
# head and test pipeline are mmpretrain's config of that checkpoint, so the
# checkpoint loads with strict=True (no missing or unexpected keys):
#   python tools/test.py THIS_CONFIG \
#     https://download.openmmlab.com/mmclassification/v0/vit/vit-base-p16_pt-32xb128-mae_in1k_20220623-4c544545.pth
_base_ = 'mmpretrain::vision_transformer/vit-base-p16_32xb128-mae_in1k.py'

model = dict(
    backbone=dict(type='mmeffattn.ToMeVisionTransformer', tome_r=13,
                  prop_attn=True))

# checkpoints are written atomically, never losing the previous one
default_hooks = dict(checkpoint=dict(type='mmeffattn.AtomicCheckpointHook'))
