"""tools/analysis_tools/get_memory.py reports a config's training memory,
enforces the limit, and names a config it cannot measure in one line."""
import os.path as osp

import pytest
from helpers import CLS_CFG, DEMO, TOOLS, load_tool, run_tool


@pytest.mark.slow
def test_get_memory_reports_and_enforces_the_limit(tmp_path):
    tool = osp.join(TOOLS, 'analysis_tools', 'get_memory.py')
    out = run_tool([tool, CLS_CFG, '--shape', '32', '32', '--json',
                    str(tmp_path / 'm.json')],
                   str(tmp_path))
    import json
    row, = json.load(open(tmp_path / 'm.json'))
    assert row['shape'] == [32, 32] and row['batch_per_gpu'] == 64
    assert row['act_per_image_mib'] > 0 and row['state_mib'] > 0
    assert 'sasa-r26-demo_1xb64-20e_digits | 32x32 | 64 |' in out.stdout
    over = run_tool([tool, CLS_CFG, '--shape', '32', '32', '--limit-gib',
                     '1e-6'], str(tmp_path),
                    check=False)
    assert over.returncode == 1 and 'over 1e-06 GiB' in over.stderr


@pytest.mark.slow
def test_get_memory_names_an_unmeasurable_config_in_one_line(tmp_path):
    """Measured in a child process (several configs): its failure is one
    line naming the config, not a CalledProcessError."""
    import argparse
    tool = load_tool('analysis_tools/get_memory.py')
    bad = tmp_path / 'no-size.py'
    base = osp.join(DEMO, 'setformer-demo_1xb64-30e_digits.py')
    bad.write_text(
        f"_base_ = ['{base}']\n"
        "train_dataloader = dict(dataset=dict(data_root='elsewhere/'))\n")
    args = argparse.Namespace(shape=None, batch_size=None, downscale=1,
                              cfg_options=None)
    with pytest.raises(tool.MeasureError) as info:
        tool.measure(str(bad), args, isolated=True)
    msg = str(info.value)
    assert msg.startswith(f'{bad}: cannot infer the train input size')
    assert '\n' not in msg and 'not measured' not in msg
