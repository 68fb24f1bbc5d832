"""The benchmark script runs and writes its table, JSON and plot (no timing
assertions: speed is shown by benchmarks, not by unit tests)."""
import json
import os.path as osp

from conftest import TOOLS, run_tool


def test_benchmark_quick_writes_json_and_plot(tmp_path):
    out = run_tool([osp.join(TOOLS, 'analysis_tools',
                             'benchmark_attention.py'), '--suite', 'sasa',
                    '--quick', '--out-dir', str(tmp_path)], str(tmp_path))
    assert 'fwdbwd_ms' in out.stdout
    rows = json.load(open(tmp_path / 'sasa.json'))['rows']
    assert {r['impl'] for r in rows} == {'ours', 'unfold', 'conv3x3'}
    assert all('error' not in r and r['fwdbwd_ms'] > 0 for r in rows)
    assert osp.getsize(tmp_path / 'sasa.png') > 1000
