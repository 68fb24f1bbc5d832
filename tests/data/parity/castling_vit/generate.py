"""Writes ``castling_vit.pth``: official Castling-ViT attention outputs.

Needs a checkout of GATECH-EIC/Castling-ViT (not a project dependency)::

    PYTHONPATH=/path/to/Castling-ViT \\
        python tests/data/parity/castling_vit/generate.py /path/to/Castling-ViT

Contents: the official ``LinAngularAttention(24, num_heads=3)`` with its
default ``qkv_bias=False`` (state dict, fp64), an input (2, 37, 24) (odd
token count, longer than the 9-tap filter) and the outputs with
``sparse_reg=False`` and ``sparse_reg=True`` (the masked softmax branch,
weight 1, threshold 0.02).
"""
import subprocess
import sys

import torch
from attention import LinAngularAttention


def main(repo):
    commit = subprocess.check_output(['git', '-C', repo, 'rev-parse',
                                      'HEAD'], text=True).strip()
    torch.manual_seed(0)
    module = LinAngularAttention(24, num_heads=3).double().eval()
    with torch.no_grad():  # spread the softmax so the 0.02 mask bites
        module.qkv.weight.mul_(4)
        module.dconv.weight.normal_()
    x = torch.randn(2, 37, 24, dtype=torch.float64)
    data = dict(commit=commit, state_dict=module.state_dict(), input=x)
    with torch.no_grad():
        data['output'] = module(x)
        sparse = LinAngularAttention(24, num_heads=3, sparse_reg=True)
        sparse.double().eval().load_state_dict(module.state_dict())
        data['output_sparse_reg'] = sparse(x)
    torch.save(data, __file__.rsplit('/', 1)[0] + '/castling_vit.pth')
    print('Castling-ViT commit', commit)


if __name__ == '__main__':
    main(sys.argv[1])
