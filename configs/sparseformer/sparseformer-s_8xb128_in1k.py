# SparseFormer-S: 64 tokens, widths 320/640, drop path 0.3; the recipe of
# SparseFormer-T (official: Swin codebase, 300 epochs, batch 1024, EMA).
_base_ = './sparseformer-t_8xb128_in1k.py'

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3),
    head=dict(in_channels=640))
