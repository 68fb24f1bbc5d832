"""mmeffattn.analysis.memory: the input size of every demo config, and the
activation bytes that backward keeps."""
import glob
import os.path as osp

import torch
import torch.nn as nn
from helpers import DEMO


def test_every_demo_config_has_an_input_size():
    """Without the demo data: the digits keep their generator's 32 x 32."""
    from mmengine.config import Config

    from mmeffattn.analysis.memory import config_input_shape
    configs = sorted(glob.glob(osp.join(DEMO, '*.py')))
    assert len(configs) > 10
    for path in configs:
        height, width = config_input_shape(Config.fromfile(path))
        assert height >= 32 and width >= 32, path
    name = 'setformer-demo_1xb64-30e_digits.py'
    cfg = Config.fromfile(osp.join(DEMO, name))
    assert config_input_shape(cfg) == (32, 32)


def test_saved_activation_bytes_counts_what_backward_keeps():
    from mmeffattn.analysis.memory import saved_activation_bytes

    class Net(nn.Module):

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x, mode='loss'):
            return dict(loss=torch.relu(self.fc(x)).sum())

    # Linear saves its input (4*8 floats), ReLU its output (4*8 floats)
    assert saved_activation_bytes(Net(), dict(x=torch.randn(4, 8))) == \
        2 * 4 * 8 * 4
