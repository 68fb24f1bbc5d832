"""The documented switch to TensorBoard logging writes event files."""
import glob
import os.path as osp

import pytest
from helpers import CLS_CFG, TOOLS, run_tool


@pytest.mark.slow
def test_tensorboard_backend_writes_events(demo_cwd, tmp_path):
    pytest.importorskip('tensorboard',
                        reason='tensorboard (requirements/optional.txt)')
    work = str(tmp_path / 'work')
    run_tool([osp.join(TOOLS, 'train.py'), CLS_CFG, '--work-dir', work,
              '--cfg-options', 'train_cfg.max_epochs=1',
              'train_dataloader.num_workers=0',
              'train_dataloader.persistent_workers=False',
              'val_dataloader.num_workers=0',
              'val_dataloader.persistent_workers=False',
              'visualizer.vis_backends.0.type=TensorboardVisBackend'],
             demo_cwd)
    events = glob.glob(osp.join(work, '**', 'events.out.tfevents.*'),
                       recursive=True)
    assert events and all(osp.getsize(e) > 0 for e in events)
