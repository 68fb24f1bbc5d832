"""Per-GPU training memory of configs, measured on the CPU.

Activations saved for backward (per image and fixed), weights, gradients,
optimizer state and EMA copies, at the config's training input size and
per-GPU batch size; see mmeffattn/analysis/memory.py for what is counted.

  python tools/analysis_tools/get_memory.py CONFIG [CONFIG ...]
      [--shape H W] [--batch-size N] [--limit-gib 70] [--json OUT]

Exits 1 when a config's estimate exceeds ``--limit-gib``.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from mmengine.config import Config, DictAction  # noqa: E402

import mmeffattn  # noqa: E402,F401
from mmeffattn.analysis.memory import training_memory  # noqa: E402

COLUMNS = ('config', 'input', 'batch/GPU', 'act/img (MiB)',
           'weights+grads+opt (MiB)', 'total (GiB)')


class MeasureError(RuntimeError):
    """A config could not be measured (its one-line reason)."""


def measure(path: str, args, isolated: bool) -> dict:
    """One config's figures; in a child process when several configs are
    measured (a fresh allocator each: 20 full-size models in one process
    outgrow 24 GiB)."""
    if isolated:
        import subprocess
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            out = osp.join(tmp, 'res.json')
            cmd = [sys.executable, __file__, path, '--json', out,
                   '--limit-gib', '1e9']
            if args.shape:
                cmd += ['--shape', *map(str, args.shape)]
            if args.batch_size:
                cmd += ['--batch-size', str(args.batch_size)]
            cmd += ['--downscale', str(args.downscale)]
            if args.cfg_options:
                cmd += ['--cfg-options'] + [
                    f'{k}={v}' for k, v in args.cfg_options.items()]
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
            if proc.returncode:
                lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
                last = lines[-1] if lines else f'exit {proc.returncode}'
                if last.startswith('not measured: '):  # the child's line
                    raise MeasureError(last[len('not measured: '):])
                raise MeasureError(f'{path}: {last}')
            with open(out) as f:
                return json.load(f)[0]
    cfg = Config.fromfile(path)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    res = training_memory(cfg, args.shape, args.batch_size, args.downscale)
    res['config'] = osp.splitext(osp.basename(path))[0]
    return res


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='+')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--batch-size', type=int,
                        help='images per GPU (default: the config\'s)')
    parser.add_argument('--downscale', type=int, default=1,
                        help='measure at 1/N of the input edge, scale the '
                        'per-image activations by N^2 (inputs too large for '
                        'the host\'s memory)')
    parser.add_argument('--limit-gib', type=float, default=70.0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--json', help='write the results to this file')
    args = parser.parse_args(argv)
    rows, over = [], []
    for path in args.configs:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file {path} does not exist')
    print('| ' + ' | '.join(COLUMNS) + ' |')
    print('|' + '---|' * len(COLUMNS))
    failed = []
    for path in args.configs:
        try:
            res = measure(path, args, isolated=len(args.configs) > 1)
        except (MeasureError, ValueError) as exc:
            failed.append(str(exc) if isinstance(exc, MeasureError)
                          else f'{path}: {exc}')
            continue
        rows.append(res)
        scale = f" (/{res['downscale']})" if res['downscale'] > 1 else ''
        print(f"| {res['config']} | {res['shape'][0]}x{res['shape'][1]}"
              f"{scale} | "
              f"{res['batch_per_gpu']} | {res['act_per_image_mib']:.0f} | "
              f"{res['state_mib']:.0f} | {res['total_gib']:.1f} |",
              flush=True)
        if res['total_gib'] > args.limit_gib:
            over.append(res['config'])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    for line in failed:
        print(f'not measured: {line}', file=sys.stderr)
    if over:
        print(f'over {args.limit_gib} GiB per GPU: {", ".join(over)}',
              file=sys.stderr)
    if over or failed:
        sys.exit(1)
    return rows


if __name__ == '__main__':
    main()
