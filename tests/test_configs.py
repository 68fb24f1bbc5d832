"""Every config builds, trains 1 iteration and evaluates on the demo data, and
every trainable parameter gets a gradient (what DDP needs), a non-zero one
within 3 optimiser steps from initialisation (no parameter sits at a saddle
where its gradient is exactly 0).

The data root of each config is pointed at the embedded demo data of the same
format (ImageNet folders / COCO json / ADE20K PNGs); the model is the config's
full-size model. To keep CI fast, input sizes in the pipelines are reduced
(the only change besides the data location and the detectors' 10 digit
classes). A
detector/segmentor whose backbone starts from a classification checkpoint gets
one made from the classification config's model, so the strict
``Pretrained`` loading is exercised too.
"""
import contextlib
import glob
import os
import os.path as osp

import pytest
import torch
from helpers import REPO, assert_every_parameter_gets_a_gradient

# every config folder but _base_ and demo is a family: a new folder is
# discovered, never silently skipped
FAMILIES = tuple(sorted(
    f for f in os.listdir(osp.join(REPO, 'configs'))
    if osp.isdir(osp.join(REPO, 'configs', f))
    and f not in ('_base_', 'demo')))
CONFIGS = sorted(p for f in FAMILIES
                 for p in glob.glob(osp.join(REPO, 'configs', f, '*.py')))
DEMO_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'demo', '*.py')))
DIGITS = tuple(str(i) for i in range(10))
SMALL = 64


def _shrink(pipeline):
    for t in pipeline:
        for key in ('scale', 'crop_size'):
            if isinstance(t.get(key), (int, float)):
                t[key] = SMALL
            elif isinstance(t.get(key), (tuple, list)):
                t[key] = (SMALL, SMALL)
        if isinstance(t.get('scales'), list):
            t['scales'] = [(SMALL, SMALL)]
        if t.get('type') == 'ResizeEdge':
            t['scale'] = SMALL
        if t.get('type') == 'RandomResize':
            t['scale'], t['ratio_range'] = (SMALL, SMALL), (1.0, 1.0)
        for sub in t.get('transforms', []) or []:
            _shrink(sub if isinstance(sub, list) else [sub])


def point_at_demo(cfg, root):
    scope = cfg.default_scope
    splits = dict(train_dataloader='train', val_dataloader='val',
                  test_dataloader='val')
    for key, split in splits.items():
        loader = cfg[key]
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.pop('batch_sampler', None)
        ds = loader.dataset
        if scope == 'mmpretrain':
            ds.pop('split', None)
            ds.update(data_root=osp.join(root, 'cls'), data_prefix='',
                      ann_file=f'meta/{split}.txt')
        elif scope == 'mmdet':
            ds.update(data_root=osp.join(root, 'det') + '/',
                      ann_file=f'annotations/instances_{split}.json',
                      data_prefix=dict(img=f'{split}/'),
                      metainfo=dict(classes=DIGITS))
        else:
            sub = 'training' if split == 'train' else 'validation'
            ds.update(data_root=osp.join(root, 'seg'),
                      data_prefix=dict(img_path=f'images/{sub}',
                                       seg_map_path=f'annotations/{sub}'))
        ds.indices = 2
        _shrink(ds.pipeline)
    for key in ('val_evaluator', 'test_evaluator'):
        if scope == 'mmdet':
            cfg[key].ann_file = osp.join(root, 'det', 'annotations',
                                         'instances_val.json')
    for aug in cfg.model.get('data_preprocessor', {}).get(
            'batch_augments') or []:  # per-batch multi-scale (RT-DETR)
        if 'random_size_range' in aug:
            aug['random_size_range'] = (SMALL, SMALL)
    if scope == 'mmseg':
        cfg.model.data_preprocessor.size = (SMALL, SMALL)
        cfg.train_cfg.update(max_iters=1, val_interval=1)
        cfg.model.test_cfg = dict(mode='whole')
    else:
        cfg.train_cfg.update(max_epochs=1, val_interval=1)
    if scope == 'mmdet':  # 10 digit classes; score_thr 0 so COCO eval runs
        for head in (cfg.model.get('bbox_head'),
                     cfg.model.get('roi_head', {}).get('bbox_head'),
                     cfg.model.get('roi_head', {}).get('mask_head')):
            if head:
                head.num_classes = len(DIGITS)
        test_cfg = cfg.model.test_cfg
        (test_cfg.rcnn if 'rcnn' in test_cfg else test_cfg).score_thr = 0.0
        if cfg.model.get('num_queries', 0) > 50:  # DETRs: 84 positions here
            cfg.model.num_queries = 50
    init = cfg.model.get('backbone', {}).get('init_cfg')
    if isinstance(init, dict) and '://' in str(init.get('checkpoint')):
        cfg.model.backbone.init_cfg = None  # no model hub here
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    # keep our own hooks (they are part of the method: Castling-ViT's
    # annealing); drop upstream ones (EMA, visualisation)
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                        if str(h.get('type', '')).startswith('mmeffattn.')]
    cfg.launcher = 'none'


GUARD_STEPS = 3


def watch_gradients(model):
    """Hooks recording, for every trainable parameter, whether a backward
    pass gave it a gradient and whether that gradient was non-zero.

    Returns:
        tuple: (names with a gradient, names with a non-zero gradient, the
        hook handles).
    """
    got, nonzero, handles = set(), set(), []

    def hook(grad, name):
        got.add(name)
        if bool(grad.ne(0).any()):
            nonzero.add(name)

    for name, p in model.named_parameters():
        if p.requires_grad:
            handles.append(p.register_hook(
                lambda grad, name=name: hook(grad, name)))
    return got, nonzero, handles


@contextlib.contextmanager
def no_stochastic_depth(model):
    """Stochastic depth off for the guard's own steps: a residual branch
    dropped for both images of a 2-image batch in every step gets exactly
    zero gradients by chance (deep configs drop their last blocks with
    p ~ 0.3-0.5), which is not a saddle. mmcv's ``DropPath`` keeps its rate
    in ``drop_prob``; SparseFormer keeps per-pass rates in
    ``drop_path_rates``."""
    saved = []
    for module in model.modules():
        for attr in ('drop_prob', 'drop_path_rates'):
            value = getattr(module, attr, None)
            if isinstance(value, float):
                saved.append((module, attr, value))
                setattr(module, attr, 0.)
            elif isinstance(value, list):
                saved.append((module, attr, value))
                setattr(module, attr, [0.] * len(value))
    try:
        yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)


def assert_healthy_gradients(model, optim_wrapper, data_batch, watched,
                             steps_done=0):
    """Take optimiser steps on ``data_batch`` until every trainable parameter
    has had a non-zero gradient, at most ``GUARD_STEPS`` in all (``steps_done``
    already taken under ``watch_gradients``); fail naming the parameters
    that got no gradient (DDP rejects them) or only zero ones."""
    got, nonzero, handles = watched
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    model.train()
    with no_stochastic_depth(model):
        for _ in range(steps_done, GUARD_STEPS):
            if nonzero.issuperset(trainable):
                break
            model.train_step(data_batch, optim_wrapper)
    for h in handles:
        h.remove()
    none = [n for n in trainable if n not in got]
    assert not none, (
        f'{len(none)} trainable parameters get no gradient (DDP fails '
        f'without find_unused_parameters): {none}')
    zero = [n for n in trainable if n not in nonzero]
    assert not zero, (
        f'{len(zero)} trainable parameters get only exactly-zero gradients '
        f'in {GUARD_STEPS} optimiser steps from initialisation (a saddle: '
        f'they never train): {zero}')


def make_backbone_checkpoint(cfg, cwd):
    """Save the classification model a det/seg config initialises from."""
    init = cfg.model.backbone.get('init_cfg')
    if not (isinstance(init, dict) and init.get('type') == 'Pretrained'):
        return
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    name = osp.splitext(osp.basename(init['checkpoint']))[0]
    cls_path, = glob.glob(osp.join(REPO, 'configs', '*', name + '.py'))
    cls_cfg = Config.fromfile(cls_path)
    init_default_scope('mmpretrain')
    model = MODELS.build(cls_cfg.model)
    path = osp.join(cwd, init['checkpoint'])
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS,
                         ids=[osp.basename(c) for c in CONFIGS])
def test_config_trains_and_evaluates(config, demo_cwd, tmp_path,
                                     monkeypatch):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmeffattn  # noqa: F401
    cfg = Config.fromfile(config)
    point_at_demo(cfg, osp.join(demo_cwd, 'data', 'demo'))
    monkeypatch.chdir(tmp_path)
    make_backbone_checkpoint(cfg, str(tmp_path))
    cfg.work_dir = str(tmp_path / 'work')
    # mmdet/mmseg/mmpretrain runtimes name their visualizer 'visualizer',
    # and mmengine returns an existing instance of that name: this test's
    # own name keeps it from writing into an earlier test's (removed) dir
    cfg.visualizer.name = f'visualizer_{tmp_path.name}'
    runner = Runner.from_cfg(cfg)
    watched = watch_gradients(runner.model)
    runner.train()
    assert runner.iter == 1
    # the checkpoint is written, then dropped: full-size ones reach 1 GB
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()
    for path in glob.glob(str(tmp_path / '**' / '*.pth'), recursive=True):
        os.remove(path)
    metrics = runner.val_loop.run()
    assert metrics and all(v == v for v in metrics.values()
                           if isinstance(v, float))
    assert_healthy_gradients(runner.model, runner.optim_wrapper,
                             next(iter(runner.train_dataloader)), watched,
                             steps_done=1)


@pytest.mark.parametrize('config', DEMO_CONFIGS,
                         ids=[osp.basename(c) for c in DEMO_CONFIGS])
def test_demo_config_gives_every_parameter_a_gradient(config, demo_cwd,
                                                      monkeypatch):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner

    import mmeffattn  # noqa: F401
    cfg = Config.fromfile(config)
    monkeypatch.chdir(demo_cwd)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.init_weights()
    loader = dict(cfg.train_dataloader, batch_size=2, num_workers=0,
                  persistent_workers=False)
    batch = next(iter(Runner.build_dataloader(loader)))
    assert_healthy_gradients(model, build_optim_wrapper(model,
                                                        cfg.optim_wrapper),
                             batch, watch_gradients(model))


def test_gradient_guard_names_a_parameter_at_a_zero_gradient_saddle(
        demo_cwd, monkeypatch):
    """Both adaptive-mixing matrices of SparseFormer start at exactly 0 when
    the generator's last layer has zero weight and zero bias: the generator
    and the mixer's output layer then get exactly-zero gradients forever."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner

    import mmeffattn  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo',
                                   'sparseformer-demo_1xb64-30e_digits.py'))
    monkeypatch.chdir(demo_cwd)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.init_weights()
    for unit in (model.backbone.focus, model.backbone.cortex[0]):
        torch.nn.init.zeros_(unit.mixer.generator[1].bias)
    loader = dict(cfg.train_dataloader, batch_size=2, num_workers=0,
                  persistent_workers=False)
    batch = next(iter(Runner.build_dataloader(loader)))
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    with pytest.raises(AssertionError, match=r'exactly-zero gradients.*'
                       r'backbone\.focus\.mixer\.generator\.1\.weight'):
        assert_healthy_gradients(model, optim_wrapper, batch,
                                 watch_gradients(model))


def test_gradient_guard_names_an_unused_parameter(demo_cwd, monkeypatch):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner

    import mmeffattn  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo',
                                   'sasa-r26-demo_1xb64-20e_digits.py'))
    monkeypatch.chdir(demo_cwd)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.backbone.unused = torch.nn.Linear(2, 2)
    loader = dict(cfg.train_dataloader, batch_size=2, num_workers=0,
                  persistent_workers=False)
    batch = next(iter(Runner.build_dataloader(loader)))
    with pytest.raises(AssertionError, match=r'backbone\.unused\.weight'):
        assert_every_parameter_gets_a_gradient(model, batch)
