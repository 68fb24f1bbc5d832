"""Which path the ops take while a model is exported.

Inside :func:`export_mode` (tools/deployment/pytorch2onnx.py uses it), and
under the legacy ONNX exporter, the ops build graphs of plain torch ops: the
SASA op runs its blocked forward without the C++ kernel or an autograd
function, and SeT uses its cached Nystrom normalisation (no
eigendecomposition). ``torch.compile`` is not export: there the C++ kernel
stays, as a custom op.
"""
import contextlib

import torch

_DEPTH = [0]  # a module global: torch.compile reads it without a break


@contextlib.contextmanager
def export_mode():
    """Make the ops exportable within the block."""
    _DEPTH[0] += 1
    try:
        yield
    finally:
        _DEPTH[0] -= 1


def is_exporting() -> bool:
    """True inside :func:`export_mode` or a legacy ONNX export."""
    if _DEPTH[0]:
        return True
    if torch.compiler.is_compiling():
        return False
    return torch.onnx.is_in_onnx_export()
