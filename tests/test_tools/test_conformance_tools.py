"""The benchmark runs on a named device."""
import json
import os.path as osp

import torch
from helpers import TOOLS, run_tool


def test_benchmark_device_flag(tmp_path):
    script = osp.join(TOOLS, 'analysis_tools', 'benchmark_attention.py')

    def main(argv):
        return run_tool([script] + argv, str(tmp_path), check=False)

    bad = main(['--device', 'tpu'])
    assert bad.returncode == 2 and "--device must be 'cpu'" in bad.stderr
    if not torch.cuda.is_available():
        bad = main(['--device', 'cuda'])
        assert bad.returncode == 2 and 'no CUDA device here' in bad.stderr
        return
    case = dict(kind='window', impl='ours', B=1, C=8, heads=2, window=4,
                H=6, W=6, repeat=1, device='cuda')
    row = json.loads(run_tool(
        [osp.join(TOOLS, 'analysis_tools', 'benchmark'), '--case',
         json.dumps(case)], str(tmp_path)).stdout.strip().splitlines()[-1])
    assert 'error' not in row and row['fwd_ms'] > 0, row
