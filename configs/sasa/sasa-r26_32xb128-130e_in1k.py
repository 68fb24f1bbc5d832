_base_ = './sasa-r50_32xb128-130e_in1k.py'

model = dict(backbone=dict(depth=26))
