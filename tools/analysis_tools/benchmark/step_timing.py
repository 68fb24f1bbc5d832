"""Wall-clock time of one training step split by autograd node (backward)
and by module type (forward, self time), for ``profile_backbone.py
--by-node``.

``torch.profiler``'s per-op table misattributed time around our custom ops
(for SASA-R50 its ``convolution_backward`` row was 1.15 s, its table 2.6 s
in all, for a 1.6 s step, while the convolutions' autograd nodes take 0.6 s
by the clock; why, we did not find). Here each backward node is timed from
its pre-hook to its hook, and each module's forward from its pre-hook to its
hook minus its children's, so the rows add up to (at most) the step.
"""
import time
from collections import defaultdict
from typing import Callable, Dict, Tuple

import torch
import torch.nn as nn


def _node_name(node) -> str:
    name = type(node).__name__
    if name == 'ConvolutionBackward0':
        weight = tuple(node._saved_weight.shape)
        size = tuple(node._saved_input.shape[2:])
        return f'{name} weight {weight} at {size}'
    return name


def _time_backward(root, totals: Dict[str, float]):
    """Hooks every node reachable from ``root`` (one backward pass)."""
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        name, start = _node_name(node), [0.0]

        def pre(grad_outputs, start=start):
            start[0] = time.perf_counter()

        def post(grad_inputs, grad_outputs, name=name, start=start):
            totals[name] += time.perf_counter() - start[0]

        node.register_prehook(pre)
        node.register_hook(post)
        stack.extend(nxt for nxt, _ in node.next_functions)


def time_step(model: nn.Module, step_loss: Callable[[], torch.Tensor],
              repeat: int = 3) -> Tuple[float, float, Dict[str, float],
                                        Dict[str, float]]:
    """Times ``repeat`` steps after the caller's warm-up.

    Args:
        model: the module whose submodules' forward is timed.
        step_loss: runs the forward and returns the scalar loss.

    Returns:
        forward ms, backward ms (means per step), backward ms per node name,
        forward self ms per module type name.
    """
    backward, forward = defaultdict(float), defaultdict(float)
    stack = []

    def pre_forward(module, args):
        stack.append([time.perf_counter(), 0.0])

    def post_forward(module, args, output):
        start, children = stack.pop()
        total = time.perf_counter() - start
        forward[type(module).__name__] += total - children
        if stack:
            stack[-1][1] += total

    handles = [h for m in model.modules()
               for h in (m.register_forward_pre_hook(pre_forward),
                         m.register_forward_hook(post_forward))]
    fwd = bwd = 0.0
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            loss = step_loss()
            fwd += time.perf_counter() - t0
            _time_backward(loss.grad_fn, backward)  # not in either pass
            t1 = time.perf_counter()
            loss.backward()
            bwd += time.perf_counter() - t1
    finally:
        for h in handles:
            h.remove()
    scale = 1e3 / repeat
    return (fwd * scale, bwd * scale,
            {k: v * scale for k, v in backward.items()},
            {k: v * scale for k, v in forward.items()})


def format_step_table(fwd_ms: float, bwd_ms: float, backward: Dict[str, float],
                      forward: Dict[str, float], rows: int) -> str:
    """The two tables, largest first, each with its share of the pass."""
    lines = []
    for title, total, table in (('forward (module self time)', fwd_ms,
                                 forward),
                                ('backward (autograd node)', bwd_ms,
                                 backward)):
        lines.append(f'{title}: {total:.1f} ms')
        for name, ms in sorted(table.items(), key=lambda kv: -kv[1])[:rows]:
            lines.append(f'  {ms:8.1f} ms  {100 * ms / total:5.1f} %  {name}')
    return '\n'.join(lines)
