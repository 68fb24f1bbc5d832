"""``type='mmeffattn.X'`` builds from each toolbox with no custom_imports."""
import subprocess
import sys

import pytest

SNIPPETS = {
    'mmpretrain': """
import torch
from mmpretrain.registry import MODELS
from mmengine.registry import init_default_scope
init_default_scope('mmpretrain')
m = MODELS.build(dict(type='ImageClassifier',
    backbone=dict(type='mmeffattn.SASAResNet', depth=26, base_channels=16),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=3, in_channels=512)))
print(type(m.backbone).__module__, m(torch.randn(2, 3, 32, 32)).shape)
""",
    'mmdet': """
from mmdet.registry import MODELS
from mmengine.registry import init_default_scope
init_default_scope('mmdet')
m = MODELS.build(dict(type='mmeffattn.SeTformer', arch='tiny'))
print(type(m).__module__)
""",
    'mmseg': """
from mmseg.registry import MODELS
from mmengine.registry import init_default_scope
init_default_scope('mmseg')
m = MODELS.build(dict(type='mmeffattn.SASAResNet', depth=26))
print(type(m).__module__)
""",
}


@pytest.mark.slow
@pytest.mark.parametrize('toolbox', sorted(SNIPPETS))
def test_scope_prefix_builds_without_custom_imports(toolbox):
    out = subprocess.run([sys.executable, '-c', SNIPPETS[toolbox]],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'mmeffattn.models.backbones' in out.stdout


def test_unknown_type_is_named():
    from mmengine.registry import MODELS
    with pytest.raises(KeyError, match='NoSuchNet'):
        MODELS.build(dict(type='mmeffattn.NoSuchNet'))
