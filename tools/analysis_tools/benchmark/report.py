"""The JSON of one ``benchmark_attention.py`` run as Markdown tables (the
tables of docs/benchmarks.md): one renderer per suite, ratios first, times
as medians with (min-max)."""
import json
import os.path as osp


def _ms(row, key):
    return (f'{row[key]:.1f} ({row[key + "_min"]:.1f}–'
            f'{row[key + "_max"]:.1f})')


def _table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def _find(rows, **kw):
    for r in rows:
        if 'error' not in r and all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def sasa(rows):
    out = []
    head = [r for r in rows if r['group'] == 'headline']
    conv = _find(head, impl='conv3x3')
    out.append('Headline layer (B=8, C=128, 56×56, k=7, 8 heads):\n')
    out.append(_table(
        ['impl', 'fwd+bwd / conv', 'fwd+bwd ms', 'fwd ms',
         'peak RSS / tensor peak MiB'],
        [[r['impl'], f'{r["fwdbwd_ms"] / conv["fwdbwd_ms"]:.2f}×',
          _ms(r, 'fwdbwd_ms'), f'{r["fwd_ms"]:.1f}',
          f'{r["peak_mib"]:.0f} / {r["tensor_peak_mib"]:.0f}']
         for r in head]))
    for group, key, label in (('sweep_k', 'k', 'k'),
                              ('sweep_size', 'H', 'H=W')):
        sel = [r for r in rows if r['group'] in (group, 'headline')
               and 'error' not in r]
        xs = sorted({r[key] for r in sel})
        impls = [i for i in ('ours', 'unfold', 'conv3x3')
                 if any(r['impl'] == i and r['group'] == group
                        for r in sel)]
        body = []
        for impl in impls:
            cells = []
            for x in xs:
                r = _find(sel, impl=impl, **{key: x})
                cells.append(f'{r["fwdbwd_ms"]:.1f}' if r else '')
            body.append([impl] + cells)
        out.append(f'\nSweep over {label}, fwd+bwd ms:\n')
        out.append(_table([label] + [str(x) for x in xs], body))
    return '\n'.join(out)


def set_(rows):
    body = []
    for side in sorted({r['H'] for r in rows if r['group'] == 'tokens'}):
        s = _find(rows, group='tokens', impl='set', H=side)
        d = _find(rows, group='tokens', impl='sdpa', H=side)
        if not (s and d):
            continue
        body.append([
            side * side, f'**{d["fwdbwd_ms"] / s["fwdbwd_ms"]:.2f}×**',
            _ms(s, 'fwdbwd_ms'), _ms(d, 'fwdbwd_ms'),
            f'{s["peak_mib"]:.1f} / {d["peak_mib"]:.1f}',
            f'{s["tensor_peak_mib"]:.1f} / {d["tensor_peak_mib"]:.1f}'])
    text = _table(['tokens N', 'SDPA / SeT fwd+bwd time', 'SeT fwd+bwd ms',
                   'SDPA fwd+bwd ms', 'peak RSS SeT / SDPA MiB',
                   'tensor peak SeT / SDPA MiB'], body)
    growth = [r for r in rows if r['group'] == 'growth' and 'growth' in r]
    if growth:
        text += (f'\n\nSeT time per 4× tokens ({growth[0]["H"] // 2}² → '
                 f'{growth[0]["H"]}², timed round robin in one process): '
                 f'**{growth[0]["growth"]:.2f}×**.')
    return text


def backbone(rows):
    return _table(
        ['backbone', 'train img/s vs baseline', 'infer img/s vs baseline',
         'train step ms', 'infer ms'],
        [[r['impl'], f'{r["train_speedup"]:.2f}×',
          f'{r["infer_speedup"]:.2f}×', _ms(r, 'train_ms'),
          _ms(r, 'infer_ms')] for r in rows if 'error' not in r])


def amp(rows):
    body = []
    for arch in dict.fromkeys(r['impl'] for r in rows):
        f = _find(rows, impl=arch, dtype='fp32')
        b = _find(rows, impl=arch, dtype='bf16')
        if f and b:
            body.append([arch, f'{b["fwdbwd_ms"] / f["fwdbwd_ms"]:.2f}',
                         _ms(f, 'fwdbwd_ms'), _ms(b, 'fwdbwd_ms'),
                         f'{f["tensor_peak_mib"]:.0f} / '
                         f'{b["tensor_peak_mib"]:.0f}'])
    return _table(['backbone', 'bf16 / fp32 time', 'fp32 fwd+bwd ms',
                   'bf16 fwd+bwd ms', 'tensor peak fp32 / bf16 MiB'], body)


def deploy(rows):
    body = []
    for arch in dict.fromkeys(r['impl'] for r in rows):
        e = _find(rows, impl=arch, compile=False)
        c = _find(rows, impl=arch, compile=True)
        if e and c:
            body.append([arch, f'{e["fwd_ms"] / c["fwd_ms"]:.2f}×',
                         _ms(e, 'fwd_ms'), _ms(c, 'fwd_ms'),
                         f'{c["first_call_ms"] / 1000:.0f} s'])
    text = _table(['backbone', 'compile speed-up', 'eager ms',
                   'torch.compile ms', 'first compiled call'], body)
    nc = _find(rows, nystrom_cache=False)
    e = _find(rows, impl='setformer-t', compile=False)
    if nc and e:
        text += ('\n\nSeTformer-T with the Nyström normalisation cached by '
                 f'`eval()`: {e["fwd_ms"]:.1f} ms; recomputed every forward: '
                 f'{nc["fwd_ms"]:.1f} ms '
                 f'(**{nc["fwd_ms"] / e["fwd_ms"]:.2f}×**).')
    return text


def vit(rows):
    return _table(
        ['backbone', 'input', 'img/s vs baseline', 'fwd ms', 'img/s'],
        [[r['arch'] + (f' ToMe r={r["tome_r"]}' if r['impl'] == 'tome'
                       else f' {r["impl"]}'),
          f'{r["H"]}²', f'**{r.get("speedup", float("nan")):.2f}×**',
          _ms(r, 'fwd_ms'), f'{r["img_s"]:.1f}']
         for r in rows if 'error' not in r])


def window(rows):
    body = []
    for side in sorted({r['H'] for r in rows}):
        o = _find(rows, impl='ours', H=side)
        e = _find(rows, impl='einsum', H=side)
        g = _find(rows, impl='global', H=side)
        if o and e and g:
            body.append([
                f'{side}' + (' (padded)' if side % 7 else ''),
                f'{g["fwdbwd_ms"] / o["fwdbwd_ms"]:.2f}×',
                f'{e["fwdbwd_ms"] / o["fwdbwd_ms"]:.2f}×',
                _ms(o, 'fwdbwd_ms'), f'{e["fwdbwd_ms"]:.1f}',
                f'{g["fwdbwd_ms"]:.1f}',
                f'{o["peak_mib"]:.0f} / {e["peak_mib"]:.0f} / '
                f'{g["peak_mib"]:.0f}'])
    return _table(['side', 'global / ours time', 'einsum / ours time',
                   'ours fwd+bwd ms', 'einsum ms', 'global ms',
                   'peak RSS ours / einsum / global MiB'], body)


RENDER = dict(sasa=sasa, set=set_, backbone=backbone, amp=amp,
              deploy=deploy, vit=vit, window=window)


def render(folder: str) -> str:
    parts, envs = [], []
    for suite, fn in RENDER.items():
        path = osp.join(folder, f'{suite}.json')
        if not osp.exists(path):
            continue
        with open(path) as f:
            data = json.load(f)
        envs.append(data['env'])
        parts.append(f'### `{suite}`\n\n' + fn(data['rows']) + '\n')
    if envs:
        env = envs[0]
        parts.insert(0, f'Run: `{env.get("command", "")}`; '
                     f'{env.get("date", "date unknown")}, commit '
                     f'{env.get("commit", "unknown")}, {env.get("cpu", "")}, '
                     f'torch {env["torch"]}, {env["threads"]} threads.\n')
    return '\n'.join(parts)
