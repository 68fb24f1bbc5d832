"""Castling-ViT's linear-angular attention equals the official
LinAngularAttention (golden fixture, fp64)."""
import os.path as osp

import torch
from helpers import PARITY_DATA

from mmeffattn.models import LinearAngularAttention


def test_equals_official_attention():
    """tests/data/parity/castling_vit/castling_vit.pth (generate.py next to
    it): the official LinAngularAttention (GATECH-EIC/Castling-ViT, commit
    in the file) with its default qkv_bias=False, fp64. Its state dict
    loads strictly into ours (same keys); its ``sparse_reg`` branch is our
    training-only auxiliary branch with weight 1."""
    ref = torch.load(osp.join(PARITY_DATA, 'castling_vit',
                              'castling_vit.pth'), weights_only=True)
    module = LinearAngularAttention(24, 3).double()
    module.load_state_dict(ref['state_dict'], strict=True)
    assert module.qkv.bias is None  # the official default
    x = ref['input']
    with torch.no_grad():
        module.eval()
        torch.testing.assert_close(module(x), ref['output'], rtol=0,
                                   atol=1e-13)
        module.train()
        module.aux_weight = 1.0
        torch.testing.assert_close(module(x), ref['output_sparse_reg'],
                                   rtol=0, atol=1e-13)
