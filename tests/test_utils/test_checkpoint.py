"""mmeffattn.utils.checkpoint: a file that is not a checkpoint is named
corrupt in one line; pickled code is refused outside the run's work_dir."""
import os

import pytest
import torch


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
