import os.path as osp
import re
import hashlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import CLS_CFG, RETINA_CFG, TOOLS, run_tool


@pytest.fixture(scope='module')
def trained_cls(demo_cwd, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('cls_work'))
    run_tool([osp.join(TOOLS, 'train.py'), CLS_CFG, '--work-dir', work,
              '--cfg-options', 'train_cfg.max_epochs=1',
              'train_cfg.val_interval=1',
              'default_hooks.checkpoint.interval=1'], demo_cwd)
    return osp.join(work, 'epoch_1.pth')


def test_publish_then_init_detector_backbone(trained_cls, tmp_path):
    out = run_tool([osp.join(TOOLS, 'model_converters', 'publish_model.py'),
                    trained_cls, str(tmp_path / 'sasa-r26-demo'), '--date',
                    '20261121'], str(tmp_path))
    final = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r'.*/sasa-r26-demo_20261121-[0-9a-f]{8}\.pth', final)
    sha = hashlib.sha256(open(final, 'rb').read()).hexdigest()
    assert final.endswith(f'-{sha[:8]}.pth')
    ckpt = torch.load(final, weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}

    # the published classifier initialises a detector's backbone
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    import mmeffattn  # noqa: F401
    cfg = Config.fromfile(RETINA_CFG)
    cfg.model.backbone.stem = 'attention'  # as the classifier
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=final,
                                       prefix='backbone.')
    init_default_scope('mmdet')
    det = MODELS.build(cfg.model)
    before = {k: v.clone() for k, v in det.backbone.state_dict().items()}
    det.init_weights()
    after = det.backbone.state_dict()
    src = {k[len('backbone.'):]: v for k, v in ckpt['state_dict'].items()
           if k.startswith('backbone.')}
    assert set(src) == set(after)
    for k, v in src.items():
        torch.testing.assert_close(after[k], v)
    changed = [k for k in after if after[k].is_floating_point()
               and not torch.equal(after[k], before[k])]
    assert len(changed) > len(after) // 2


def test_get_flops_prints_params_and_flops(tmp_path):
    out = run_tool([osp.join(TOOLS, 'analysis_tools', 'get_flops.py'),
                    CLS_CFG, '--shape', '32'], str(tmp_path))
    assert re.search(r'Params: [\d.]+ M', out.stdout)
    assert re.search(r'FLOPs \(2 x MACs\): [\d.]+ G', out.stdout)


class SDPAModule(nn.Module):

    def forward(self, x):  # x: (B, h, N, d)
        return F.scaled_dot_product_attention(x, x, x)


def test_sdpa_and_local_attention_are_counted():
    from mmeffattn.ops import local_attention2d_flops
    from mmeffattn.utils.flops import count_complexity
    res = count_complexity(SDPAModule(), (torch.randn(2, 3, 49, 16), ))
    assert res['macs'] == 2 * 3 * 49 * 49 * (16 + 16)
    from mmeffattn.models import LocalSelfAttention2d
    proj = 3 * 32 * 32 * 9 * 11
    attn = local_attention2d_flops((1, 4, 9, 11, 8), 5)
    for impl in ('cpp', 'halo'):
        layer = LocalSelfAttention2d(32, 32, kernel_size=5, num_heads=4,
                                     impl=impl)
        res = count_complexity(layer, (torch.randn(1, 32, 9, 11), ))
        assert res['macs'] == proj + attn
