"""Complexity counting that sees attention.

mmengine's ``FlopAnalyzer`` (fvcore) counts one multiply-add as one "flop"
and silently skips ``aten::scaled_dot_product_attention`` and custom autograd
functions. :func:`count_complexity` adds handlers for them and reports both
MACs (multiply-adds) and FLOPs = 2 x MACs (the SASA paper's convention).
"""
from math import prod
from typing import Any, Dict, List

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


EXTRA_HANDLES = {
    'aten::scaled_dot_product_attention': sdpa_flop_jit,
    'prim::PythonOp.LocalAttention2dFunction': local_attention_flop_jit,
    'mmeffattn::local_attention2d_cpu': local_attention_flop_jit,
}


def count_complexity(model: nn.Module, inputs, show_table: bool = False
                     ) -> Dict[str, Any]:
    """Params, MACs and FLOPs (= 2 MACs) of ``model(*inputs)``."""
    from mmengine.analysis import FlopAnalyzer, parameter_count
    from mmengine.analysis.print_helper import complexity_stats_table
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**EXTRA_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    macs = analyzer.total()
    result = dict(params=parameter_count(model)[''], macs=macs,
                  flops=2 * macs,
                  unsupported=dict(analyzer.unsupported_ops()))
    if show_table:
        result['table'] = complexity_stats_table(analyzer, max_depth=3)
    return result
