"""The benchmark tools run and write their table, JSON and plot (no timing
assertions: speed is shown by benchmarks, not by unit tests). The harness
in tools/analysis_tools/benchmark/ runs as its commands (one case:
``python tools/analysis_tools/benchmark --case JSON``); its two modules
without package imports are loaded by their paths."""
import json
import os.path as osp

from helpers import TOOLS, load_tool, run_tool

RUNNER = osp.join(TOOLS, 'analysis_tools', 'benchmark')


def run_case(case, cwd, check=True):
    """One case in a fresh process (the command the suites run)."""
    return run_tool([RUNNER, '--case', json.dumps(case)], cwd, check=check)


def case_result(case, cwd):
    return json.loads(run_case(case, cwd).stdout.strip().splitlines()[-1])


def test_benchmark_quick_writes_json_and_plot(tmp_path):
    out = run_tool([osp.join(TOOLS, 'analysis_tools',
                             'benchmark_attention.py'), '--suite', 'sasa',
                    '--quick', '--out-dir', str(tmp_path)], str(tmp_path))
    assert 'fwdbwd_ms' in out.stdout
    rows = json.load(open(tmp_path / 'sasa.json'))['rows']
    assert {r['impl'] for r in rows} == {'ours', 'unfold', 'conv3x3'}
    assert all('error' not in r and r['fwdbwd_ms'] > 0 for r in rows)
    assert osp.getsize(tmp_path / 'sasa.png') > 1000
    env = json.load(open(tmp_path / 'sasa.json'))['env']
    assert env['commit'] and env['date'] and env['cpu']
    # the docs' tables are rendered from such a folder
    report = run_tool([osp.join(TOOLS, 'analysis_tools',
                                'benchmark_report.py'), str(tmp_path)],
                      str(tmp_path)).stdout
    assert '| ours | ' in report and env['commit'] in report


def test_benchmark_report_renders_the_reference_run():
    import subprocess
    import sys
    repo = osp.dirname(TOOLS)
    out = subprocess.run(
        [sys.executable, osp.join(TOOLS, 'analysis_tools',
                                  'benchmark_report.py'),
         osp.join(repo, 'docs', 'benchmarks')],
        capture_output=True, text=True, check=True).stdout
    for suite in ('sasa', 'set', 'backbone', 'amp', 'deploy', 'vit',
                  'window'):
        assert f'### `{suite}`' in out
    # every table of docs/benchmarks.md is the report's table
    doc = open(osp.join(repo, 'docs', 'benchmarks.md')).read()
    tables = [line for line in out.splitlines() if line.startswith('| ')]
    assert all(line in doc for line in tables)


def test_vit_round_robin_reports_every_variant(tmp_path):
    case = dict(kind='vit', group='vit', arch='deit-tiny', H=32, W=32, B=1,
                repeat=1, threads=1,
                variants=[dict(impl='tome', tome_r=0),
                          dict(impl='tome', tome_r=[2, -1]),
                          dict(impl='castling'), dict(impl='deit')])
    rows = case_result(case, str(tmp_path))['rows']
    assert [r['impl'] for r in rows] == ['tome', 'tome', 'castling', 'deit']
    assert rows[1]['tome_r'] == [2, -1]
    assert all(r['fwd_ms'] > 0 and r['img_s'] > 0 for r in rows)


def test_backbone_round_robin_reports_train_and_inference(tmp_path):
    case = dict(kind='backbones', group='backbone', H=64, W=64, B=2,
                repeat=1, threads=1, variants=['sasa-r50', 'resnet-50'])
    rows = case_result(case, str(tmp_path))['rows']
    assert [r['impl'] for r in rows] == ['sasa-r50', 'resnet-50']
    for r in rows:
        assert r['train_ms_min'] <= r['train_ms'] <= r['train_ms_max']
        assert r['infer_img_s'] > 0
    assert rows[1]['train_speedup'] == rows[1]['infer_speedup'] == 1.0


def test_unknown_backbone_is_named(tmp_path):
    bad = run_case(dict(kind='backbone', impl='vgg', B=1, H=32, W=32),
                   str(tmp_path), check=False)
    assert bad.returncode != 0
    error = bad.stderr.strip().splitlines()[-1]
    assert error.startswith('ValueError') and "'vgg'" in error


def test_profile_backbone_prints_the_op_table(tmp_path):
    proc = run_tool([osp.join(TOOLS, 'analysis_tools', 'profile_backbone.py'),
                     'sasa-r50', '--batch', '2', '--size', '32', '--rows',
                     '40'], str(tmp_path))
    assert 'sasa-r50: one training step, B=2, 32x32' in proc.stdout
    assert 'mmeffattn::local_attention2d_qkv_cpu_backward' in proc.stdout
    by_node = run_tool([osp.join(TOOLS, 'analysis_tools',
                                 'profile_backbone.py'), 'sasa-r50',
                        '--batch', '2', '--size', '32', '--by-node'],
                       str(tmp_path))
    assert 'backward (autograd node)' in by_node.stdout
    assert 'local_attention2d_qkv' in by_node.stdout
    assert 'ConvolutionBackward0 weight' in by_node.stdout
    bad = run_tool([osp.join(TOOLS, 'analysis_tools', 'profile_backbone.py'),
                    'resnet-51'], str(tmp_path), check=False)
    assert bad.returncode == 2 and "unknown backbone 'resnet-51'" in bad.stderr


def test_step_timing_rows_add_up_to_the_passes():
    import torch
    import torch.nn as nn
    step_timing = load_tool('analysis_tools/benchmark/step_timing.py')
    format_step_table, time_step = (step_timing.format_step_table,
                                    step_timing.time_step)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 4, 1))
    x = torch.randn(2, 3, 12, 12)
    fwd, bwd, backward, forward = time_step(model,
                                            lambda: model(x).mean(), 2)
    assert {'Conv2d', 'BatchNorm2d', 'ReLU', 'Sequential'} <= set(forward)
    assert 'ConvolutionBackward0 weight (8, 3, 3, 3) at (12, 12)' in backward
    assert 'NativeBatchNormBackward0' in backward
    # self times and node times are parts of their pass
    assert 0 < sum(forward.values()) <= fwd * 1.001
    assert 0 < sum(backward.values()) <= bwd * 1.001
    table = format_step_table(fwd, bwd, backward, forward, rows=3)
    assert len(table.splitlines()) == 1 + 3 + 1 + 3
    # the hooks are gone: a later forward is not timed
    model(x)
    assert not model._forward_hooks and not model._forward_pre_hooks


def test_size_round_robin_reports_growth(tmp_path):
    case = dict(kind='sizes', layer='set', group='growth', impl='set', B=1,
                C=16, heads=2, sides=[4, 8], repeat=2, threads=1)
    rows = case_result(case, str(tmp_path))['rows']
    assert [(r['H'], r['W']) for r in rows] == [(4, 4), (8, 8)]
    assert 'growth' not in rows[0] and rows[1]['growth'] > 0
    for r in rows:
        assert r['fwdbwd_ms_min'] <= r['fwdbwd_ms'] <= r['fwdbwd_ms_max']


def test_uncached_nystrom_case_recomputes_the_basis(tmp_path):
    """``nystrom_cache=False`` (--suite deploy): every eval forward computes
    each SeT layer's Nystrom basis (an eigendecomposition); SeTAttention
    itself is left as it is."""
    import torch
    from torch.profiler import profile

    from mmeffattn.models import SeTAttention
    row = case_result(dict(kind='backbone', impl='setformer-t', B=1, H=32,
                           W=32, eval=True, fwd_only=True, repeat=1,
                           threads=1, nystrom_cache=False), str(tmp_path))
    assert 'error' not in row and row['fwd_ms'] > 0, row
    cases = load_tool('analysis_tools/benchmark/attention_cases.py')
    torch.manual_seed(0)
    layer, x = cases.build_set_case(dict(impl='set', B=2, C=16, heads=2,
                                         H=4, W=4))
    layer.eval()
    uncached = cases.PerForwardNystrom(layer)

    def eighs(model):
        with torch.no_grad(), profile() as prof:
            out = model(x)
        return out, sum(e.count for e in prof.key_averages()
                        if e.key == 'aten::linalg_eigh')

    (out, cached_eighs), (out_uncached, uncached_eighs) = (
        eighs(layer), eighs(uncached))
    assert (cached_eighs, uncached_eighs) == (0, 1)
    torch.testing.assert_close(out_uncached, out)
    assert type(layer.attn) is SeTAttention
    assert SeTAttention.nystrom_basis.__qualname__ == \
        'SeTAttention.nystrom_basis'
