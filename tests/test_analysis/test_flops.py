"""get_flops counts every custom op we ship: each autograd function and
``torch.library`` op of mmeffattn has a handler (a new one without fails
here), and SeT attention's handler equals both the count of its plain-op
(export) path and the hand count of docs/setformer.md; SDPA, SASA's local
attention and mmcv's deformable attention are counted."""
import importlib
import pkgutil

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mmeffattn
from mmeffattn.analysis.flops import (BACKWARD_OPS, EXTRA_HANDLES,
                                      count_complexity, set_attention_macs)


def _import_all():
    for info in pkgutil.walk_packages(mmeffattn.__path__, 'mmeffattn.'):
        importlib.import_module(info.name)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_custom_function_and_op_has_a_counter():
    _import_all()
    functions = sorted({f'prim::PythonOp.{c.__name__}'
                        for c in _subclasses(torch.autograd.Function)
                        if c.__module__.startswith('mmeffattn')})
    ops = sorted(n for n in torch._C._dispatch_get_all_op_names()
                 if n.startswith('mmeffattn::'))
    assert functions and ops
    uncounted = [n for n in functions + ops
                 if n not in EXTRA_HANDLES and n not in BACKWARD_OPS]
    assert not uncounted, (
        f'custom ops without a FLOP handler in mmeffattn/analysis/flops.py: '
        f'{uncounted}')


class Tokens(nn.Module):
    """SeTAttention on an H x W grid, as a one-input module."""

    def __init__(self, attn, hw):
        super().__init__()
        self.attn, self.hw = attn, hw

    def forward(self, x):
        return self.attn(x, self.hw)


def _set_layer(kernel_path):
    from mmeffattn.models import SeTAttention
    torch.manual_seed(0)
    layer = Tokens(SeTAttention(64, 2, num_refs=49, num_iters=3), (56, 56))
    return layer.eval()


def test_set_layer_macs_equal_the_hand_count():
    """SeTformer-T's first-stage layer at 224x224: N = 56 * 56 tokens,
    C = 64, h = 2 heads of d = 32, a = 32 anchors, m = 49 references,
    L = 3 Sinkhorn iterations (docs/setformer.md, 'Complexity')."""
    n, c, h, d, a, m, iters = 56 * 56, 64, 2, 32, 32, 49, 3
    hand = (n * c * 3 * c                      # qkv projection
            + h * a * a * m                    # K^(-1/2) refs^T / eps
            + h * 2 * n * a * d                # features of q and k
            + h * 2 * n * a * m                # log kernels
            + h * (4 * iters + 1) * n * m      # Sinkhorn mat-vecs
            + h * 2 * n * m * d                # gather and scatter
            + n * c * c)                       # output projection
    assert hand == 107_658_880
    assert set_attention_macs(1, h, n, m, d, iters, a) == 56_178_304
    x = torch.randn(1, n, c)
    with torch.no_grad():
        res = count_complexity(_set_layer(True), (x, ))
    assert res['macs'] == hand
    assert not any('SeT' in op for op in res['unsupported'])


def test_set_handler_equals_the_plain_op_count():
    """The fused op's handler counts what the plain-op path (the export
    path, counted op by op by fvcore) multiplies and adds."""
    from mmeffattn.ops import export_mode
    x = torch.randn(2, 7 * 5, 16)
    from mmeffattn.models import SeTAttention
    torch.manual_seed(0)
    layer = Tokens(SeTAttention(16, 2, num_refs=4, num_iters=2),
                   (7, 5)).eval()
    with torch.no_grad():
        fused = count_complexity(layer, (x, ))
        with export_mode():
            plain = count_complexity(layer, (x, ))
    assert fused['macs'] == plain['macs'] > 0
    assert any('SeT' in op for op in EXTRA_HANDLES)


@pytest.mark.parametrize('feature_map,sinkhorn', [('linear', 'scaling'),
                                                  ('nystrom', 'log')])
def test_set_other_paths_are_counted(feature_map, sinkhorn):
    """The transport-only function (linear features) and the log-domain
    autograd path count the same transport MACs."""
    from mmeffattn.models import SeTAttention
    torch.manual_seed(0)
    layer = Tokens(SeTAttention(16, 2, num_refs=4, num_iters=2,
                                feature_map=feature_map, sinkhorn=sinkhorn),
                   (7, 5)).eval()
    with torch.no_grad():
        res = count_complexity(layer, (torch.randn(2, 35, 16), ))
    assert not any('SeT' in op for op in res['unsupported'])
    assert res['macs'] > 2 * 35 * 16 * 16 * 4


class SDPAModule(nn.Module):

    def forward(self, x):  # x: (B, h, N, d)
        return F.scaled_dot_product_attention(x, x, x)


def test_sdpa_and_local_attention_are_counted():
    from mmeffattn.analysis.flops import count_complexity
    from mmeffattn.ops import local_attention2d_flops
    res = count_complexity(SDPAModule(), (torch.randn(2, 3, 49, 16), ))
    assert res['macs'] == 2 * 3 * 49 * 49 * (16 + 16)
    from mmeffattn.models import LocalSelfAttention2d
    proj = 3 * 32 * 32 * 9 * 11
    attn = local_attention2d_flops((1, 4, 9, 11, 8), 5)
    for impl in ('cpp', 'halo'):
        layer = LocalSelfAttention2d(32, 32, kernel_size=5, num_heads=4,
                                     impl=impl)
        res = count_complexity(layer, (torch.randn(1, 32, 9, 11), ))
        assert res['macs'] == proj + attn


def test_deformable_attention_macs_are_counted():
    from mmcv.ops import MultiScaleDeformableAttention

    from mmeffattn.analysis.flops import (count_complexity,
                                          deformable_attention_macs)

    class Wrap(nn.Module):

        def __init__(self):
            super().__init__()
            self.attn = MultiScaleDeformableAttention(
                embed_dims=32, num_heads=4, num_levels=2, num_points=3,
                batch_first=True)

        def forward(self, query, value, ref):
            shapes = torch.tensor([[4, 4], [2, 2]])
            start = torch.tensor([0, 16])
            return self.attn(query, value=value, reference_points=ref,
                             spatial_shapes=shapes, level_start_index=start)

    q, s = 5, 20
    res = count_complexity(Wrap().eval(), (torch.randn(1, q, 32),
                                           torch.randn(1, s, 32),
                                           torch.rand(1, q, 2, 2)))
    linear = (s * 32 * 32 +              # value projection
              q * 32 * 4 * 2 * 3 * 2 +   # sampling offsets
              q * 32 * 4 * 2 * 3 +       # attention weights
              q * 32 * 32)               # output projection
    assert deformable_attention_macs(1, q, 4, 2, 3, 8) == 5 * q * 4 * 6 * 8
    assert res['macs'] == linear + deformable_attention_macs(1, q, 4, 2, 3, 8)
