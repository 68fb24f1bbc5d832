"""tools/analysis_tools/get_flops.py prints the parameters and FLOPs of a
config's model."""
import os.path as osp
import re

import pytest
from helpers import CLS_CFG, TOOLS, run_tool


@pytest.mark.slow
def test_get_flops_prints_params_and_flops(tmp_path):
    out = run_tool([osp.join(TOOLS, 'analysis_tools', 'get_flops.py'),
                    CLS_CFG, '--shape', '32'], str(tmp_path))
    assert re.search(r'Params: [\d.]+ M', out.stdout)
    assert re.search(r'FLOPs \(2 x MACs\): [\d.]+ G', out.stdout)
