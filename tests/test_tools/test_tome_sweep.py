"""tools/analysis_tools/tome_sweep.py on the published ViT demo checkpoints:
the plain ViT loads into ToMe off the shelf, accuracy holds at small r, and
the sweep writes its JSON and plot."""
import glob
import json
import os.path as osp

import pytest
from helpers import DEMO, REPO, run_tool

VIT_CFG = osp.join(DEMO, 'vit-demo_1xb64-60e_digits.py')
TOME_CFG = osp.join(DEMO, 'tome-r8_vit-demo_1xb64-60e_digits.py')


def published(cfg):
    name = osp.splitext(osp.basename(cfg))[0]
    ckpt = glob.glob(osp.join(REPO, 'checkpoints', 'demo', f'{name}_*.pth'))
    assert len(ckpt) == 1, f'no published checkpoint for {name}'
    return ckpt[0]


@pytest.mark.slow
def test_sweep_writes_plot_and_keeps_accuracy(demo_cwd, tmp_path):
    out = tmp_path / 'tome.png'
    proc = run_tool(
        [osp.join(REPO, 'tools/analysis_tools/tome_sweep.py'),
         '--model', VIT_CFG, published(VIT_CFG),
         '--model', TOME_CFG, published(TOME_CFG),
         '--label', 'plain', '--label', 'trained with ToMe',
         '--r', '0', '8', '32', '--batch-size', '8', '--repeat', '1',
         '--out', str(out)], cwd=demo_cwd)
    assert out.stat().st_size > 10_000
    res = json.load(open(tmp_path / 'tome.json'))
    plain, tome = (r['rows'] for r in res['results'])
    assert [row['r'] for row in plain] == [0, 8, 32]
    # the held-out digits (64 here): the published checkpoints reproduce
    assert plain[0]['top1'] >= 92, proc.stdout
    assert tome[1]['top1'] >= 92, proc.stdout  # at its training r
    assert res['results'][1]['trained_r'] == 8


@pytest.mark.slow
def test_sweep_rejects_a_non_vit_config(demo_cwd):
    proc = run_tool([osp.join(REPO, 'tools/analysis_tools/tome_sweep.py'),
                     '--model', osp.join(DEMO,
                                         'sasa-r26-demo_1xb64-20e_digits.py'),
                     published(VIT_CFG)], cwd=demo_cwd, check=False)
    assert proc.returncode != 0
    assert 'needs a VisionTransformer' in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith('ValueError')
