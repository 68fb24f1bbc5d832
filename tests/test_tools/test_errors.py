"""Bad input gives one clear error naming the problem; nothing half written."""
import os
import os.path as osp

import pytest
import torch
from conftest import CLS_CFG, TOOLS, run_tool


def test_missing_data_root(tmp_path):
    work = tmp_path / 'work'
    proc = run_tool([osp.join(TOOLS, 'train.py'), CLS_CFG, '--work-dir',
                     str(work)], str(tmp_path), check=False)
    assert proc.returncode != 0
    assert "data_root 'data/demo/cls/'" in proc.stderr
    assert 'does not exist' in proc.stderr
    assert not work.exists()


def test_unknown_type(demo_cwd, tmp_path):
    work = tmp_path / 'work'
    proc = run_tool([osp.join(TOOLS, 'train.py'), CLS_CFG, '--work-dir',
                     str(work), '--cfg-options',
                     'model.backbone.type=mmeffattn.NoSuchNet'], demo_cwd,
                    check=False)
    assert proc.returncode != 0
    assert 'NoSuchNet is not in the' in proc.stderr
    assert not work.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present')
def test_amp_on_cpu_fails_before_writing(demo_cwd, tmp_path):
    work = tmp_path / 'work'
    proc = run_tool([osp.join(TOOLS, 'train.py'), CLS_CFG, '--amp',
                     '--work-dir', str(work)], demo_cwd, check=False)
    assert proc.returncode != 0
    assert '--amp needs a CUDA GPU' in proc.stderr.splitlines()[-1]
    assert not work.exists()


def test_missing_config(tmp_path):
    proc = run_tool([osp.join(TOOLS, 'train.py'), 'nope.py'], str(tmp_path),
                    check=False)
    assert proc.returncode != 0
    assert 'config file nope.py does not exist' in proc.stderr


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


@pytest.mark.parametrize('content', [
    bytes(range(256)) * 8,                       # random-looking bytes
    b'epoch 1: loss 0.5\nthis is a log file\n',   # text
    b'\x80\x02 truncated pickle',                 # a pickle header only
])
def test_not_a_checkpoint_is_named_corrupt(content, tmp_path):
    from mmeffattn.utils import CheckpointError, load_checkpoint_file
    path = tmp_path / 'model.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_file(str(path))
    assert str(err.value).startswith(
        f'corrupt or not a PyTorch checkpoint: {path}')
    assert '\n' not in str(err.value)


@pytest.mark.parametrize('backbone', ['SASAResNet', 'SeTformer'])
@pytest.mark.parametrize('bad, why', [
    (torch.zeros(3, 32, 32), 'of shape (3, 32, 32)'),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), 'torch.uint8'),
    (torch.zeros(1, 3, 1, 1), 'of shape (1, 3, 1, 1)'),
    (torch.zeros(1, 1, 32, 32), 'of shape (1, 1, 32, 32)'),
])
def test_backbone_rejects_bad_input_in_one_line(backbone, bad, why):
    from mmeffattn.models import SASAResNet, SeTformer
    model = dict(SASAResNet=lambda: SASAResNet(26, base_channels=16,
                                               num_heads=4),
                 SeTformer=lambda: SeTformer(dict(
                     embed_dims=16, depths=[1, 1, 1, 1],
                     num_heads=[1, 1, 2, 2], mlp_ratio=2),
                     num_refs=4))[backbone]()
    with pytest.raises(ValueError) as err:
        model(bad)
    msg = str(err.value)
    assert msg.startswith(f'{backbone} expects a (B, 3, H, W) float tensor '
                          'with H, W >= 32, got')
    assert why in msg and '\n' not in msg


class Evil:

    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_pickle_refused_outside_work_dir(tmp_path):
    from mmeffattn.utils import (CheckpointError, load_checkpoint_file,
                                 trusted_checkpoints)
    path = tmp_path / 'third_party.pth'
    torch.save(dict(state_dict={}, meta=Evil()), path)
    with pytest.raises(CheckpointError, match='not weights-only'):
        load_checkpoint_file(str(path))
    # the run's own work_dir is trusted (resume / test of its checkpoints)
    with trusted_checkpoints(str(tmp_path / 'elsewhere')):
        with pytest.raises(CheckpointError):
            load_checkpoint_file(str(path))


def test_pretrained_key_mismatch_is_loud(tmp_path):
    from mmeffattn.models import SASAResNet, SeTformer
    from mmeffattn.utils import CheckpointError
    path = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in SeTformer(
        'tiny').state_dict().items()}), path)
    model = SASAResNet(26, init_cfg=dict(type='Pretrained', checkpoint=path,
                                         prefix='backbone.'))
    with pytest.raises(CheckpointError, match='missing'):
        model.init_weights()
    model = SASAResNet(26, init_cfg=dict(type='Pretrained', checkpoint=path,
                                         prefix='neck.'))
    with pytest.raises(CheckpointError, match="prefix 'neck.'"):
        model.init_weights()
