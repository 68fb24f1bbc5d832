# Conv-stem + attention: the ResNet 7x7 conv stem, SASA everywhere else.
_base_ = './sasa-r26_32xb128-130e_in1k.py'

model = dict(backbone=dict(stem='conv'))
