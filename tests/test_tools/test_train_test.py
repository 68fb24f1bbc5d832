"""End-to-end tool runs on a tiny copy of the embedded demo data."""
import glob
import json
import os
import os.path as osp
import re
import subprocess

import pytest
from helpers import (CLS_CFG, MASK_CFG, REPO, RETINA_CFG, SEG_CFG, SET_CFG,
                     TOOLS, run_tool)

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


# the test.py flags each toolbox supports on the demo configs; Mask R-CNN's
# --tta is refused in one line (mmdet's DetTTAModel merges boxes only)
FLAGS_OK = dict(cls=('--out', '--show-dir', '--tta'),
                retinanet=('--out', '--show-dir', '--tta'),
                upernet=('--out', '--show-dir', '--tta'))
FLAGS_OK['mask-rcnn'] = ('--out', '--show-dir')
FLAGS_OK['set-cls'] = ('--out', )
SHOW_GLOB = dict(cls='vis/*.png', retinanet='*/vis/*.*',
                 upernet='vis/vis_data/vis_image/*.png')
SHOW_GLOB['mask-rcnn'] = '*/vis/*.*'


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CASES))
def test_demo_config_train_and_test(name, demo_cwd, tmp_path):
    """Train 1 epoch, then one tools/test.py run with every flag the
    toolbox supports together (--out, --show-dir, --tta)."""
    cfg, opts, ckpt_name, test_opts, patterns = CASES[name]
    work = str(tmp_path / name)
    run_train(cfg, opts + test_opts, work, demo_cwd)
    ckpt = osp.join(work, ckpt_name)
    assert osp.isfile(ckpt)
    flags = FLAGS_OK[name]
    extra = ['--out', str(tmp_path / 'preds.pkl')]
    if '--show-dir' in flags and name != 'cls':
        extra += ['--show-dir', 'vis']
    if '--tta' in flags:
        extra += ['--tta']
    res = run_test(cfg, ckpt, work, demo_cwd,
                   extra + (['--cfg-options', *test_opts] if test_opts
                            else []))
    for pattern in patterns:
        value = metric(res.stdout + res.stderr, pattern)
        assert value >= 0
    assert osp.getsize(tmp_path / 'preds.pkl') > 0
    if name == 'cls':  # mmpretrain's hook cannot draw TTA batches
        run_test(cfg, ckpt, work, demo_cwd,
                 ['--show-dir', 'vis', '--cfg-options',
                  'test_dataloader.dataset.indices=4'])
    if '--show-dir' in flags:  # painted predictions under work_dir
        assert glob.glob(osp.join(work, SHOW_GLOB[name]))
    if name == 'mask-rcnn':
        proc = run_tool([osp.join(TOOLS, 'test.py'), cfg, ckpt, '--work-dir',
                         work, '--tta'], demo_cwd, check=False)
        assert proc.returncode != 0
        assert 'DetTTAModel merges boxes only' in proc.stderr.splitlines()[-1]


@pytest.mark.slow
def test_dist_train_and_test_match_single_process(demo_cwd, tmp_path):
    work = str(tmp_path / 'dist')
    env = dict(PORT='29611')
    proc = run_tool([osp.join(TOOLS, 'dist_train.sh'), CLS_CFG, '2',
                     '--work-dir', work, '--cfg-options', *EPOCH_OPTS,
                     'train_dataloader.batch_size=16',
                     'default_hooks.logger.interval=1'], demo_cwd, env)
    # 128 digits / (2 x 16): 4 iterations, then the evaluation
    assert re.search(r'Epoch\(train\)\s+\[1\]\[\s*4/4\]',
                     proc.stdout + proc.stderr)
    ckpt = osp.join(work, 'epoch_1.pth')
    single = run_test(CLS_CFG, ckpt, work, demo_cwd)
    double = run_tool([osp.join(TOOLS, 'dist_test.sh'), CLS_CFG, ckpt, '2',
                       '--work-dir', work], demo_cwd, dict(PORT='29612'))
    pattern = r'accuracy/top1: ([\d.]+)'
    assert metric(single.stdout + single.stderr, pattern) == metric(
        double.stdout + double.stderr, pattern)


def _no_venv_env():
    """The environment of a shell without an activated venv or $PYTHON."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHON', 'VIRTUAL_ENV')}
    env['PATH'] = os.pathsep.join(
        p for p in env.get('PATH', '').split(os.pathsep)
        if not osp.isfile(osp.join(p, 'activate')))
    return env


@pytest.mark.slow
def test_dist_train_setformer_without_activated_venv(demo_cwd, tmp_path):
    """SeTformer (output norms of unused stages) trains >= 3 iterations on
    2 processes and evaluates; the launcher finds the project's .venv."""
    if not osp.isfile(osp.join(REPO, '.venv', 'bin', 'python')):
        pytest.skip('no project .venv (make env) to find')
    work = str(tmp_path / 'dist-set')
    env = _no_venv_env()
    env.update(PORT='29613', OMP_NUM_THREADS='1')
    proc = subprocess.run(
        ['bash', osp.join(TOOLS, 'dist_train.sh'), SET_CFG, '2', '--work-dir',
         work, '--cfg-options', *EPOCH_OPTS, 'train_dataloader.batch_size=16',
         'default_hooks.logger.interval=1'],
        cwd=demo_cwd, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert re.search(r'Epoch\(train\)\s+\[1\]\[\s*4/4\]', out), out[-3000:]
    assert metric(out, r'accuracy/top1: ([\d.]+)') >= 0


def test_launcher_without_python_names_the_fix(tmp_path):
    env = dict(os.environ, PYTHON=str(tmp_path / 'no-python'))
    proc = subprocess.run(['bash', osp.join(TOOLS, 'dist_train.sh'), 'x.py',
                           '2'], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert 'make env' in proc.stderr and '.venv/bin/activate' in proc.stderr


def _losses(work_dir):
    rows = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        for line in open(path):
            row = json.loads(line)
            if 'loss' in row:
                rows.append((row['step'], row['loss']))
    return dict(rows)


@pytest.mark.slow
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


CASTLING_CFG = osp.join(osp.dirname(CLS_CFG),
                        'castling-vit-demo_1xb64-60e_digits.py')


SPARSE_CFG = osp.join(osp.dirname(CLS_CFG),
                      'sparseformer-demo_1xb64-30e_digits.py')


@pytest.mark.slow
@pytest.mark.parametrize('cfg', [CLS_CFG, SET_CFG, CASTLING_CFG, SPARSE_CFG])
def test_published_demo_checkpoints_reproduce(cfg, demo_cwd, tmp_path):
    """The model-zoo demo checkpoints load weights-only (outside any
    work_dir) and still classify the held-out digits (first 64 here)."""
    name = osp.splitext(osp.basename(cfg))[0]
    ckpt = glob.glob(osp.join(osp.dirname(TOOLS), 'checkpoints', 'demo',
                              f'{name}_*.pth'))
    assert len(ckpt) == 1
    res = run_test(cfg, ckpt[0], str(tmp_path), demo_cwd)
    assert metric(res.stdout + res.stderr, r'accuracy/top1: ([\d.]+)') >= 92
