import hashlib
import os.path as osp
import re

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
                    '20261121', '--trust-checkpoint'], str(tmp_path))
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


def test_detection_config_finds_freshly_published_classifier(tmp_path,
                                                             monkeypatch):
    """configs/setformer/retinanet_setformer-t names
    checkpoints/setformer-t_8xb128_in1k.pth; publish_model.py writes
    ..._<date>-<sha>.pth. Without renaming, the detector's backbone loads
    it (and through the documented --cfg-options override too)."""
    from conftest import REPO
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import mmeffattn  # noqa: F401
    cls_cfg = Config.fromfile(osp.join(REPO, 'configs', 'setformer',
                                       'setformer-t_8xb128_in1k.py'))
    init_default_scope('mmpretrain')
    torch.manual_seed(1)
    classifier = MODELS.build(cls_cfg.model)
    run_dir = tmp_path / 'work_dirs' / 'setformer-t'
    run_dir.mkdir(parents=True)
    torch.save(dict(state_dict=classifier.state_dict(), meta=dict(epoch=300)),
               run_dir / 'epoch_300.pth')
    out = run_tool([osp.join(TOOLS, 'model_converters', 'publish_model.py'),
                    str(run_dir / 'epoch_300.pth'),
                    'checkpoints/setformer-t_8xb128_in1k'], str(tmp_path))
    published = out.stdout.strip().splitlines()[-1]
    assert re.search(r'setformer-t_8xb128_in1k_\d{8}-[0-9a-f]{8}\.pth$',
                     published)

    monkeypatch.chdir(tmp_path)
    det_cfg = Config.fromfile(osp.join(REPO, 'configs', 'setformer',
                                       'retinanet_setformer-t_fpn_1x_coco.py'))
    src = {k[len('backbone.'):]: v
           for k, v in classifier.state_dict().items()
           if k.startswith('backbone.')}
    for override in (None, published):
        if override:
            det_cfg.merge_from_dict(
                {'model.backbone.init_cfg.checkpoint': override})
        init_default_scope('mmdet')
        det = MODELS.build(det_cfg.model)
        before = {k: v.clone() for k, v in det.backbone.state_dict().items()}
        with pytest.warns(UserWarning, match='norm1'):
            det.init_weights()
        after = det.backbone.state_dict()
        for k, v in src.items():
            if k in after:  # the classifier's norm3 and all the body
                torch.testing.assert_close(after[k], v)
        changed = [k for k in src
                   if k in after and after[k].is_floating_point()
                   and not torch.equal(after[k], before[k])]
        assert len(changed) > len(src) // 2


def test_get_memory_reports_and_enforces_the_limit(tmp_path):
    tool = osp.join(TOOLS, 'analysis_tools', 'get_memory.py')
    out = run_tool([tool, CLS_CFG, '--shape', '32', '32', '--json',
                    str(tmp_path / 'm.json')],
                   str(tmp_path))
    import json
    row, = json.load(open(tmp_path / 'm.json'))
    assert row['shape'] == [32, 32] and row['batch_per_gpu'] == 64
    assert row['act_per_image_mib'] > 0 and row['state_mib'] > 0
    assert 'sasa-r26-demo_1xb64-20e_digits | 32x32 | 64 |' in out.stdout
    over = run_tool([tool, CLS_CFG, '--shape', '32', '32', '--limit-gib',
                     '1e-6'], str(tmp_path),
                    check=False)
    assert over.returncode == 1 and 'over 1e-06 GiB' in over.stderr


def test_saved_activation_bytes_counts_what_backward_keeps():
    from mmeffattn.utils.memory import saved_activation_bytes

    class Net(nn.Module):

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x, mode='loss'):
            return dict(loss=torch.relu(self.fc(x)).sum())

    # Linear saves its input (4*8 floats), ReLU its output (4*8 floats)
    assert saved_activation_bytes(Net(), dict(x=torch.randn(4, 8))) == \
        2 * 4 * 8 * 4
