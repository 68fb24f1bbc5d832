"""Benchmark efficient attention against the obvious alternatives, in one run.

Suites:
  sasa: our SASA op vs the naive unfold implementation vs a 3x3 conv of the
        same width (B=8, C=128, 56x56, k=7, 8 heads) + sweeps over k and size.
  set:  SeT attention vs global softmax attention (torch SDPA) at N = 196,
        784, 3136, 12544 tokens (B=8, C=64, 2 heads), each in its own
        process; and SeT's time per 4x tokens (``growth``, 3136 -> 12544)
        with both sizes timed round robin in one process (9 rounds).
  backbone: a training step (fwd+bwd) and inference of whole backbones at
        224x224, B=8, each timed round robin against what it replaces in one
        process: SeTformer-T/S vs Swin-T/S, SASA-R50 vs ResNet-50.
  deploy: eval forward, eager vs torch.compile, and SeT's cached Nystrom
        normalisation vs a per-forward eigendecomposition.
  vit:  eval forward (B=8, median of 7, the variants of a group timed round
        robin in one process): ToMe on ViT-B/16 at 224 with r = 0, 8, 13,
        16 and the decreasing (16, -1); Castling-ViT vs DeiT-S at 224 and
        448 (speedup = img/s over the baseline of the same group).
  window: AlterNet's window attention (one masked SDPA call over padded
        windows, w=7, 12 heads x 64, B=8) vs the reference code's explicit
        einsum/softmax per window vs global SDPA over the whole map, at
        14..56 pixels a side (15 and 30 need padding).
  amp:  a backbone training step (B=8, 224x224) in fp32 and in bf16
        autocast (forward in autocast, backward outside), SASA-R50 and
        SeTformer-T, with mmpretrain's ResNet-50 for reference.

Times are the median of 5 repeats after a warm-up (whole backbones: 9
round-robin rounds, their steps vary most; the table also gives the
min and max), with a fixed thread count (--threads). Each case runs in a
fresh process; memory is the peak RSS of its first fwd+bwd over the RSS
before it (``peak_mib``: includes what malloc keeps of freed blocks and
libraries' one-time buffers) and the peak of live tensor memory of a later
fwd+bwd from the profiler's allocation events (``tensor_peak_mib``: what
the op itself holds). Prints a table,
writes ``<out-dir>/<suite>.json`` and ``<out-dir>/<suite>.png``.

``--device cuda`` runs every case on the GPU (synchronised timings, peak
memory from ``torch.cuda.max_memory_allocated``); the default is the CPU.

  python tools/analysis_tools/benchmark_attention.py --suite sasa \
      --out-dir work_dirs/benchmarks
  python tools/analysis_tools/benchmark_attention.py --suite all --device cuda
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import torch  # noqa: E402
from benchmark.runner import run_isolated  # noqa: E402
from benchmark.suites import SUITES  # noqa: E402


def fmt(v, key=''):
    if isinstance(v, float):
        return f'{v:9.2f}' if key.endswith(('speedup', 'growth')) \
            else f'{v:9.1f}'
    return f'{v!s:>9}'


def add_speedups(rows):
    """img/s of each vit row relative to its baseline in the same run: ToMe
    rows to r=0, Castling rows to DeiT at the same size."""
    ok = [r for r in rows if 'error' not in r]
    for r in ok:
        base = [b for b in ok if b['arch'] == r['arch'] and b['H'] == r['H']
                and (b.get('tome_r') == 0 if r['impl'] == 'tome'
                     else b['impl'] == 'deit')]
        if base:
            r['speedup'] = round(r['img_s'] / base[0]['img_s'], 3)


def print_table(rows, keys):
    if any('train_ms' in r for r in rows):
        cols = keys + [f'{p}{s}' for p in ('train_', 'infer_')
                       for s in ('ms', 'ms_min', 'ms_max', 'img_s',
                                 'speedup')]
    else:
        cols = keys + [c for c in (
            'fwd_ms', 'fwd_ms_min', 'fwd_ms_max', 'img_s', 'speedup',
            'fwdbwd_ms', 'fwdbwd_ms_min', 'fwdbwd_ms_max', 'peak_mib',
            'tensor_peak_mib', 'first_call_ms', 'growth')
            if any(c in r for r in rows)]
    print(' | '.join(f'{c:>9}' for c in cols))
    for r in rows:
        if 'error' in r:
            print(' | '.join(fmt(r.get(c, '')) for c in keys), '| ERROR',
                  r['error'])
            continue
        print(' | '.join(fmt(r.get(c, ''), c) for c in cols))


def plot(rows, suite, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ok = [r for r in rows if 'error' not in r]
    if suite in ('amp', 'deploy', 'vit', 'backbone'):
        return
    if suite == 'sasa':
        panels = [('sweep_k', 'k'), ('sweep_size', 'H')]
    else:
        panels = [('tokens', 'N')]
        for r in ok:
            r['N'] = r['H'] * r['W']
    fig, axes = plt.subplots(1, 2 * len(panels), figsize=(6 * 2 * len(
        panels), 4))
    for p, (group, x) in enumerate(panels):
        sel = [r for r in ok if r['group'] in (group, 'headline')]
        for metric, ax in zip(('fwdbwd_ms', 'peak_mib'),
                              axes[2 * p:2 * p + 2]):
            for impl in sorted({r['impl'] for r in sel}):
                pts = sorted((r[x], r[metric]) for r in sel
                             if r['impl'] == impl)
                xs = sorted({pt[0] for pt in pts})
                ys = [dict(pts)[v] for v in xs]
                ax.plot(xs, ys, 'o-', label=impl)
            ax.set_xlabel(x)
            ax.set_ylabel(metric)
            ax.set_yscale('log')
            if x == 'N':
                ax.set_xscale('log')
            ax.set_title(f'{suite}: {metric} vs {x}')
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _cpu_model() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        return subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
            text=True, cwd=osp.dirname(osp.abspath(__file__)),
            check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--suite', choices=sorted(SUITES) + ['all'],
                        default='all')
    parser.add_argument('--out-dir', default='work_dirs/benchmarks')
    parser.add_argument('--quick', action='store_true',
                        help='small sizes (smoke test)')
    parser.add_argument('--threads', type=int,
                        default=torch.get_num_threads(),
                        help='intra-op threads of every case (fixed)')
    parser.add_argument('--device', default='cpu',
                        help="where every case runs: 'cpu' (default), "
                        "'cuda' or 'cuda:N'")
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device must be 'cpu', 'cuda' or 'cuda:N', got "
                     f'{args.device!r}')
    if device.type not in ('cpu', 'cuda'):
        parser.error(f"--device must be 'cpu', 'cuda' or 'cuda:N', got "
                     f'{args.device!r}')
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: no CUDA device here '
                     '(torch.cuda.is_available() is False)')
    os.makedirs(args.out_dir, exist_ok=True)
    suites = sorted(SUITES) if args.suite == 'all' else [args.suite]
    env = dict(torch=torch.__version__, threads=args.threads,
               cpu=_cpu_model(), cuda=torch.cuda.is_available(),
               device=args.device,
               gpu=torch.cuda.get_device_name(device)
               if device.type == 'cuda' else None,
               command=' '.join(sys.argv), commit=_git_commit(),
               date=time.strftime('%Y-%m-%d'))
    results = {}
    for suite in suites:
        cases = SUITES[suite](args.quick)
        rows = []
        for case in cases:
            case.setdefault('threads', args.threads)
            case.setdefault('device', args.device)
            result = run_isolated(case)
            # round-robin cases report one row per variant
            rows.extend(result.pop('rows', None) or [result])
            print('.', end='', flush=True)
        print()
        keys = ['group', 'impl', 'B'] + (
            [] if suite == 'backbone' else ['C']) + ['H', 'W'] + (
            ['k'] if suite == 'sasa' else []) + (
            ['dtype'] if suite == 'amp' else []) + (
            ['compile', 'nystrom_cache'] if suite == 'deploy' else []) + (
            ['arch', 'tome_r'] if suite == 'vit' else [])
        if suite == 'vit':
            add_speedups(rows)
        print_table(rows, keys)
        with open(osp.join(args.out_dir, f'{suite}.json'), 'w') as f:
            json.dump(dict(env=env, rows=rows), f, indent=1)
        plot(rows, suite, osp.join(args.out_dir, f'{suite}.png'))
        results[suite] = rows
    return results


if __name__ == '__main__':
    main()
