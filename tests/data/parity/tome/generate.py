"""Writes ``tome.pth``: official ToMe outputs for the parity tests.

Needs a checkout of facebookresearch/ToMe and timm 0.9.16 (neither is a
project dependency)::

    PYTHONPATH=/path/to/ToMe:/path/to/timm \\
        python tests/data/parity/tome/generate.py /path/to/ToMe

Contents (fp64 unless stated):
    merging: official ``bipartite_soft_matching`` + ``merge_wavg`` (and
        ``unmerge`` without a distillation token) on random inputs.
    parse_r: official ``parse_r(num_layers, r)`` for several schedules.
    models: two tiny timm ViTs (4 layers, 12 dims, 3 heads, 4x4 patches on
        32x32 inputs, 10 classes), one with a cls token (``'token'``
        pooling) and one without (``'avg'`` pooling, ``fc_norm``), patched
        by ``tome.patch.timm.apply_patch`` (proportional attention); their
        timm state dicts (fp32 values, run in fp64), the input, and per
        schedule the logits, ``forward_features`` tokens and token sizes.
"""
import subprocess
import sys

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from tome.merge import bipartite_soft_matching, merge_wavg
from tome.patch.timm import apply_patch
from tome.utils import parse_r

MERGE_CASES = [  # tokens, r, class_token, distill_token
    (17, 3, True, False), (16, 5, True, False), (16, 3, False, False),
    (15, 7, False, False), (18, 4, True, True),
    (65, 13, True, False), (64, 13, False, False)]
PARSE_R_CASES = [
    (12, 13), (12, (8, -1)), (12, (8, 0)), (12, (8, 1)), (12, (8, -0.5)),
    (12, (7, 0.25)), (24, (16, -1)), (6, (5, -1)), (12, [8, 0]),
    (12, [1, 2, 3]), (4, [5, 0, 7, 1])]
SCHEDULES = [0, 13, (8, -1), [12, 0, 6]]
ARCH = dict(img_size=32, patch_size=4, num_classes=10, embed_dim=12,
            depth=4, num_heads=3, mlp_ratio=2.0, qkv_bias=True)


def tiny_vit(class_token):
    model = VisionTransformer(
        **ARCH, class_token=class_token,
        global_pool='token' if class_token else 'avg')
    g = torch.Generator().manual_seed(1 if class_token else 2)
    with torch.no_grad():  # O(1) activations, varied similarities
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if 'norm' in name and name.endswith('weight'):
                p.copy_(1 + 0.2 * noise)
            elif p.dim() == 1:
                p.copy_(0.1 * noise)
            elif name in ('cls_token', 'pos_embed'):
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / p[0].numel() ** 0.5)
    return model


def main(tome_dir):
    commit = subprocess.check_output(['git', '-C', tome_dir, 'rev-parse',
                                      'HEAD'], text=True).strip()
    data = dict(commit=commit, timm_version=timm.__version__, merging=[],
                parse_r=[], models={})
    for n, r, cls, dist in MERGE_CASES:
        g = torch.Generator().manual_seed(n * 100 + r)
        metric = torch.randn(2, n, 5, generator=g, dtype=torch.float64)
        x = torch.randn(2, n, 4, generator=g, dtype=torch.float64)
        size = torch.randint(1, 5, (2, n, 1), generator=g).double()
        merge, unmerge = bipartite_soft_matching(metric, r, cls, dist)
        merged, merged_size = merge_wavg(merge, x, size)
        case = dict(n=n, r=r, class_token=cls, distill_token=dist,
                    metric=metric, x=x, size=size, merged=merged,
                    merged_size=merged_size)
        if not dist:  # the official unmerge ignores the distill token
            case['unmerged'] = unmerge(merged)
        data['merging'].append(case)
    for num_layers, r in PARSE_R_CASES:
        data['parse_r'].append((num_layers, r, parse_r(num_layers, r)))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    for class_token in (True, False):
        model = tiny_vit(class_token)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        apply_patch(model, prop_attn=True)
        model.double().eval()
        runs = []
        for r in SCHEDULES:
            model.r = r
            seen = []
            hook = model.norm.register_forward_hook(
                lambda m, i, o: seen.append(o))
            with torch.no_grad():  # forward() sets the schedule
                logits = model(x.double())
            hook.remove()
            tokens, size = seen[0], model._tome_info['size']
            runs.append(dict(r=r, logits=logits, tokens=tokens,
                             size=size))
        key = 'cls_token' if class_token else 'no_cls_token'
        data['models'][key] = dict(state_dict=state, runs=runs)
    data['input'] = x
    torch.save(data, __file__.rsplit('/', 1)[0] + '/tome.pth')
    print('ToMe commit', commit)


if __name__ == '__main__':
    main(sys.argv[1])
