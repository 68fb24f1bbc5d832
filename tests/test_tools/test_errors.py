"""Bad input to the tools gives one clear error naming the problem; nothing
half written."""
import os.path as osp

import pytest
import torch
from helpers import CLS_CFG, TOOLS, run_tool


@pytest.mark.slow
def test_missing_data_root(tmp_path):
    work = tmp_path / 'work'
    proc = run_tool([osp.join(TOOLS, 'train.py'), CLS_CFG, '--work-dir',
                     str(work)], str(tmp_path), check=False)
    assert proc.returncode != 0
    assert "data_root 'data/demo/cls/'" in proc.stderr
    assert 'does not exist' in proc.stderr
    assert not work.exists()


@pytest.mark.slow
def test_unknown_type(demo_cwd, tmp_path):
    work = tmp_path / 'work'
    proc = run_tool([osp.join(TOOLS, 'train.py'), CLS_CFG, '--work-dir',
                     str(work), '--cfg-options',
                     'model.backbone.type=mmeffattn.NoSuchNet'], demo_cwd,
                    check=False)
    assert proc.returncode != 0
    assert 'NoSuchNet is not in the' in proc.stderr
    assert not work.exists()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present')
def test_amp_on_cpu_fails_before_writing(demo_cwd, tmp_path):
    work = tmp_path / 'work'
    proc = run_tool([osp.join(TOOLS, 'train.py'), CLS_CFG, '--amp',
                     '--work-dir', str(work)], demo_cwd, check=False)
    assert proc.returncode != 0
    assert '--amp needs a CUDA GPU' in proc.stderr.splitlines()[-1]
    assert not work.exists()


@pytest.mark.slow
def test_missing_config(tmp_path):
    proc = run_tool([osp.join(TOOLS, 'train.py'), 'nope.py'], str(tmp_path),
                    check=False)
    assert proc.returncode != 0
    assert 'config file nope.py does not exist' in proc.stderr


@pytest.mark.slow
def test_corrupt_checkpoint(demo_cwd, tmp_path):
    from mmeffattn.utils import CheckpointError, load_checkpoint_file
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'PK\x03\x04 this is not a checkpoint')
    with pytest.raises(CheckpointError, match='corrupt'):
        load_checkpoint_file(str(bad))
    proc = run_tool([osp.join(TOOLS, 'test.py'), CLS_CFG, str(bad),
                     '--work-dir', str(tmp_path / 'w')], demo_cwd,
                    check=False)
    assert proc.returncode != 0
    assert f'corrupt or not a PyTorch checkpoint: {bad}' in proc.stderr
