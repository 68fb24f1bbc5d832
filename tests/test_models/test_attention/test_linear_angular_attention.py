"""Castling-ViT's linear-angular attention against a per-token brute force
(fp64), and gradcheck."""
import math

import pytest
import torch

from mmeffattn.models import LinearAngularAttention


@torch.no_grad()
def brute_force(module, x, aux_weight):
    """Per token and per head, as loops over the other tokens."""
    batch, n, c = x.shape
    h = module.num_heads
    d = c // h
    qkv = x @ module.qkv.weight.T
    if module.qkv.bias is not None:
        qkv = qkv + module.qkv.bias
    q, k, v = (qkv[..., i * c:(i + 1) * c].reshape(batch, n, h, d)
               for i in range(3))
    taps = module.dconv.weight.shape[2]
    out = torch.zeros(batch, n, h, d, dtype=x.dtype)
    for b in range(batch):
        for head in range(h):
            qn = [q[b, i, head] / q[b, i, head].norm() for i in range(n)]
            kn = [k[b, j, head] / k[b, j, head].norm() for j in range(n)]
            for i in range(n):
                acc = 0.5 * v[b, i, head]
                for j in range(n):
                    acc = acc + float(qn[i] @ kn[j]) / math.pi * v[b, j, head]
                if aux_weight:
                    logits = torch.stack([q[b, i, head] @ k[b, j, head]
                                          for j in range(n)]) / math.sqrt(d)
                    p = logits.softmax(0)
                    for j in range(n):
                        if p[j] > module.aux_threshold:
                            acc = acc + aux_weight * p[j] * v[b, j, head]
                acc = acc / acc.norm()
                for t in range(taps):  # zero-padded conv along the tokens
                    j = i + t - taps // 2
                    if 0 <= j < n:
                        acc = acc + module.dconv.weight[head, 0, t, 0] * \
                            v[b, j, head]
                out[b, i, head] = acc
    out = out.reshape(batch, n, c)
    return out @ module.proj.weight.T + module.proj.bias


@pytest.mark.parametrize('aux_weight', [0.0, 0.7])
def test_equals_brute_force(aux_weight):
    torch.manual_seed(0)
    module = LinearAngularAttention(12, 3, aux_weight=aux_weight,
                                    aux_threshold=0.05).double()
    x = torch.randn(2, 13, 12, dtype=torch.float64)  # odd N, N > 9 taps
    module.train()
    torch.testing.assert_close(module(x), brute_force(module, x, aux_weight))
    module.eval()  # inference drops the auxiliary branch
    torch.testing.assert_close(module(x), brute_force(module, x, 0.0))


def test_gradcheck():
    torch.manual_seed(0)
    module = LinearAngularAttention(8, 2, aux_weight=0.5,
                                    aux_threshold=0.0).double().train()
    x = torch.randn(1, 7, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x, ))
