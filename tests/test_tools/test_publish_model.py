"""tools/model_converters/publish_model.py: a trained demo classifier,
published, initialises a detector's backbone; a freshly published classifier
is found by the detection config that names it without renaming."""
import hashlib
import os.path as osp
import re

import pytest
import torch
from helpers import CLS_CFG, REPO, RETINA_CFG, TOOLS, run_tool


@pytest.fixture(scope='module')
def trained_cls(demo_cwd, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('cls_work'))
    run_tool([osp.join(TOOLS, 'train.py'), CLS_CFG, '--work-dir', work,
              '--cfg-options', 'train_cfg.max_epochs=1',
              'train_cfg.val_interval=1',
              'default_hooks.checkpoint.interval=1'], demo_cwd)
    return osp.join(work, 'epoch_1.pth')


@pytest.mark.slow
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


@pytest.mark.slow
def test_detection_config_finds_freshly_published_classifier(tmp_path,
                                                             monkeypatch):
    """configs/setformer/retinanet_setformer-t names
    checkpoints/setformer-t_8xb128_in1k.pth; publish_model.py writes
    ..._<date>-<sha>.pth. Without renaming, the detector's backbone loads
    it (and through the documented --cfg-options override too)."""
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
