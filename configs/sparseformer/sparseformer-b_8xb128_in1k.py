# SparseFormer-B: 81 tokens, widths 384/768, 10 cortex units, drop path 0.4;
# the recipe of SparseFormer-T.
_base_ = './sparseformer-t_8xb128_in1k.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4),
    head=dict(in_channels=768))
