_base_ = './sasa-r50_8xb512-130e_in1k.py'

model = dict(backbone=dict(depth=26))
