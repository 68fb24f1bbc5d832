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

import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mmeffattn.deployment import onnx_export  # noqa: E402


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
    model = onnx_export.build_model(args.config, args.checkpoint,
                                    args.cfg_options, args.trust_checkpoint)
    torch.manual_seed(0)
    x = onnx_export.export_input(
        torch.randn(args.batch_size, 3, *args.shape), args.dynamic)
    # dynamic: also a batch the trace did not see
    batches = [x.shape[0]] + ([x.shape[0] + 1] if args.dynamic else [])
    if args.dynamic and args.batch_size not in batches:
        batches.append(args.batch_size)
    out = args.out or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0] + '.onnx')
    if osp.dirname(out):
        import os
        os.makedirs(osp.dirname(out), exist_ok=True)
    onnx_export.export(model, x, out, args.dynamic, args.opset)
    diffs = []
    try:
        onnx_export.check_batch_axis(out, args.dynamic, x.shape[0])
        for batch in batches:
            xb = torch.randn(batch, *x.shape[1:])
            with torch.no_grad():
                refs = model(xb)  # the eager model, not the export path
            diffs.append(onnx_export.check_onnx(out, xb, refs, args.atol))
    except onnx_export.ExportError as exc:
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
