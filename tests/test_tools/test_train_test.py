"""End-to-end tool runs on a tiny copy of the embedded demo data."""
import glob
import json
import os.path as osp
import re

import pytest

from conftest import (CLS_CFG, MASK_CFG, RETINA_CFG, SEG_CFG, SET_CFG, TOOLS,
                      run_tool)

EPOCH_OPTS = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
              'default_hooks.checkpoint.interval=1']
# (config, train options, checkpoint, test options, metric patterns); after
# two iterations detectors score low: test with score_thr 0 so COCO eval runs
CASES = {
    'cls': (CLS_CFG, EPOCH_OPTS, 'epoch_1.pth', [],
            [r'accuracy/top1: ([\d.]+)']),
    'set-cls': (SET_CFG, EPOCH_OPTS, 'epoch_1.pth', [],
                [r'accuracy/top1: ([\d.]+)']),
    'retinanet': (RETINA_CFG, EPOCH_OPTS, 'epoch_1.pth',
                  ['model.test_cfg.score_thr=0.0'],
                  [r'coco/bbox_mAP: ([\d.]+)']),
    'mask-rcnn': (MASK_CFG, EPOCH_OPTS, 'epoch_1.pth',
                  ['model.test_cfg.rcnn.score_thr=0.0'],
                  [r'coco/bbox_mAP: ([\d.]+)', r'coco/segm_mAP: ([\d.]+)']),
    'upernet': (SEG_CFG, ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                          'default_hooks.checkpoint.interval=2'],
                'iter_2.pth', [], [r'mIoU: ([\d.]+)']),
}


def metric(text, pattern):
    found = re.findall(pattern, text)
    assert found, f'{pattern} not in output:\n{text[-3000:]}'
    return float(found[-1])


def run_train(cfg, opts, work_dir, cwd, extra=()):
    return run_tool([osp.join(TOOLS, 'train.py'), cfg, '--work-dir',
                     work_dir, *extra, '--cfg-options', *opts], cwd)


def run_test(cfg, ckpt, work_dir, cwd, extra=()):
    return run_tool([osp.join(TOOLS, 'test.py'), cfg, ckpt, '--work-dir',
                     work_dir, *extra], cwd)


@pytest.mark.parametrize('name', sorted(CASES))
def test_demo_config_train_and_test(name, demo_cwd, tmp_path):
    cfg, opts, ckpt_name, test_opts, patterns = CASES[name]
    work = str(tmp_path / name)
    run_train(cfg, opts + test_opts, work, demo_cwd)
    ckpt = osp.join(work, ckpt_name)
    assert osp.isfile(ckpt)
    res = run_test(cfg, ckpt, work, demo_cwd,
                   ['--out', str(tmp_path / 'preds.pkl')] +
                   (['--cfg-options', *test_opts] if test_opts else []))
    for pattern in patterns:
        value = metric(res.stdout + res.stderr, pattern)
        assert value >= 0
    assert osp.getsize(tmp_path / 'preds.pkl') > 0
    if name in ('cls', 'retinanet'):  # painted predictions under work_dir
        run_test(cfg, ckpt, work, demo_cwd,
                 ['--show-dir', 'vis', '--cfg-options',
                  'test_dataloader.dataset.indices=2', *test_opts])
        assert glob.glob(osp.join(work, '**', 'vis', '*.*'), recursive=True)


def test_dist_train_and_test_match_single_process(demo_cwd, tmp_path):
    work = str(tmp_path / 'dist')
    env = dict(PORT='29611')
    run_tool([osp.join(TOOLS, 'dist_train.sh'), CLS_CFG, '2', '--work-dir',
              work, '--cfg-options', *EPOCH_OPTS], demo_cwd, env)
    ckpt = osp.join(work, 'epoch_1.pth')
    single = run_test(CLS_CFG, ckpt, work, demo_cwd)
    double = run_tool([osp.join(TOOLS, 'dist_test.sh'), CLS_CFG, ckpt, '2',
                       '--work-dir', work], demo_cwd, dict(PORT='29612'))
    pattern = r'accuracy/top1: ([\d.]+)'
    assert metric(single.stdout + single.stderr, pattern) == metric(
        double.stdout + double.stderr, pattern)


def _losses(work_dir):
    rows = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        for line in open(path):
            row = json.loads(line)
            if 'loss' in row:
                rows.append((row['step'], row['loss']))
    return dict(rows)


def test_resume_reproduces_uninterrupted_run(demo_cwd, tmp_path):
    opts = ['randomness.deterministic=True', 'randomness.seed=3',
            'default_hooks.logger.interval=1',
            'default_hooks.checkpoint.interval=1', 'train_cfg.val_interval=9',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False']
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    run_train(CLS_CFG, opts + ['train_cfg.max_epochs=2'], full, demo_cwd)
    run_train(CLS_CFG, opts + ['train_cfg.max_epochs=1'], part, demo_cwd)
    run_train(CLS_CFG, opts + ['train_cfg.max_epochs=2'], part, demo_cwd,
          ['--resume', osp.join(part, 'epoch_1.pth')])
    a, b = _losses(full), _losses(part)
    assert len(a) == 4 and set(a) == set(b)
    for step in (3, 4):  # iterations after the resume point
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize('cfg', [CLS_CFG, SET_CFG])
def test_published_demo_checkpoints_reproduce(cfg, demo_cwd, tmp_path):
    """The model-zoo demo checkpoints load weights-only (outside any
    work_dir) and still classify the held-out digits (first 64 here)."""
    name = osp.splitext(osp.basename(cfg))[0]
    ckpt = glob.glob(osp.join(osp.dirname(TOOLS), 'checkpoints', 'demo',
                              f'{name}_*.pth'))
    assert len(ckpt) == 1
    res = run_test(cfg, ckpt[0], str(tmp_path), demo_cwd)
    assert metric(res.stdout + res.stderr, r'accuracy/top1: ([\d.]+)') >= 92
