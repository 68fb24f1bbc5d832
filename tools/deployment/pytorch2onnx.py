"""Export a config's model to ONNX and check it in onnxruntime.

What is exported: a classifier whole (image -> class scores), a detector's
or segmentor's feature extractor (image -> backbone [+ neck] feature maps).
The ops take their exportable paths (mmeffattn.ops.export_mode); the
reference is the model's ordinary eager output (C++ kernel and all), so an
export that computes something else cannot pass: the tool exits 1 unless
every output agrees within ``--atol`` times the output scale
(max(1, max |output|)).

``--dynamic`` makes the batch dimension dynamic whatever ``--batch-size``
is: the model is traced at a batch of at least 2 (torch.export specialises
a dimension of size 1), the ONNX input's batch must come out symbolic, and
onnxruntime is checked at the export batch and at another one.

  python tools/deployment/pytorch2onnx.py CONFIG CKPT --shape H W
      [--dynamic] [--out model.onnx] [--opset 18] [--atol 1e-4]
      [--cfg-options k=v ...]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from mmengine.config import DictAction  # noqa: E402


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?',
                        help='weights (default: the init of the config)')
    parser.add_argument('--shape', type=int, nargs=2, required=True,
                        metavar=('H', 'W'))
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch dimension')
    parser.add_argument('--out', help='ONNX file (default: work_dirs/'
                        '<config>.onnx)')
    parser.add_argument('--opset', type=int, default=18)
    parser.add_argument('--atol', type=float, default=1e-4)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    from mmeffattn.utils import add_trust_argument
    add_trust_argument(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    model = build_model(args.config, args.checkpoint, args.cfg_options,
                        args.trust_checkpoint)
    torch.manual_seed(0)
    x = export_input(torch.randn(args.batch_size, 3, *args.shape),
                     args.dynamic)
    # dynamic: also a batch the trace did not see
    batches = [x.shape[0]] + ([x.shape[0] + 1] if args.dynamic else [])
    if args.dynamic and args.batch_size not in batches:
        batches.append(args.batch_size)
    out = args.out or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0] + '.onnx')
    if osp.dirname(out):
        import os
        os.makedirs(osp.dirname(out), exist_ok=True)
    export(model, x, out, args.dynamic, args.opset)
    diffs = []
    try:
        check_batch_axis(out, args.dynamic, x.shape[0])
        for batch in batches:
            xb = torch.randn(batch, *x.shape[1:])
            with torch.no_grad():
                refs = model(xb)  # the eager model, not the export path
            diffs.append(check_onnx(out, xb, refs, args.atol))
    except ExportError as exc:
        print(f'FAILED: {exc}', file=sys.stderr)
        sys.exit(1)
    for batch, batch_diffs in zip(batches, diffs):
        for i, (diff, ref_max) in enumerate(batch_diffs):
            print(f'batch {batch}, output {i}: max abs diff {diff:.3g}, '
                  f'max |output| {ref_max:.3g}')
    print(f'onnxruntime matches PyTorch at batch '
          f'{", ".join(map(str, batches))}'
          f'{" (dynamic batch)" if args.dynamic else ""}: {out}')
    return dict(zip(batches, diffs))


if __name__ == '__main__':
    main()
