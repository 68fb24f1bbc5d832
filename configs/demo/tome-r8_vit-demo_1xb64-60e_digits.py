# The ViT demo trained WITH token merging (8 tokens per layer, proportional
# attention): 65 tokens shrink to 17 by the last layer. The ToMe sweep
# compares it with the ViT demo trained without merging.
_base_ = ['./vit-demo_1xb64-60e_digits.py']

model = dict(backbone=dict(type='mmeffattn.ToMeVisionTransformer', tome_r=8))
