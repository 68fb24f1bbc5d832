"""Fixtures shared by the tests; the shared constants and functions live in
``helpers`` (tests/helpers.py)."""
import os
import os.path as osp

import pytest
from helpers import DEVICES, REPO


@pytest.fixture(params=DEVICES)
def device(request):
    """Each available device ('cpu', and 'cuda' with a GPU)."""
    return request.param


@pytest.fixture(scope='session')
def demo_cwd(tmp_path_factory):
    """A folder whose data/demo holds a tiny version of the demo data."""
    from mmeffattn.datasets import generate_demo_data
    cwd = tmp_path_factory.mktemp('demo_cwd')
    generate_demo_data(osp.join(cwd, 'data', 'demo'), num_det_train=16,
                       num_det_val=8, max_cls_train=128, max_cls_val=64)
    # the published checkpoints, where the demo detectors' backbones find
    # the demo classifier (checkpoints/demo/NAME.pth -> newest published)
    os.symlink(osp.join(REPO, 'checkpoints'), osp.join(cwd, 'checkpoints'))
    return str(cwd)
