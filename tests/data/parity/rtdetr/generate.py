"""Regenerate the RT-DETR golden fixture from the official code.

Run from anywhere with the official repository checked out (rtdetr_pytorch,
v1) and its ``src`` importable::

    python tests/data/parity/rtdetr/generate.py /path/to/RT-DETR

It builds the official ``HybridEncoder`` + ``RTDETRTransformer`` at tiny
widths, fills every parameter and BN statistic with seeded random values
(stored as float32, run in float64), runs both in eval and train mode
(no denoising queries) on fixed multi-level features and saves
``fixture.pth``: the official-layout state dict (``encoder.*``,
``decoder.*``), the inputs, the outputs, the official criterion's losses
and gradients on fixed predictions (``loss``) and the commit. It also saves
``keys_r{18,50,101}.json.gz``: every state-dict entry of the full official
models as their configs build them (name, shape, trainable), for the
converter's and the optimiser groups' tests.
"""
import gzip
import json
import os.path as osp
import subprocess
import sys
import types

import torch

HERE = osp.dirname(osp.abspath(__file__))
# the tiny model: both constructors take these widths
CFG = dict(in_channels=[8, 12, 16], hidden_dim=16, num_heads=2, ffn_dim=32,
           expansion=0.5, depth_mult=0.34, num_classes=3, num_queries=6,
           num_points=2, num_decoder_layers=2, dec_ffn_dim=32,
           feat_shapes=[(8, 12), (4, 6), (2, 3)], batch=2)


def import_official(root):
    """The official modules, without ``src.data`` (it needs an older
    torchvision) and the package ``__init__`` files that pull it in."""
    src_dir = osp.join(root, 'rtdetr_pytorch', 'src')
    pkg = types.ModuleType('src')
    pkg.__path__ = [src_dir]
    sys.modules['src'] = pkg
    import src.core  # noqa: F401
    for name in ('src.nn', 'src.nn.backbone', 'src.zoo', 'src.zoo.rtdetr'):
        mod = types.ModuleType(name)
        mod.__path__ = [osp.join(src_dir, *name.split('.')[1:])]
        sys.modules[name] = mod
    from src.zoo.rtdetr.hybrid_encoder import HybridEncoder
    from src.zoo.rtdetr.rtdetr_decoder import RTDETRTransformer
    return HybridEncoder, RTDETRTransformer


def official_losses():
    """The official SetCriterion (VFL 1, L1 5, GIoU 2, focal Hungarian
    matcher: rtdetr_r50vd.yml) on fixed fp64 predictions of 3 decoder
    layers and the encoder's top-k: every loss and the gradients."""
    src_dir = sys.modules['src'].__path__[0]
    misc = types.ModuleType('src.misc')
    misc.__path__ = [osp.join(src_dir, 'misc')]
    sys.modules['src.misc'] = misc
    from src.zoo.rtdetr.matcher import HungarianMatcher
    from src.zoo.rtdetr.rtdetr_criterion import SetCriterion
    num_classes, layers = CFG['num_classes'], 3
    matcher = HungarianMatcher(
        weight_dict=dict(cost_class=2, cost_bbox=5, cost_giou=2),
        use_focal_loss=True, alpha=0.25, gamma=2.0)
    criterion = SetCriterion(
        matcher, weight_dict=dict(loss_vfl=1, loss_bbox=5, loss_giou=2),
        losses=['vfl', 'boxes'], alpha=0.75, gamma=2.0,
        num_classes=num_classes)
    gen = torch.Generator().manual_seed(2)
    shape = (layers + 1, CFG['batch'], 12)
    logits = torch.randn(*shape, num_classes, generator=gen,
                         dtype=torch.float64)
    boxes = torch.cat([
        torch.rand(*shape, 2, generator=gen, dtype=torch.float64) * .6 + .2,
        torch.rand(*shape, 2, generator=gen, dtype=torch.float64) * .3 + .05
    ], -1)
    gt_boxes = [torch.tensor([[.3, .4, .2, .3], [.6, .5, .3, .2],
                              [.5, .7, .1, .1]], dtype=torch.float64)[:n]
                for n in (2, 3)]
    gt_labels = [torch.tensor([1, 2, 0])[:n] for n in (2, 3)]
    lg, bx = logits.clone().requires_grad_(), boxes.clone().requires_grad_()
    out = dict(pred_logits=lg[layers - 1], pred_boxes=bx[layers - 1],
               aux_outputs=[dict(pred_logits=lg[i], pred_boxes=bx[i])
                            for i in list(range(layers - 1)) + [layers]])
    losses = criterion(out, [dict(boxes=b, labels=lab)
                             for b, lab in zip(gt_boxes, gt_labels)])
    sum(losses.values()).backward()
    return dict(logits=logits, boxes=boxes, gt_boxes=gt_boxes,
                gt_labels=gt_labels,
                losses={k: v.detach() for k, v in losses.items()},
                grad_logits=lg.grad, grad_boxes=bx.grad)


# the official configs (rtdetr_r{18,50,101}vd_6x_coco.yml): backbone
# freezing, encoder widths, decoder layers
FULL = {
    18: dict(freeze_at=-1, freeze_norm=False, in_channels=[128, 256, 512],
             hidden_dim=256, ffn=1024, expansion=0.5, layers=3),
    50: dict(freeze_at=0, freeze_norm=True, in_channels=[512, 1024, 2048],
             hidden_dim=256, ffn=1024, expansion=1.0, layers=6),
    101: dict(freeze_at=0, freeze_norm=True, in_channels=[512, 1024, 2048],
              hidden_dim=384, ffn=2048, expansion=1.0, layers=6),
}


def save_key_lists(HybridEncoder, RTDETRTransformer):
    from src.nn.backbone.presnet import PResNet
    from src.zoo.rtdetr.rtdetr import RTDETR
    for depth, c in FULL.items():
        model = RTDETR(
            PResNet(depth, variant='d', return_idx=[1, 2, 3],
                    freeze_at=c['freeze_at'], freeze_norm=c['freeze_norm']),
            HybridEncoder(in_channels=c['in_channels'],
                          hidden_dim=c['hidden_dim'],
                          dim_feedforward=c['ffn'], expansion=c['expansion']),
            RTDETRTransformer(feat_channels=[c['hidden_dim']] * 3,
                              num_decoder_layers=c['layers']))
        trainable = {n for n, p in model.named_parameters()
                     if p.requires_grad}
        entries = [[k, list(v.shape), k in trainable]
                   for k, v in model.state_dict().items()]
        params = sum(p.numel() for p in model.parameters())
        with gzip.open(osp.join(HERE, f'keys_r{depth}.json.gz'), 'wt') as f:
            json.dump(dict(params=params, entries=entries), f)
        print(depth, params)


def build_official(HybridEncoder, RTDETRTransformer):
    c = CFG
    encoder = HybridEncoder(
        in_channels=c['in_channels'], feat_strides=[8, 16, 32],
        hidden_dim=c['hidden_dim'], nhead=c['num_heads'],
        dim_feedforward=c['ffn_dim'], expansion=c['expansion'],
        depth_mult=c['depth_mult'])
    decoder = RTDETRTransformer(
        num_classes=c['num_classes'], hidden_dim=c['hidden_dim'],
        num_queries=c['num_queries'], feat_channels=[c['hidden_dim']] * 3,
        feat_strides=[8, 16, 32], num_levels=3,
        num_decoder_points=c['num_points'], nhead=c['num_heads'],
        num_decoder_layers=c['num_decoder_layers'],
        dim_feedforward=c['dec_ffn_dim'], num_denoising=4)
    return torch.nn.ModuleDict(dict(encoder=encoder, decoder=decoder))


def randomise(model, seed=0):
    """Every parameter and BN statistic seeded random (fp32 values)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith('num_batches_tracked'):
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith('running_mean'):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
            else:
                fan_in = t.shape[-1] if t.dim() > 1 else 4
                if t.dim() == 4:
                    fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=gen) / fan_in**0.5)
            if name.endswith('denoising_class_embed.weight'):
                t[-1] = 0  # the padding row, zero as officially


def main(root):
    torch.set_grad_enabled(False)
    HybridEncoder, RTDETRTransformer = import_official(root)
    save_key_lists(HybridEncoder, RTDETRTransformer)
    torch.manual_seed(0)
    model = build_official(HybridEncoder, RTDETRTransformer)
    randomise(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model = model.double()
    dec = model['decoder']
    # the denoising class embedding is built (and stored), the denoising
    # queries left out of the run: the matching queries cannot see them.
    # The anchors stay fp32 as officially (mmdet's are fp32 too)
    dec.num_denoising = 0
    gen = torch.Generator().manual_seed(1)
    feats = [torch.randn(CFG['batch'], c, h, w, generator=gen,
                         dtype=torch.float64)
             for c, (h, w) in zip(CFG['in_channels'], CFG['feat_shapes'])]
    out = {}
    for mode in ('eval', 'train'):
        model.train(mode == 'train')
        res = dec(model['encoder'](feats))
        out[mode] = dict(pred_logits=res['pred_logits'],
                         pred_boxes=res['pred_boxes'])
        if mode == 'train':
            # earlier layers, then the encoder's top-k
            out[mode]['aux_logits'] = torch.stack(
                [a['pred_logits'] for a in res['aux_outputs']])
            out[mode]['aux_boxes'] = torch.stack(
                [a['pred_boxes'] for a in res['aux_outputs']])
    torch.set_grad_enabled(True)
    loss = official_losses()
    commit = subprocess.check_output(
        ['git', '-C', root, 'rev-parse', 'HEAD'], text=True).strip()
    torch.save(dict(state_dict=state, feats=feats, outputs=out, cfg=CFG,
                    loss=loss,
                    commit=commit,
                    repo='https://github.com/lyuwenyu/RT-DETR'),
               osp.join(HERE, 'fixture.pth'))
    print('saved; commit', commit)


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else '/work/official/RT-DETR')
