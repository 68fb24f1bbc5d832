"""Runs benchmark cases, each in a fresh process.

    python tools/analysis_tools/benchmark --case JSON

runs one case in this process and prints one JSON line: fwd and fwd+bwd
median ms (with the min and max of the repeats) and the fwd+bwd peak memory;
round-robin kinds ('vit', 'backbones', 'sizes') print one row per variant or
size. :func:`run_isolated` starts that command for a case and reads its
line. A case's ``device`` ('cpu' by default, 'cuda' or 'cuda:N') is where
the layer and its input live; on CUDA every timing synchronises and the peak
memory is ``torch.cuda.max_memory_allocated`` above what was allocated
before.
"""
import argparse
import json
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Dict

import torch

from .attention_cases import (PerForwardNystrom, build_sasa_case,
                              build_set_case, build_window_case)
from .backbone_cases import build_backbone_case, build_vit_case
from .timers import (peak_rss_mib, rss_mib, spread, tensor_peak_mib,
                     time_round_robin, time_samples)

# ``python PACKAGE --case JSON`` runs one case (__main__.py)
PACKAGE = osp.dirname(osp.abspath(__file__))


def _device(case):
    """(device, sync) of a case."""
    device = torch.device(case.get('device', 'cpu'))
    if device.type == 'cuda':
        return device, lambda: torch.cuda.synchronize(device)
    return device, lambda: None


BUILDERS = dict(window=build_window_case, sasa=build_sasa_case,
                set=build_set_case, backbone=build_backbone_case)


def build(case):
    """The layer or backbone of a case and its input."""
    if case['kind'] not in BUILDERS:
        raise ValueError(f"unknown case kind {case['kind']!r}")
    return BUILDERS[case['kind']](case)


def run_vit_round_robin(case):
    """Eval forwards of several ViT-family ``variants`` built in this one
    process, timed round robin (a warm-up round, then ``repeat`` rounds),
    so that the machine's slow drifts hit every variant alike. Returns the
    case with one row per variant."""
    torch.set_num_threads(case.get('threads', torch.get_num_threads()))
    shared = {k: v for k, v in case.items() if k not in ('variants', 'kind')}
    device, sync = _device(case)
    models = []
    for variant in case['variants']:
        torch.manual_seed(0)
        model, x = build_vit_case(dict(shared, **variant))
        model.to(device).eval()
        x = x.to(device)
        models.append(model)
    with torch.no_grad():
        times = time_round_robin([lambda m=m: m(x) for m in models],
                                 case.get('repeat', 5), sync)
    rows = []
    for variant, samples in zip(case['variants'], times):
        median = statistics.median(samples)
        rows.append(dict(shared, **variant, fwd_ms=median,
                         fwd_ms_min=min(samples), fwd_ms_max=max(samples),
                         img_s=case['B'] * 1e3 / median))
    return dict(case, rows=rows)


def run_size_round_robin(case):
    """fwd+bwd of one layer (case kind ``layer``) at several map ``sides``,
    built in this one process and timed round robin (a warm-up round, then
    ``repeat`` rounds), so that the time per size step is read under one
    machine state: each row's ``growth`` is the median over rounds of its
    time over the previous size's in the same round."""
    torch.set_num_threads(case.get('threads', torch.get_num_threads()))
    shared = {k: v for k, v in case.items() if k not in ('sides', 'kind')}
    device, sync = _device(case)
    steps = []
    for side in case['sides']:
        torch.manual_seed(0)
        layer, x = build(dict(shared, kind=case['layer'], H=side, W=side))
        layer.to(device)
        x = x.to(device).requires_grad_(True)

        def fwd_bwd(layer=layer, x=x):
            layer(x).float().sum().backward()
            layer.zero_grad(set_to_none=True)
            x.grad = None

        steps.append(fwd_bwd)
    times = time_round_robin(steps, case.get('repeat', 5), sync)
    rows = []
    for i, (side, samples) in enumerate(zip(case['sides'], times)):
        row = dict(shared, H=side, W=side, **spread('fwdbwd_ms', samples))
        if i:
            row['growth'] = round(statistics.median(
                t / prev for t, prev in zip(samples, times[i - 1])), 3)
        rows.append(row)
    return dict(case, rows=rows)


def run(case):
    if case['kind'] == 'sizes':
        return run_size_round_robin(case)
    if case['kind'] == 'vit':
        return run_vit_round_robin(case)
    if case['kind'] == 'backbones':
        return run_backbone_round_robin(case)
    torch.manual_seed(0)
    torch.set_num_threads(case.get('threads', torch.get_num_threads()))
    layer, x = build(case)
    device, sync = _device(case)
    layer.to(device)
    x = x.to(device)
    on_cuda = device.type == 'cuda'
    if case.get('eval'):
        layer.eval()
    if case.get('nystrom_cache') is False:  # an eigh in every forward
        layer = PerForwardNystrom(layer)
    if case.get('compile'):
        layer = torch.compile(layer)
    if case.get('fwd_only'):
        def fwd_only():
            with torch.no_grad():
                layer(x)
        start = time.perf_counter()
        fwd_only()  # compiles
        sync()
        first = (time.perf_counter() - start) * 1e3
        samples = time_samples(fwd_only, 1, case.get('repeat', 3), sync)
        return dict(case, fwd_ms=statistics.median(samples),
                    fwd_ms_min=min(samples), fwd_ms_max=max(samples),
                    img_s=case['B'] * 1e3 / statistics.median(samples),
                    first_call_ms=first)
    x.requires_grad_(True)
    # our kernels' library is loaded before the baseline, as libtorch is:
    # its code pages are not the op's memory
    from mmeffattn.ops import cpu_kernels_available
    cpu_kernels_available()  # built or loaded before any timing
    if on_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = peak0 = torch.cuda.memory_allocated(device) / 2**20
    else:
        base, peak0 = rss_mib(), peak_rss_mib()

    autocast = case.get('dtype', 'fp32') != 'fp32'

    def fwd_bwd():
        # mixed precision as AmpOptimWrapper: forward in autocast, backward
        # outside it
        with torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=autocast):
            out = layer(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = out.float().sum()
        loss.backward()

    fwd_bwd()
    sync()
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if on_cuda \
        else peak_rss_mib()
    layer.zero_grad(set_to_none=True)

    def fwd():
        with torch.no_grad(), torch.autocast(device.type,
                                             dtype=torch.bfloat16,
                                             enabled=autocast):
            layer(x)

    reps = case.get('repeat', 5)
    fwd_samples = time_samples(fwd, 1, reps, sync)
    # the fwd+bwd above (the memory reading) was its warm-up
    bwd_samples = time_samples(fwd_bwd, 0, reps, sync)
    layer.zero_grad(set_to_none=True)
    x.grad = None
    return dict(case, **spread('fwd_ms', fwd_samples),
                **spread('fwdbwd_ms', bwd_samples),
                peak_mib=max(peak - base, 0.0),
                peak_is_lower_bound=peak <= peak0 and not on_cuda,
                tensor_peak_mib=peak - base if on_cuda else
                tensor_peak_mib(fwd_bwd))


def run_backbone_round_robin(case):
    """Training steps (fwd+bwd, B images) and inference (eval, no_grad) of
    several full-size backbones built in this one process, each timed round
    robin (a warm-up round, then ``repeat`` rounds), so that the machine's
    drifts hit every variant alike. The first variant's img/s over the
    last's (the baseline) is its ``train_speedup`` / ``infer_speedup``."""
    torch.set_num_threads(case.get('threads', torch.get_num_threads()))
    shared = {k: v for k, v in case.items() if k not in ('variants', 'kind')}
    device, sync = _device(case)
    models = []
    for impl in case['variants']:
        torch.manual_seed(0)
        model, x = build_backbone_case(dict(shared, impl=impl))
        models.append((model.to(device), x.to(device)))

    def step(model, x):
        model.train()
        outs = model(x)
        sum(o.float().sum() for o in outs).backward()
        model.zero_grad(set_to_none=True)

    def infer(model, x):
        model.eval()
        with torch.no_grad():
            model(x)

    repeat = case.get('repeat', 5)
    train = time_round_robin([lambda mx=mx: step(*mx) for mx in models],
                             repeat, sync)
    test = time_round_robin([lambda mx=mx: infer(*mx) for mx in models],
                            repeat, sync)
    rows = []
    for impl, t_train, t_test in zip(case['variants'], train, test):
        row = dict(shared, impl=impl, **spread('train_ms', t_train),
                   **spread('infer_ms', t_test))
        row['train_img_s'] = case['B'] * 1e3 / row['train_ms']
        row['infer_img_s'] = case['B'] * 1e3 / row['infer_ms']
        rows.append(row)
    for row in rows:
        row['train_speedup'] = round(row['train_img_s'] /
                                     rows[-1]['train_img_s'], 3)
        row['infer_speedup'] = round(row['infer_img_s'] /
                                     rows[-1]['infer_img_s'], 3)
    return dict(case, rows=rows)


def run_isolated(case: Dict, timeout: float = 1200) -> Dict:
    """Run ``case`` in a fresh process and parse its last JSON line; a case
    that fails is returned with ``error`` (its stderr's last line)."""
    proc = subprocess.run(
        [sys.executable, PACKAGE, '--case', json.dumps(case)],
        capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return dict(case, error=proc.stderr.strip().splitlines()[-1:]
                    or ['failed'])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='benchmark', description='Run one benchmark case in this '
        'process and print its result as one JSON line.')
    parser.add_argument('--case', required=True, help='the case, as JSON')
    print(json.dumps(run(json.loads(parser.parse_args(argv).case))))
