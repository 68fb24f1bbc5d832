"""tools/analysis_tools/seg_demo_figure.py draws the published UperNet
demo's predictions, and names a missing checkpoint."""
import os.path as osp

import pytest
from helpers import DEMO, TOOLS, published_checkpoint, run_tool


@pytest.mark.slow
def test_seg_demo_figure_tool(demo_cwd, tmp_path):
    import cv2
    name = 'upernet_sasa-r26-demo_1xb16-1500iter_digits-64x64'
    out = str(tmp_path / 'fig.png')
    run_tool([osp.join(TOOLS, 'analysis_tools', 'seg_demo_figure.py'),
              osp.join(DEMO, name + '.py'), published_checkpoint(name),
              '--num', '2', '--scale', '1', '--out', out], demo_cwd)
    assert cv2.imread(out).shape == (2 * 64, 3 * 64, 3)
    bad = run_tool([osp.join(TOOLS, 'analysis_tools', 'seg_demo_figure.py'),
                    osp.join(DEMO, name + '.py'), 'nowhere.pth', '--out',
                    out], demo_cwd, check=False)
    assert bad.returncode == 2 and 'nowhere.pth' in bad.stderr
