"""The cases of each suite of ``benchmark_attention.py --suite``: a list of
case dicts (what :func:`.runner.run` takes) per suite, full size or
``quick`` (small sizes, a smoke test)."""
import torch


def sasa_suite(quick: bool):
    base = dict(kind='sasa', B=8, C=128, H=56, W=56, k=7, heads=8)
    if quick:
        base.update(B=2, H=28, W=28)
    impls = ('ours', 'unfold', 'conv3x3')
    cases = [dict(base, impl=i, group='headline') for i in impls]
    # --quick (a smoke run): one point of each sweep
    for k in (3, ) if quick else (3, 5, 9, 11):
        cases += [dict(base, k=k, impl=i, group='sweep_k')
                  for i in ('ours', 'unfold')]
    for s in (14, ) if quick else (14, 28, 112):
        cases += [dict(base, H=s, W=s, impl=i, group='sweep_size')
                  for i in impls]
    return cases


def set_suite(quick: bool):
    cases = []
    sides = (14, 28, 56) if quick else (14, 28, 56, 112)
    for side in sides:
        for impl in ('set', 'sdpa'):
            cases.append(dict(kind='set', impl=impl, B=2 if quick else 8,
                              C=64, heads=2, H=side, W=side,
                              group='tokens', repeat=5))
    # time per 4x tokens, both sizes timed round robin in one process
    sides = [14, 28] if quick else [56, 112]
    cases.append(dict(kind='sizes', layer='set', impl='set',
                      B=2 if quick else 8, C=64, heads=2, sides=sides,
                      group='growth', repeat=2 if quick else 9))
    return cases


def backbone_suite(quick: bool):
    """Whole backbones, each against what it replaces, timed round robin in
    one process: a training step (fwd+bwd) and inference (eval, no_grad)."""
    size, bsz = (64, 2) if quick else (224, 8)
    pairs = [('setformer-t', 'swin-t'), ('setformer-s', 'swin-s'),
             ('sasa-r50', 'resnet-50')]
    if quick:
        pairs = pairs[:1]
    return [dict(kind='backbones', variants=list(pair), B=bsz, H=size,
                 W=size, group='backbone', repeat=2 if quick else 9)
            for pair in pairs]


def amp_suite(quick: bool):
    size, bsz = (112, 2) if quick else (224, 8)
    return [dict(kind='backbone', impl=arch, dtype=dtype, B=bsz, H=size,
                 W=size, group='amp', repeat=3)
            for arch in ('sasa-r50', 'setformer-t', 'resnet-50')
            for dtype in ('fp32', 'bf16')]


def deploy_suite(quick: bool):
    """Eval forward: eager vs torch.compile (inductor); SeT's cached Nystrom
    normalisation vs the per-forward eigendecomposition it replaced."""
    size, bsz = (112, 2) if quick else (224, 8)
    base = dict(kind='backbone', B=bsz, H=size, W=size, group='deploy',
                eval=True, fwd_only=True, repeat=5)
    cases = [dict(base, impl=arch, compile=c)
             for arch in ('sasa-r50', 'setformer-t') for c in (False, True)]
    cases.append(dict(base, impl='setformer-t', nystrom_cache=False))
    return cases


def vit_suite(quick: bool):
    """Eval forward of ViT-family backbones, each group in one process
    timed round robin: ToMe on ViT-B/16 at 224 (r=0 is mmpretrain's ViT),
    and Castling-ViT vs DeiT-S at 224 and 448."""
    bsz = 2 if quick else 8
    base = dict(kind='vit', B=bsz, group='vit', repeat=2 if quick else 7,
                threads=torch.get_num_threads())
    arch, size = ('deit-tiny', 64) if quick else ('b', 224)
    cases = [dict(base, arch=arch, H=size, W=size, variants=[
        dict(impl='tome', tome_r=r) for r in (0, 8, 13, 16, [16, -1])])]
    small = 'deit-tiny' if quick else 'deit-small'
    for side in ((64, ) if quick else (224, 448)):
        cases.append(dict(base, arch=small, H=side, W=side, variants=[
            dict(impl=impl) for impl in ('deit', 'castling')]))
    return cases


def window_suite(quick: bool):
    """AlterNet's stage-3 MSA (12 heads x 64, window 7) on square maps."""
    sides = (14, 15) if quick else (14, 15, 28, 30, 56)
    return [dict(kind='window', impl=impl, B=2 if quick else 8, C=768,
                 heads=12, window=7, H=side, W=side, group='tokens',
                 repeat=5)
            for side in sides for impl in ('ours', 'einsum', 'global')]


SUITES = dict(sasa=sasa_suite, set=set_suite, amp=amp_suite,
              deploy=deploy_suite, vit=vit_suite, window=window_suite,
              backbone=backbone_suite)
