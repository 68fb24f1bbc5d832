"""Runs and checkpoints under faults: a save that fails keeps the previous
checkpoint, pickled code never runs from an untrusted file, sha256 names are
verified, wrong weights are refused, one run per work_dir, and a failed
start leaves no folder behind."""
import glob
import hashlib
import os
import os.path as osp
import shutil

import pytest
import torch
from helpers import (CLS_CFG, REPO, RETINA_CFG, SEG_CFG, TOOLS, load_tool,
                     published_checkpoint, run_tool)

CLS_NAME = 'sasa-r26-demo_1xb64-20e_digits'
SET_NAME = 'setformer-demo_1xb64-30e_digits'
# two tiny epochs: 8 digits, batch 4, no evaluation
TINY = ['train_cfg.max_epochs=2', 'train_cfg.val_begin=9',
        'train_dataloader.dataset.indices=8', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=1']

# runs tools/train.py with the disk "full" at the second checkpoint: half
# the bytes land, then ENOSPC (what a full disk does to a write)
FILL_DISK = '''
import errno, runpy, sys
from mmengine.fileio import LocalBackend
put, calls = LocalBackend.put, []
def put_until_full(self, obj, filepath):
    if 'epoch_' in str(filepath):
        calls.append(filepath)
        if len(calls) == 2:
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, 'No space left on device')
    return put(self, obj, filepath)
LocalBackend.put = put_until_full
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.mark.slow
def test_full_disk_keeps_the_previous_checkpoint(demo_cwd, tmp_path):
    work = tmp_path / 'work'
    script = tmp_path / 'fill_disk.py'
    script.write_text(FILL_DISK)
    train = osp.join(TOOLS, 'train.py')
    # --resume in an empty work_dir: starts from scratch, says so
    proc = run_tool([str(script), train, CLS_CFG, '--work-dir', str(work),
                     '--resume', '--cfg-options', *TINY], demo_cwd,
                    check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'training starts from scratch' in out
    assert 'latest checkpoint None' not in out
    last = proc.stderr.strip().splitlines()[-1]
    assert f'saving checkpoint {work}/epoch_2.pth failed: No space left ' \
        'on device' in last
    assert 'MiB free' in last and f'{work}/epoch_1.pth is intact' in last
    assert sorted(os.listdir(work)) == sorted(
        ['.lock', 'epoch_1.pth', 'last_checkpoint', CLS_NAME + '.py'] +
        [d for d in os.listdir(work) if d[:2] == '20'])
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_1.pth')
    torch.load(work / 'epoch_1.pth', weights_only=False)  # whole, loadable

    proc = run_tool([train, CLS_CFG, '--work-dir', str(work), '--resume',
                     '--cfg-options', *TINY], demo_cwd)
    assert 'resumed epoch: 1' in proc.stdout + proc.stderr
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_2.pth')
    assert not (work / 'epoch_1.pth').exists()  # max_keep_ckpts=1, after
    assert torch.load(work / 'epoch_2.pth', weights_only=False)['meta'][
        'epoch'] == 2


def test_configs_save_through_the_atomic_hook():
    """tools/train.py swaps mmengine's CheckpointHook of any config."""
    from mmengine.config import Config

    from mmeffattn.utils.launch import use_atomic_checkpoints
    for path in (CLS_CFG, SEG_CFG, RETINA_CFG, osp.join(
            REPO, 'configs', 'sasa', 'sasa-r26_32xb128-130e_in1k.py')):
        cfg = Config.fromfile(path)
        use_atomic_checkpoints(cfg)
        assert cfg.default_hooks.checkpoint.type == \
            'mmeffattn.AtomicCheckpointHook', path


class Payload:
    """Unpickling runs ``os.mkdir(marker)``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker, ))


@pytest.fixture
def payload_ckpt(tmp_path):
    """A checkpoint with real SASA demo weights whose meta runs code."""
    src = torch.load(published_checkpoint(CLS_NAME), weights_only=True)
    run = tmp_path / 'downloads' / 'run'
    run.mkdir(parents=True)
    path = run / 'epoch_20.pth'
    marker = tmp_path / 'payload_ran'
    torch.save(dict(state_dict=src['state_dict'], meta=Payload(marker)),
               path)
    return str(path), marker


def test_payload_never_runs_without_the_flag(payload_ckpt, demo_cwd,
                                             tmp_path, monkeypatch):
    from mmeffattn.utils import CheckpointError
    from mmeffattn.utils.launch import build_checkpoint_model
    path, marker = payload_ckpt
    monkeypatch.chdir(demo_cwd)
    work = tmp_path / 'w'
    calls = [
        lambda: load_tool('model_converters/publish_model.py').main(
            [path, str(tmp_path / 'pub' / 'x')]),
        lambda: load_tool('test.py').main(
            [CLS_CFG, path, '--work-dir', str(work)]),
        lambda: load_tool('train.py').main(
            [CLS_CFG, '--resume', path, '--work-dir', str(work)]),
        lambda: build_checkpoint_model(CLS_CFG, path),  # analysis tools
    ]
    for call in calls:
        with pytest.raises(CheckpointError) as err:
            call()
        msg = str(err.value)
        assert msg.startswith(f'checkpoint {path} is not weights-only')
        assert '--trust-checkpoint' in msg and '--work-dir' not in msg
        assert not marker.exists()
    assert not work.exists() and not (tmp_path / 'pub').exists()
    # the explicit flag trusts the file (and so runs its code)
    out = load_tool('model_converters/publish_model.py').main(
        [path, str(tmp_path / 'pub' / 'x'), '--trust-checkpoint'])
    assert marker.exists()
    assert set(torch.load(out, weights_only=True)) == {'state_dict', 'meta'}


@pytest.mark.parametrize('tool', [
    'train.py', 'test.py', 'model_converters/publish_model.py',
    'deployment/pytorch2onnx.py', 'analysis_tools/visualize_attention.py',
    'analysis_tools/visualize_rois.py', 'analysis_tools/tome_sweep.py',
    'analysis_tools/seg_demo_figure.py'])
def test_every_loading_tool_takes_the_trust_flag(tool, capsys):
    module = load_tool(tool)
    with pytest.raises(SystemExit) as done:
        (getattr(module, 'parse_args', None) or module.main)(['--help'])
    assert done.value.code == 0
    assert '--trust-checkpoint' in capsys.readouterr().out


def test_published_checkpoints_verify_and_a_bit_flip_is_refused(
        demo_cwd, tmp_path, monkeypatch):
    from mmeffattn.utils import CheckpointError, load_checkpoint_file
    from mmeffattn.utils.checkpoint import verify_hash
    published = glob.glob(osp.join(REPO, 'checkpoints', 'demo', '*.pth'))
    assert len(published) >= 10
    for path in published:
        verify_hash(path)
    src = published_checkpoint(CLS_NAME)
    copy = tmp_path / osp.basename(src)
    shutil.copy(src, copy)
    data = bytearray(copy.read_bytes())
    for i in range(64):  # in the tensor data, far from the zip headers
        data[len(data) // 3 + 997 * i] ^= 1 << (i % 8)
    copy.write_bytes(bytes(data))
    expected = src[-12:-4]
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_file(str(copy))
    assert str(err.value).startswith(
        f'checkpoint {copy} fails its integrity check: the name carries the '
        f'sha256 prefix {expected}, the file hashes to {actual[:8]}')
    monkeypatch.chdir(demo_cwd)
    with pytest.raises(CheckpointError, match='integrity'):
        load_tool('test.py').main([CLS_CFG, str(copy), '--work-dir',
                                   str(tmp_path / 'w')])
    assert not (tmp_path / 'w').exists()


def test_test_refuses_another_models_checkpoint(demo_cwd, tmp_path,
                                                monkeypatch):
    from mmeffattn.utils import CheckpointError
    monkeypatch.chdir(demo_cwd)
    test = load_tool('test.py')
    other = published_checkpoint(SET_NAME)
    work = tmp_path / 'w'
    with pytest.raises(CheckpointError) as err:
        test.main([CLS_CFG, other, '--work-dir', str(work)])
    msg = str(err.value)
    assert msg.startswith(f'checkpoint {other} does not match the model: ')
    assert 'keys missing (backbone.' in msg and 'keys unexpected (' in msg
    assert '1 key of another shape, checkpoint vs model (head.fc.weight: ' \
        '(10, 256) vs (10, 512))' in msg
    assert msg.endswith('Pass --non-strict to evaluate it anyway.')
    assert not work.exists()
    # --non-strict passes the check (mmengine then loads what matches)
    args = test.parse_args([CLS_CFG, other, '--non-strict'])
    cfg = test.build_cfg(args)
    test.check_checkpoint(test.check_config(cfg), cfg, args)


def test_second_run_on_a_work_dir_exits_naming_the_holder(
        demo_cwd, tmp_path, monkeypatch):
    """The lock is an flock of its own open file, so a second open in this
    process conflicts as another process's would."""
    from mmeffattn.utils.launch import WorkDirBusyError, lock_work_dir
    monkeypatch.chdir(demo_cwd)
    work = tmp_path / 'work'
    fd = lock_work_dir(str(work))
    try:
        for tool in ('train.py', 'test.py'):
            ckpt = [published_checkpoint(CLS_NAME)] if tool == 'test.py' \
                else []
            with pytest.raises(WorkDirBusyError) as err:
                load_tool(tool).main([CLS_CFG, *ckpt, '--work-dir', str(work)])
            assert str(err.value) == (
                f'work_dir {work} is in use by another run (pid '
                f'{os.getpid()}, holding {work}/.lock): one run per '
                'work_dir. Wait for it to end or pass another --work-dir.')
    finally:
        os.close(fd)
    assert os.listdir(work) == ['.lock']


@pytest.mark.slow
def test_failed_start_leaves_no_folder(demo_cwd, tmp_path):
    work = tmp_path / 'work'
    proc = run_tool([osp.join(TOOLS, 'train.py'), CLS_CFG, '--work-dir',
                     str(work), '--cfg-options', *TINY,
                     'optim_wrapper.optimizer.lr=-1'], demo_cwd, check=False)
    assert proc.returncode != 0
    assert 'Invalid learning rate: -1' in proc.stderr.splitlines()[-1]
    assert not work.exists()


@pytest.mark.slow
def test_every_shipped_config_names_the_atomic_checkpoint_hook():
    """So upstream's own tools/train.py saves atomically too."""
    from mmengine.config import Config
    configs = [p for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
               if '_base_' not in p]
    plain = [osp.relpath(p, REPO) for p in configs
             if Config.fromfile(p).default_hooks.checkpoint.get('type') !=
             'mmeffattn.AtomicCheckpointHook']
    assert not plain, f'configs with a plain CheckpointHook: {plain}'
