"""One benchmark case per process.

    python -m mmeffattn.benchmarks.cases --case JSON

Prints one JSON line: fwd and fwd+bwd median ms (with the min and max of the
repeats) and the fwd+bwd peak memory; round-robin kinds ('vit', 'backbones',
'sizes') print one row per variant or size. A case's ``device`` ('cpu' by
default, 'cuda' or 'cuda:N') is where the layer and its input live; on CUDA
every timing synchronises and the peak memory is
``torch.cuda.max_memory_allocated`` above what was allocated before.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

from mmeffattn.utils.benchmark import (peak_rss_mib, rss_mib, tensor_peak_mib,
                                       time_round_robin, time_samples)


def _device(case):
    """(device, sync) of a case."""
    device = torch.device(case.get('device', 'cpu'))
    if device.type == 'cuda':
        return device, lambda: torch.cuda.synchronize(device)
    return device, lambda: None


class SASALayer(nn.Module):
    """1x1 q/k/v projections (one conv) + local attention: ``ours`` (the
    layer's path, :func:`local_attention2d_qkv`) or ``unfold`` (naive)."""

    def __init__(self, channels, kernel_size, heads, impl):
        super().__init__()
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        d = channels // heads
        self.rel_row = nn.Parameter(torch.randn(kernel_size, d // 2))
        self.rel_col = nn.Parameter(torch.randn(kernel_size, d // 2))
        self.k, self.heads, self.impl = kernel_size, heads, impl

    def forward(self, x):
        from mmeffattn.ops import (local_attention2d_qkv,
                                   local_attention2d_unfold)
        qkv = self.qkv(x)
        if self.impl == 'ours':
            return local_attention2d_qkv(qkv, self.heads, self.rel_row,
                                         self.rel_col, self.k)
        b, c, h, w = x.shape
        q, k, v = qkv.view(b, 3, self.heads, c // self.heads, h,
                           w).permute(1, 0, 2, 4, 5, 3)
        out = local_attention2d_unfold(q, k, v, self.rel_row, self.rel_col,
                                       self.k)
        return out.permute(0, 1, 4, 2, 3).reshape(b, c, h, w)


class WindowAttentionCase(nn.Module):
    """AlterNet's window attention on a (B, 3C, H, W) q|k|v map: ``ours``
    (one masked SDPA call over padded windows), ``einsum`` (the reference
    code's explicit logits + softmax per window, same padding and mask) or
    ``global`` (SDPA over the whole map: what the window replaces)."""

    def __init__(self, heads, window, impl):
        super().__init__()
        self.heads, self.window, self.impl = heads, window, impl
        self.table = nn.Parameter(torch.randn(2 * window - 1, 2 * window - 1))

    def forward(self, x):
        from mmeffattn.ops.window_attention import (padding_mask,
                                                    relative_position_index,
                                                    window_attention2d,
                                                    window_merge,
                                                    window_partition)
        q, k, v = x.chunk(3, dim=1)
        if self.impl == 'ours':
            return window_attention2d(q, k, v, self.window, self.table,
                                      self.heads)
        b, c, h, w = q.shape
        if self.impl == 'global':
            def split(t):
                return t.view(b, self.heads, -1, h * w).transpose(-1, -2)
            out = torch.nn.functional.scaled_dot_product_attention(
                split(q), split(k), split(v))
            return out.transpose(-1, -2).reshape(b, c, h, w)
        ws = self.window
        (qw, hp, wp), (kw, _, _), (vw, _, _) = (
            window_partition(t, ws) for t in (q, k, v))
        qw, kw, vw = (t.unflatten(-1, (self.heads, -1)) for t in (qw, kw, vw))
        logits = torch.einsum('bnihd,bnjhd->bnhij', qw, kw) * qw.shape[-1]**-.5
        logits = logits + self.table.flatten()[relative_position_index(
            ws).to(x.device)]
        if (hp, wp) != (h, w):
            valid = padding_mask(h, w, ws, x.device)       # (nW,1,1,w*w)
            logits = logits.masked_fill(~valid, float('-inf'))
        out = torch.einsum('bnhij,bnjhd->bnihd', logits.softmax(-1), vw)
        return window_merge(out.flatten(-2), ws, h, w, hp, wp)


def build(case):
    kind = case['kind']
    if kind == 'window':
        b, c, h, w = case['B'], case['C'], case['H'], case['W']
        layer = WindowAttentionCase(case['heads'], case['window'],
                                    case['impl'])
        return layer, torch.randn(b, 3 * c, h, w)
    if kind == 'sasa':
        b, c, h, w = case['B'], case['C'], case['H'], case['W']
        if case['impl'] == 'conv3x3':
            layer = nn.Conv2d(c, c, 3, padding=1, bias=False)
        else:
            layer = SASALayer(c, case['k'], case['heads'], case['impl'])
        return layer, torch.randn(b, c, h, w)
    if kind == 'set':
        from mmeffattn.benchmarks.set_cases import build_set_case
        return build_set_case(case)
    if kind == 'backbone':
        from mmeffattn.benchmarks.set_cases import build_backbone_case
        return build_backbone_case(case)
    raise ValueError(f'unknown case kind {kind!r}')


def build_vit_case(case):
    """A ViT-family backbone: ``impl`` 'tome' (ToMeVisionTransformer with
    ``tome_r``; r=0 is mmpretrain's ViT), 'castling' or 'deit' (mmpretrain's
    VisionTransformer) of ``arch``."""
    from mmpretrain.models.backbones import VisionTransformer

    from mmeffattn.models import CastlingViT, ToMeVisionTransformer
    common = dict(arch=case['arch'], img_size=case['H'], patch_size=16)
    impl = case['impl']
    if impl == 'tome':
        r = case.get('tome_r', 0)
        model = ToMeVisionTransformer(
            tome_r=tuple(r) if isinstance(r, list) else r, **common)
    elif impl == 'castling':
        model = CastlingViT(**common)
    elif impl == 'deit':
        model = VisionTransformer(**common)
    else:
        raise ValueError(f'unknown vit impl {impl!r}')
    return model, torch.randn(case['B'], 3, case['H'], case['W'])


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
    if case.get('nystrom_cache') is False:  # the per-forward eigh of v0.1
        from mmeffattn.models import SeTAttention
        from mmeffattn.ops import nystrom_basis
        SeTAttention.nystrom_basis = lambda self: nystrom_basis(
            self.anchors, self.kernel_sigma)
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
    from mmeffattn.ops.cpu_extension import load_cpu_extension
    load_cpu_extension()
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


def spread(name, samples):
    """``name``: the median of the samples; ``name_min``/``name_max``."""
    return {name: statistics.median(samples), f'{name}_min': min(samples),
            f'{name}_max': max(samples)}


def run_backbone_round_robin(case):
    """Training steps (fwd+bwd, B images) and inference (eval, no_grad) of
    several full-size backbones built in this one process, each timed round
    robin (a warm-up round, then ``repeat`` rounds), so that the machine's
    drifts hit every variant alike. The first variant's img/s over the
    last's (the baseline) is its ``train_speedup`` / ``infer_speedup``."""
    from mmeffattn.benchmarks.set_cases import build_backbone_case
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


if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument('--case', required=True)
    print(json.dumps(run(json.loads(parser.parse_args().case))))
