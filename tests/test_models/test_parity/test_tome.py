"""ToMe against the official implementation (facebookresearch/ToMe).

tests/data/parity/tome/tome.pth, written by generate.py next to it: the
official merging, parse_r and a tiny timm ViT patched by the official
tome.patch.timm (commit in the fixture), all fp64. The timm weights convert
through tools/model_converters/timm_vit_to_mmeffattn.py."""
import os.path as osp

import pytest
import torch
from helpers import PARITY_DATA

from mmeffattn import converters

TOME_FIXTURE = osp.join(PARITY_DATA, 'tome', 'tome.pth')


def load_converter(name):
    return getattr(converters, name.replace('_to_mmeffattn', ''))


@pytest.fixture(scope='module')
def official():
    return torch.load(TOME_FIXTURE, weights_only=True)


def test_merging_equals_official_bit_for_bit(official):
    from mmeffattn.ops import bipartite_soft_matching, merge_wavg
    for case in official['merging']:
        merge, unmerge = bipartite_soft_matching(
            case['metric'], case['r'], case['class_token'],
            case['distill_token'])
        merged, size = merge_wavg(merge, case['x'], case['size'])
        assert torch.equal(merged, case['merged']), case['n']
        assert torch.equal(size, case['merged_size']), case['n']
        if 'unmerged' in case:
            assert torch.equal(unmerge(merged), case['unmerged'])


def test_schedules_equal_official_parse_r(official):
    from mmeffattn.ops import merge_schedule
    for num_layers, r, expected in official['parse_r']:
        assert merge_schedule(r, num_layers) == expected, (num_layers, r)


def build_classifier(class_token):
    from mmengine.registry import init_default_scope
    from mmpretrain.models import ImageClassifier
    init_default_scope('mmpretrain')  # earlier tests may leave mmdet's
    return ImageClassifier(
        backbone=dict(
            type='mmeffattn.ToMeVisionTransformer',
            arch=dict(embed_dims=12, num_layers=4, num_heads=3,
                      feedforward_channels=24),
            img_size=32, patch_size=4, with_cls_token=class_token,
            out_type='cls_token' if class_token else 'avg_featmap',
            final_norm=class_token),  # timm 'avg': no norm before fc_norm
        head=dict(type='VisionTransformerClsHead', num_classes=10,
                  in_channels=12)).double().eval()


@pytest.mark.parametrize('class_token', [True, False])
def test_model_equals_official_timm_patch(official, class_token):
    """The converted timm ViT, every schedule: the tokens and sizes after
    the last layer, and the logits (with a cls token; without one the
    official timm head takes the plain mean of the merged tokens where we
    weight each by its size, so the logits are checked through the
    tokens)."""
    converter = load_converter('timm_vit_to_mmeffattn')
    ref = official['models']['cls_token' if class_token else 'no_cls_token']
    model = build_classifier(class_token)
    state = converter.convert(ref['state_dict'])
    model.load_state_dict({k: v.double() for k, v in state.items()},
                          strict=True)
    backbone, x = model.backbone, official['input'].double()
    for run in ref['runs']:
        backbone.tome_r = run['r']
        seen = []
        hook = backbone.layers[-1].register_forward_hook(
            lambda m, i, o: seen.append(o))
        with torch.no_grad():
            logits = model(x, mode='tensor')
        hook.remove()
        tokens, size = seen[0]
        if class_token:
            tokens = backbone.ln1(tokens)
            torch.testing.assert_close(logits, run['logits'], rtol=0,
                                       atol=1e-12)
        else:
            with torch.no_grad():  # the official pooling: a plain mean
                plain = model.head(
                    [backbone.ln2(tokens.mean(1))])
            torch.testing.assert_close(plain, run['logits'], rtol=0,
                                       atol=1e-12)
        torch.testing.assert_close(tokens, run['tokens'], rtol=0,
                                   atol=1e-12)
        if run['size'] is None:
            assert size is None
        else:
            torch.testing.assert_close(size, run['size'], rtol=0, atol=0)


def test_timm_converter_names_unknown_keys():
    converter = load_converter('timm_vit_to_mmeffattn')
    with pytest.raises(KeyError, match='dist_token'):
        converter.convert({'dist_token': torch.zeros(1, 1, 12)})
    with pytest.raises(KeyError, match='blocks.0.ls1.gamma'):
        converter.convert({'blocks.0.ls1.gamma': torch.zeros(12)})
