"""RT-DETR against the official implementation (lyuwenyu/RT-DETR,
rtdetr_pytorch; commit in ``tests/data/parity/rtdetr/fixture.pth``).

* the golden fixture: a tiny official HybridEncoder + RTDETRTransformer
  (random weights, official layout) converted with
  ``mmeffattn.converters.rtdetr`` reproduces the official
  outputs in fp64, eval and train mode;
* every entry of the full official R18/R50/R101 state dicts converts and
  loads with ``strict=True`` into our configs' models, whose parameter
  groups (lr, weight decay) are the official ones;
* the varifocal loss is the official formula, elementwise and in gradient.
"""
import gzip
import json
import math
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import PARITY_DATA, REPO

from mmeffattn.converters import rtdetr

DATA = osp.join(PARITY_DATA, 'rtdetr')
# the official model's parameters, the denoising embedding's padding row
# (all zero, never used) excluded
OFFICIAL_PARAMS = {18: 20184464, 50: 42944620, 101: 76661740}
PADDING_ROW = 256


def load_converter():
    return rtdetr


def official_vfl(logits, labels, ious, alpha=0.75, gamma=2.0):
    """The official ``loss_labels_vfl`` on flattened queries: per-entry loss
    and weight."""
    num_classes = logits.shape[-1]
    target = F.one_hot(labels, num_classes + 1)[..., :-1]
    score = ious[:, None] * target
    pred = logits.sigmoid().detach()
    weight = alpha * pred.pow(gamma) * (1 - target) + score
    loss = F.binary_cross_entropy_with_logits(logits, score, weight=weight,
                                              reduction='none')
    return loss, weight


def test_varifocal_loss_is_the_official_formula():
    import mmeffattn  # noqa: F401
    from mmeffattn.models.losses import RTDETRVarifocalLoss
    from mmeffattn.models.losses.rtdetr_varifocal_loss import \
        rtdetr_varifocal_target
    gen = torch.Generator().manual_seed(0)
    n, c = 40, 7
    logits = torch.randn(n, c, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, c + 1, (n, ), generator=gen)  # c: background
    labels[:5] = c
    ious = torch.rand(n, generator=gen, dtype=torch.float64)
    ref_loss, ref_weight = official_vfl(logits, labels, ious)
    _, weight = rtdetr_varifocal_target(logits, labels, ious)
    # the matched entries' weight is the IoU alone
    torch.testing.assert_close(weight, ref_weight, rtol=0, atol=0)
    ours = logits.clone().requires_grad_()
    theirs = logits.clone().requires_grad_()
    loss_fn = RTDETRVarifocalLoss()
    num_boxes = 9.0
    loss = loss_fn(ours, (labels, ious), avg_factor=num_boxes)
    ref = official_vfl(theirs, labels, ious)[0]
    # the official reduction on (batch, queries, classes): mean over the
    # queries, sum, times the number of queries, over the number of boxes
    ref = ref[None].mean(1).sum() * n / num_boxes
    torch.testing.assert_close(loss, ref, rtol=1e-15, atol=0)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-13, atol=0)
    none = loss_fn(logits, (labels, ious), reduction_override='none')
    torch.testing.assert_close(none, ref_loss, rtol=1e-15, atol=0)


def test_denoising_boxes_use_the_official_inverse_sigmoid_eps():
    """A zero-size target at the origin stays (0, 0, 0, 0) under any noise;
    its unsigmoided coordinates are log(1e-5) as officially (mmdet's DINO:
    log(1e-3 / (1 - 1e-3)))."""
    import mmeffattn  # noqa: F401
    from mmeffattn.models.detectors.rtdetr import (INVERSE_SIGMOID_EPS,
                                                   RTDETRCdnQueryGenerator)
    assert INVERSE_SIGMOID_EPS == 1e-5
    gen = RTDETRCdnQueryGenerator(
        num_classes=3, embed_dims=8, num_matching_queries=4,
        label_noise_scale=0.5, box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=4))
    boxes = torch.tensor([[0., 0., 0., 0.], [.2, .3, .6, .5]],
                         dtype=torch.float64)
    out = gen.generate_dn_bbox_query(boxes, num_groups=3)
    assert out.shape == (12, 4)
    first = out[0::2]  # rows of the zero-size target
    torch.testing.assert_close(
        first, torch.full_like(first, math.log(1e-5)),
        rtol=0, atol=1e-15)
    # positives (first two rows of each group of four) stay within the
    # half-size box around the target: |corner noise| < (w, h) / 2
    pos = torch.cat([out[4 * g + 1:4 * g + 2] for g in range(3)]).sigmoid()
    cx, cy, w, h = pos.unbind(-1)
    assert ((cx - w / 2 - .2).abs() < .2 + 1e-12).all()
    assert ((cy + h / 2 - .5).abs() < .1 + 1e-12).all()


def _build(config, **model_changes):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmeffattn  # noqa: F401
    from mmeffattn.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    cfg.model.backbone.init_cfg = None
    cfg.model.update(model_changes)
    init_default_scope('mmdet')
    return cfg, MODELS.build(cfg.model)


def _official_groups(depth, name):
    """(lr, weight decay) the official optimiser config gives ``name``
    (rtdetr_r{depth}vd_6x_coco.yml and include/optimizer.yml; groups are
    disjoint regexes, the rest gets lr 1e-4 and weight decay 1e-4)."""
    groups = {
        18: [(r'^(?=.*backbone)(?=.*norm).*$', 1e-5, 0.),
             (r'^(?=.*backbone)(?!.*norm).*$', 1e-5, 1e-4),
             (r'^(?=.*(?:encoder|decoder))(?=.*(?:norm|bias)).*$', 1e-4, 0.)],
        50: [(r'backbone', 1e-5, 1e-4),
             (r'^(?=.*encoder(?=.*bias|.*norm.*weight)).*$', 1e-4, 0.),
             (r'^(?=.*decoder(?=.*bias|.*norm.*weight)).*$', 1e-4, 0.)],
        101: [(r'backbone', 1e-6, 1e-4)],
    }[depth]
    for pattern, lr, wd in groups:
        if re.findall(pattern, name):
            return lr, wd
    return 1e-4, 1e-4


@pytest.mark.slow
@pytest.mark.parametrize('depth', [18, 50, 101])
def test_official_checkpoint_layout_loads_and_trains_as_official(depth):
    """Zeros in the shape of every official state-dict entry convert and load
    with strict=True; the parameter count is the official one less the
    padding row; each official trainable parameter gets its official lr and
    weight decay."""
    from mmengine.optim import build_optim_wrapper
    conv = load_converter()
    with gzip.open(osp.join(DATA, f'keys_r{depth}.json.gz'), 'rt') as f:
        entries = json.load(f)['entries']
    state = {k: torch.zeros(shape, dtype=torch.long if k.endswith(
        'num_batches_tracked') else torch.float32)
        for k, shape, _ in entries}
    cfg, model = _build(f'rtdetr/rtdetr_r{depth}vd_8xb2-72e_coco.py')
    converted = conv.convert(state)
    model.load_state_dict(converted, strict=True)
    assert sum(p.numel() for p in model.parameters()) == \
        OFFICIAL_PARAMS[depth] - PADDING_ROW
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    where = {id(p): (g['lr'], g['weight_decay'])
             for g in optim.optimizer.param_groups for p in g['params']}
    params = dict(model.named_parameters())
    trainable = [k for k, _, t in entries if t]
    assert trainable
    for key in trainable:
        ours = params[conv.map_key(key).replace('{L}', str(
            cfg.model.decoder.num_layers))]
        assert ours.requires_grad, key
        assert where[id(ours)] == pytest.approx(
            _official_groups(depth, key)), key
    # what the official model freezes, ours freezes
    frozen = {conv.map_key(k) for k, _, t in entries
              if not t and not k.endswith(('running_mean', 'running_var',
                                           'num_batches_tracked'))}
    assert all(not params[k].requires_grad for k in frozen)


@pytest.mark.slow
def test_converter_names_an_unmapped_key(tmp_path):
    conv = load_converter()
    with pytest.raises(KeyError, match=r"decoder\.tgt_embed\.weight"):
        conv.convert({'decoder.tgt_embed.weight': torch.zeros(3, 4)})
    ckpt = dict(ema=dict(module={'x': torch.zeros(1)}, updates=3),
                model={'y': torch.zeros(1)})
    assert list(conv.official_state_dict(ckpt)) == ['x']
    assert list(conv.official_state_dict(ckpt, 'model')) == ['y']
    # the command line: an official-style checkpoint in, weights-only out
    fixture = torch.load(osp.join(DATA, 'fixture.pth'), weights_only=True)
    src, dst = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save(dict(model={}, ema=dict(module=fixture['state_dict'],
                                       updates=1), last_epoch=71), src)
    subprocess.run([sys.executable, osp.join(
        REPO, 'tools', 'model_converters', 'rtdetr_to_mmeffattn.py'),
        str(src), str(dst)], check=True, capture_output=True)
    out = torch.load(dst, weights_only=True)
    expected = conv.convert(fixture['state_dict'])
    assert list(out['state_dict']) == list(expected)
    assert all(torch.equal(out['state_dict'][k], v)
               for k, v in expected.items())


def _tiny_model(cfg):
    from mmengine.registry import init_default_scope

    import mmeffattn  # noqa: F401
    from mmeffattn.registry import MODELS
    d, heads = cfg['hidden_dim'], cfg['num_heads']
    init_default_scope('mmdet')
    return MODELS.build(dict(
        type='mmeffattn.RTDETR',
        num_queries=cfg['num_queries'],
        num_feature_levels=3,
        data_preprocessor=dict(type='DetDataPreprocessor'),
        backbone=dict(type='mmeffattn.PResNet', depth=18, base_channels=8,
                      out_indices=(1, 2, 3)),
        neck=[
            dict(type='mmeffattn.HybridEncoder',
                 in_channels=cfg['in_channels'], hidden_dim=d,
                 num_heads=heads, ffn_dim=cfg['ffn_dim'],
                 expansion=cfg['expansion'], depth_mult=cfg['depth_mult']),
            dict(type='ChannelMapper', in_channels=[d] * 3, kernel_size=1,
                 out_channels=d, act_cfg=None,
                 norm_cfg=dict(type='BN', requires_grad=True), num_outs=3),
        ],
        decoder=dict(
            num_layers=cfg['num_decoder_layers'], return_intermediate=True,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=d, num_heads=heads,
                                   dropout=0.0),
                cross_attn_cfg=dict(embed_dims=d, num_heads=heads,
                                    num_levels=3, dropout=0.0,
                                    num_points=cfg['num_points']),
                ffn_cfg=dict(embed_dims=d, ffn_drop=0.0,
                             feedforward_channels=cfg['dec_ffn_dim'])),
            post_norm_cfg=None),
        bbox_head=dict(type='mmeffattn.RTDETRHead',
                       num_classes=cfg['num_classes'], embed_dims=d,
                       sync_cls_avg_factor=True),
        dn_cfg=dict(label_noise_scale=0.5, box_noise_scale=1.0,
                    group_cfg=dict(dynamic=True, num_groups=None,
                                   num_dn_queries=4)),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='FocalLossCost', weight=2.0, alpha=0.25, gamma=2.0),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
        test_cfg=dict(max_per_img=cfg['num_queries'])))


def test_golden_fixture_reproduces_the_official_outputs():
    """fp64: eval-mode predictions of the last decoder layer, train-mode
    predictions of every layer and of the encoder's top-k (the matching
    queries; the denoising ones cannot reach them through the mask)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    conv = load_converter()
    fixture = torch.load(osp.join(DATA, 'fixture.pth'), weights_only=True)
    cfg = fixture['cfg']
    model = _tiny_model(cfg)
    state = conv.convert(fixture['state_dict'])
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected
    assert missing and all(k.startswith('backbone.') for k in missing)
    model = model.double()
    feats = fixture['feats']
    h, w = (s * 8 for s in cfg['feat_shapes'][0])
    samples = []
    for i in range(cfg['batch']):
        sample = DetDataSample(metainfo=dict(img_shape=(h, w),
                                             batch_input_shape=(h, w)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[4., 8., 40., 30.], [50., 2., 90., 60.]],
                                dtype=torch.float64)[:i + 1],
            labels=torch.tensor([1, 2])[:i + 1])
        samples.append(sample)
    for mode in ('eval', 'train'):
        model.train(mode == 'train')
        ref = fixture['outputs'][mode]
        with torch.no_grad():
            out = model.forward_transformer(model.neck(feats), samples)
            logits, boxes = model.bbox_head(out['hidden_states'],
                                            out['references'])
        if mode == 'train':
            dn = out['dn_meta']['num_denoising_queries']
            logits, boxes = logits[:, :, dn:], boxes[:, :, dn:]
            torch.testing.assert_close(
                logits[:-1], ref['aux_logits'][:-1], rtol=0, atol=1e-12)
            torch.testing.assert_close(
                boxes[:-1], ref['aux_boxes'][:-1], rtol=0, atol=1e-12)
            torch.testing.assert_close(
                out['enc_outputs_class'], ref['aux_logits'][-1], rtol=0,
                atol=1e-12)
            torch.testing.assert_close(
                out['enc_outputs_coord'], ref['aux_boxes'][-1], rtol=0,
                atol=1e-12)
        torch.testing.assert_close(logits[-1], ref['pred_logits'], rtol=0,
                                   atol=1e-12)
        torch.testing.assert_close(boxes[-1], ref['pred_boxes'], rtol=0,
                                   atol=1e-12)


def test_golden_fixture_reproduces_the_official_losses_and_gradients():
    """Our head's losses (matching layers and encoder top-k, no denoising)
    on the fixture's predictions equal the official SetCriterion's, and so
    do the gradients. mmdet's loss reduction divides by ``avg_factor +
    float32 eps``: the box losses sit 2.4e-8 relative below the official
    ones (5 boxes)."""
    from mmdet.models.dense_heads import DeformableDETRHead
    from mmengine.structures import InstanceData
    fixture = torch.load(osp.join(DATA, 'fixture.pth'), weights_only=True)
    ref = fixture['loss']
    layers = ref['logits'].shape[0] - 1
    cfg = dict(fixture['cfg'], num_decoder_layers=layers)
    head = _tiny_model(cfg).bbox_head.double()
    h, w = 64, 96
    scale = torch.tensor([w, h, w, h], dtype=torch.float64)
    gts = [InstanceData(bboxes=torch.cat([b[:, :2] - b[:, 2:] / 2,
                                          b[:, :2] + b[:, 2:] / 2], -1) *
                        scale, labels=lab)
           for b, lab in zip(ref['gt_boxes'], ref['gt_labels'])]
    metas = [dict(img_shape=(h, w))] * len(gts)
    logits = ref['logits'].clone().requires_grad_()
    boxes = ref['boxes'].clone().requires_grad_()
    # DINOHead.loss_by_feat without its denoising part
    losses = super(DeformableDETRHead, head).loss_by_feat(
        logits[:layers], boxes[:layers], gts, metas)
    enc = head.loss_by_feat_single(logits[layers], boxes[layers],
                                   batch_gt_instances=gts,
                                   batch_img_metas=metas)
    losses.update(zip(('enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou'),
                      enc))
    names = dict(loss_vfl='loss_cls', loss_bbox='loss_bbox',
                 loss_giou='loss_iou')
    assert len(losses) == len(ref['losses'])
    for key, value in ref['losses'].items():
        base, _, aux = key.partition('_aux_')
        ours = names[base]
        if aux:
            ours = (f'd{aux}.{ours}' if int(aux) < layers - 1 else
                    f'enc_{ours}')
        rtol = 1e-15 if base == 'loss_vfl' else 5e-8
        torch.testing.assert_close(losses[ours].reshape(()), value.reshape(()),
                                   rtol=rtol, atol=0)
    sum(losses.values()).backward()
    torch.testing.assert_close(logits.grad, ref['grad_logits'], rtol=0,
                               atol=1e-15)
    torch.testing.assert_close(boxes.grad, ref['grad_boxes'], rtol=5e-8,
                               atol=0)
