"""Export a model to ONNX and check it in onnxruntime, as
``tools/deployment/pytorch2onnx.py`` does.

The ops take their exportable paths (:func:`mmeffattn.ops.export_mode`); the
reference is the model's ordinary eager output, so an export that computes
something else cannot pass :func:`check_onnx`."""
import os.path as osp

import numpy as np
import torch
import torch.nn as nn


class ExportError(RuntimeError):
    """The ONNX model does not compute what the PyTorch model does."""


class FeatureModel(nn.Module):
    """``(B, 3, H, W)`` -> the model's tensor outputs, as a tuple."""

    def __init__(self, model, scope: str):
        super().__init__()
        self.model, self.scope = model, scope

    def forward(self, x):
        if self.scope == 'mmpretrain':
            out = self.model(x, mode='tensor')
        else:
            out = self.model.extract_feat(x)
        return tuple(out) if isinstance(out, (list, tuple)) else (out, )


def build_model(config: str, checkpoint: str = None, cfg_options=None,
                trust: bool = False):
    from mmengine.config import Config

    import mmeffattn  # noqa: F401
    from mmeffattn.utils import load_checkpoint_file, load_state_dict_checked
    from mmeffattn.utils.launch import build_config_model
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config} does not exist')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model = build_config_model(cfg)
    if checkpoint:
        ckpt = load_checkpoint_file(checkpoint, trust=trust)
        load_state_dict_checked(model, ckpt.get('state_dict', ckpt),
                                checkpoint)
    else:
        model.init_weights()
    return FeatureModel(model, cfg.get('default_scope', 'mmpretrain')).eval()


def export_input(x: torch.Tensor, dynamic: bool) -> torch.Tensor:
    """The example input of the trace: ``x``, or for a dynamic batch at
    least 2 images (a size-1 dimension is specialised to 1 by
    torch.export)."""
    if dynamic and x.shape[0] < 2:
        x = torch.cat([x, torch.randn_like(x)])
    return x


def check_batch_axis(path: str, dynamic: bool, batch: int) -> None:
    """Raise :class:`ExportError` unless the ONNX input's batch axis is
    symbolic (``dynamic``) or ``batch``."""
    import onnx
    dim = onnx.load(path, load_external_data=False).graph.input[
        0].type.tensor_type.shape.dim[0]
    symbolic = bool(dim.dim_param) or not dim.HasField('dim_value')
    if dynamic and not symbolic:
        raise ExportError(f'{path}: the input batch is static '
                          f'({dim.dim_value}) although --dynamic was given')
    if not dynamic and (symbolic or dim.dim_value != batch):
        raise ExportError(f'{path}: the input batch is '
                          f'{dim.dim_param or dim.dim_value}, expected '
                          f'{batch}')


def export(model: nn.Module, x: torch.Tensor, out: str, dynamic: bool,
           opset: int) -> None:
    from mmeffattn.ops import export_mode
    kwargs = dict(input_names=['input'], opset_version=opset, dynamo=True)
    if dynamic:
        batch = torch.export.Dim('batch', min=1, max=64)
        kwargs['dynamic_shapes'] = ({0: batch}, )
    with torch.no_grad(), export_mode():
        program = torch.onnx.export(model, (x, ), **kwargs)
    program.save(out)


def check_onnx(path: str, x: torch.Tensor, refs, atol: float = 1e-4):
    """(max abs difference, max |ref|) of each output of onnxruntime; raises
    :class:`ExportError` when one exceeds ``atol * max(1, max |ref|)``."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    outs = session.run(None, {name: x.numpy()})
    if len(outs) != len(refs):
        raise ExportError(f'{path}: {len(outs)} outputs, PyTorch has '
                          f'{len(refs)}')
    diffs = []
    for i, (got, ref) in enumerate(zip(outs, refs)):
        ref = ref.numpy()
        if got.shape != ref.shape:
            raise ExportError(f'{path}: output {i} has shape {got.shape}, '
                              f'PyTorch {ref.shape}')
        diff = float(np.abs(got - ref).max())
        ref_max = float(np.abs(ref).max())
        scale = max(1.0, ref_max)
        diffs.append((diff, ref_max))
        if not diff <= atol * scale:
            raise ExportError(
                f'{path}: output {i} differs from PyTorch by {diff:.3g} '
                f'(allowed {atol:g} x scale {scale:.3g}); the export is '
                'wrong')
    return diffs
