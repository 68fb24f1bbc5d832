"""Complexity counting that sees attention.

mmengine's ``FlopAnalyzer`` (fvcore) counts one multiply-add as one "flop"
and silently skips ``aten::scaled_dot_product_attention`` and custom autograd
functions. :func:`count_complexity` adds handlers for them and reports both
MACs (multiply-adds) and FLOPs = 2 x MACs (the SASA paper's convention).

Every autograd function and ``torch.library`` op of mmeffattn has a handler
in :data:`EXTRA_HANDLES` (or runs in backward only, :data:`BACKWARD_OPS`);
tests/test_analysis/test_flops.py fails for one without.

mmcv's multi-scale deformable attention is one op to the counter: its CUDA
autograd function, and, on CPU, its pure-PyTorch path wrapped in
:class:`CountedDeformableAttention` while counting (otherwise only its
``grid_sample`` calls would be seen, not the weighted sum).
"""
import contextlib
from math import prod
from typing import Any, Dict, List

import torch
import torch.nn as nn


def _shape(val) -> List[int]:
    from mmengine.analysis.jit_handles import get_shape
    return get_shape(val)


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """softmax(q k^T) v: L*S*E (q k^T) + L*S*Ev (attn v) per batch-head."""
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def local_attention_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """SASA op: inputs q, k, v (B, h, H, W, d) or (B*h, H, W, d),
    rel_row (k, d/2), ..."""
    from mmeffattn.ops import local_attention2d_flops
    q, rel_row = _shape(inputs[0]), _shape(inputs[3])
    q = [1] * (5 - len(q)) + list(q)
    return local_attention2d_flops(tuple(q), rel_row[0])


def local_attention_qkv_flop_jit(inputs: List[Any],
                                 outputs: List[Any]) -> int:
    """SASA op on stacked projections: inputs qkv (B, 3, h, d, H, W),
    rel_row (k, d/2), ..."""
    from mmeffattn.ops import local_attention2d_flops
    bsz, _, heads, d, height, width = _shape(inputs[0])
    return local_attention2d_flops((bsz, heads, height, width, d),
                                   _shape(inputs[1])[0])


def attention_stem_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """SASA's fused stem (forward op): inputs x (B, C_in, H, W), w_query
    (C, C_in), w_key, w_value (C, C_in, P), rel_row (2b-1, d/2), ...: the
    q, k, v projections (3 C_in per position and channel), q.k and attn.v
    (P each) and q.r (2b-1). The pool's and norm's compares are not MACs."""
    bsz, in_channels, height, width = _shape(inputs[0])
    channels, _, positions = _shape(inputs[3])
    rel = _shape(inputs[4])[0]
    return bsz * height * width * channels * (3 * in_channels +
                                              2 * positions + rel)


def set_attention_macs(batch: int, heads: int, tokens: int, refs: int,
                       head_dim: int, num_iters: int,
                       features: int = None) -> int:
    """MACs of SeT attention after the qkv projection (docs/setformer.md):
    per (item, head), with N tokens, m references, head dim d, a Nystrom
    anchors (``features``; None: the log kernels are given) and L Sinkhorn
    iterations:

    * features ``x z^T`` of q and k: 2 N a d; log kernels ``feat @ W``:
      2 N a m (Nystrom only);
    * Sinkhorn: 4L + 1 matrix-vector products of N x m (2L for the keys'
      column-exact plan, 2L + 1 for the queries' row-exact plan);
    * gather ``T^k^T V`` and scatter ``T^q Z``: 2 N m d.

    The elementwise exps, log-sum-exps, norms and the positional term are
    not MACs (as every counter here)."""
    per_head = (4 * num_iters + 1) * tokens * refs + \
        2 * tokens * refs * head_dim
    if features:
        per_head += 2 * tokens * features * (head_dim + refs)
    return batch * heads * per_head


def _scalar_args(outputs: List[Any]) -> list:
    """The non-tensor arguments of the traced ``prim::PythonOp`` node."""
    return list(outputs[0].node().scalar_args())


def set_nystrom_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Fused SeT (``SeTNystromTransportCPUFunction``,
    ``SeTNystromTransportFunction``): inputs qkv (B, N, 3, h, d), z (h, a, d),
    weight (h, a, m), ...; scalar arguments sigma, num_iters."""
    bsz, tokens, _, heads, head_dim = _shape(inputs[0])
    features, refs = _shape(inputs[2])[-2:]
    num_iters = next(a for a in _scalar_args(outputs)
                     if isinstance(a, int) and not isinstance(a, bool))
    return set_attention_macs(bsz, heads, tokens, refs, head_dim, num_iters,
                              features)


def set_transport_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """SeT transport from log kernels (``SeTTransportFunction``): inputs log_q
    (B, h, N, m), log_k, v (B, h, N, d); scalar num_iters."""
    *lead, tokens, refs = _shape(inputs[0])
    head_dim = _shape(inputs[2])[-1]
    num_iters = next(a for a in _scalar_args(outputs)
                     if isinstance(a, int) and not isinstance(a, bool))
    return set_attention_macs(prod(lead), 1, tokens, refs, head_dim,
                              num_iters)


def zero_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Ops without multiply-adds (a gradient clamp, pooling of BN
    extremes): counted as 0, on purpose."""
    return 0


def deformable_attention_macs(batch: int, queries: int, heads: int,
                              levels: int, points: int, head_dim: int) -> int:
    """MACs of multi-scale deformable attention (without its projections):
    per sampled value 4 (bilinear) + 1 (attention weight)."""
    return 5 * batch * queries * heads * levels * points * head_dim


def deformable_attention_flop_jit(inputs: List[Any],
                                  outputs: List[Any]) -> int:
    """inputs: value (B, S, heads, d), spatial_shapes, [level_start_index,]
    sampling_locations (B, Q, heads, levels, points, 2), ..."""
    value = _shape(inputs[0])
    locs = next(_shape(x) for x in inputs[2:] if len(_shape(x) or ()) == 6)
    b, q, heads, levels, points, _ = locs
    return deformable_attention_macs(b, q, heads, levels, points, value[-1])


class CountedDeformableAttention(torch.autograd.Function):
    """mmcv's pure-PyTorch deformable attention as one traced op."""

    impl = None  # mmcv's function, set while counting

    @staticmethod
    def forward(ctx, value, spatial_shapes, sampling_locations,
                attention_weights):
        return CountedDeformableAttention.impl(
            value, spatial_shapes, sampling_locations, attention_weights)


@contextlib.contextmanager
def _count_deformable_attention_on_cpu():
    try:
        import mmcv.ops.multi_scale_deform_attn as msda
    except Exception:  # mmcv without ops: nothing to wrap
        yield
        return
    original = msda.multi_scale_deformable_attn_pytorch
    CountedDeformableAttention.impl = staticmethod(original)
    msda.multi_scale_deformable_attn_pytorch = \
        lambda *args: CountedDeformableAttention.apply(*args)
    try:
        yield
    finally:
        msda.multi_scale_deformable_attn_pytorch = original


EXTRA_HANDLES = {
    'aten::scaled_dot_product_attention': sdpa_flop_jit,
    'prim::PythonOp.LocalAttention2dFunction': local_attention_flop_jit,
    'mmeffattn::local_attention2d_cpu': local_attention_flop_jit,
    'mmeffattn::local_attention2d_qkv_cpu': local_attention_qkv_flop_jit,
    'mmeffattn::attention_stem_forward': attention_stem_flop_jit,
    'prim::PythonOp.MultiScaleDeformableAttnFunction':
    deformable_attention_flop_jit,
    'prim::PythonOp.CountedDeformableAttention': deformable_attention_flop_jit,
    'prim::PythonOp.SeTNystromTransportCPUFunction': set_nystrom_flop_jit,
    'prim::PythonOp.SeTNystromTransportFunction': set_nystrom_flop_jit,
    'prim::PythonOp.SeTTransportFunction': set_transport_flop_jit,
    'prim::PythonOp._ClampGrad': zero_flop_jit,
    'prim::PythonOp.AttentionStemPool': zero_flop_jit,
}

#: custom ops that only run in backward (never in a counted forward)
BACKWARD_OPS = ('mmeffattn::local_attention2d_cpu_backward',
                'mmeffattn::local_attention2d_qkv_cpu_backward',
                'mmeffattn::attention_stem_backward')


def count_complexity(model: nn.Module, inputs, show_table: bool = False
                     ) -> Dict[str, Any]:
    """Params, MACs and FLOPs (= 2 MACs) of ``model(*inputs)``."""
    from mmengine.analysis import FlopAnalyzer, parameter_count
    from mmengine.analysis.print_helper import complexity_stats_table
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**EXTRA_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with _count_deformable_attention_on_cpu():
        macs = analyzer.total()
    result = dict(params=parameter_count(model)[''], macs=macs,
                  flops=2 * macs,
                  unsupported=dict(analyzer.unsupported_ops()))
    if show_table:
        result['table'] = complexity_stats_table(analyzer, max_depth=3)
    return result
