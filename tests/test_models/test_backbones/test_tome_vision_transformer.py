"""ToMeVisionTransformer: mmpretrain checkpoints load unchanged, r=0 is the
plain ViT, merging follows the schedule and refuses dense outputs, and the
off-the-shelf config takes mmpretrain's published ViT-B/16 layout."""
import os.path as osp

import pytest
import torch
from helpers import REPO
from mmpretrain.models.backbones import VisionTransformer

from mmeffattn.models import ToMeVisionTransformer

SMALL = dict(arch='deit-small', img_size=64, patch_size=16)


def pair(**kwargs):
    torch.manual_seed(0)
    vit = VisionTransformer(**SMALL, **kwargs)
    vit.init_weights()
    tome = ToMeVisionTransformer(**SMALL, **kwargs)
    tome.load_state_dict(vit.state_dict(), strict=True)
    vit.eval()
    tome.eval()
    return vit, tome


@pytest.mark.parametrize('out_type', ['cls_token', 'avg_featmap', 'featmap'])
def test_loads_vit_strictly_and_r0_equals_vit(out_type):
    vit, tome = pair(out_type=out_type, out_indices=(5, 11))
    assert list(tome.state_dict()) == list(vit.state_dict())
    x = torch.randn(2, 3, 80, 64)  # 5 x 4 patches: a non-square grid
    with torch.no_grad():
        for a, b in zip(vit(x), tome(x)):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=0)


def token_counts(model, x):
    counts = []
    hooks = [layer.register_forward_hook(
        lambda m, i, o: counts.append((o[0].shape[1],
                                       None if o[1] is None else
                                       o[1].sum(1).flatten().tolist())))
             for layer in model.layers]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return counts


@pytest.mark.parametrize('tome_r', [4, (4, -1), [0, 30, 1] + [2] * 9])
def test_tokens_follow_schedule_and_sizes_add_up(tome_r):
    _, tome = pair(out_type='avg_featmap')
    tome.tome_r = tome_r
    x = torch.randn(2, 3, 64, 64)  # 16 patches + cls
    counts = token_counts(tome, x)
    n, expected = 17, []
    for r in tome.merge_per_layer:
        n -= min(r, (n - 1) // 2)
        expected.append(n)
    assert [c[0] for c in counts] == expected
    for n_tokens, sizes in counts:  # every token stands for >= 1 patch
        assert sizes is None or sizes == [17.0, 17.0]
    assert tome(x)[0].shape == (2, 384)


def test_size_weighted_pooling_equals_mean_over_patches():
    # tokens [cls, t1, t1, t2, t2, ...]: each A token merges into its
    # duplicate, and the size-weighted mean equals the mean over all patches
    vit, tome = pair(out_type='avg_featmap')
    from mmeffattn.ops import bipartite_soft_matching, merge_wavg
    distinct = torch.randn(2, 6, 384, dtype=torch.float64)
    full = torch.cat([torch.randn(2, 1, 384, dtype=torch.float64),
                      distinct.repeat_interleave(2, dim=1)], 1)
    merge, _ = bipartite_soft_matching(full, 6)
    merged, size = merge_wavg(merge, full)
    assert merged.shape[1] == 7 and (size[:, 1:] == 2).all()
    vit.double()
    tome.double()
    torch.testing.assert_close(tome._format_merged_output(merged, size, None),
                               vit._format_output(full, None))


@pytest.mark.parametrize('out_type', ['featmap', 'raw'])
def test_dense_outputs_refuse_merging(out_type):
    with pytest.raises(ValueError, match=f'out_type={out_type!r}'):
        ToMeVisionTransformer(**SMALL, out_type=out_type, tome_r=2)
    model = ToMeVisionTransformer(**SMALL, out_type=out_type)
    with pytest.raises(ValueError, match='token grid'):
        model.tome_r = (2, -1)
    assert model.tome_r == 0


def test_bad_schedule_names_tome_r():
    with pytest.raises(ValueError, match='tome_r'):
        ToMeVisionTransformer(**SMALL, tome_r=[1] * 13)


def test_trains_with_merging():
    model = ToMeVisionTransformer(**SMALL, tome_r=3)
    model.train()
    model(torch.randn(2, 3, 64, 64))[0].sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_off_the_shelf_config_loads_published_vit_b16_layout():
    """configs/tome/tome-r13_vit-base-p16_in1k-off-the-shelf.py takes the
    layout of mmpretrain's published ViT-B/16 224 px checkpoint
    (vit-base-p16_32xb128-mae_in1k, built from the config its metafile
    names): every key, no missing or unexpected ones (on the meta device:
    no weights are allocated)."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmengine.registry import MODELS, init_default_scope

    import mmeffattn  # noqa: F401
    ours = Config.fromfile(osp.join(
        REPO, 'configs', 'tome',
        'tome-r13_vit-base-p16_in1k-off-the-shelf.py'))
    published = get_config(
        'mmpretrain::vision_transformer/vit-base-p16_32xb128-mae_in1k.py')
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        model = MODELS.build(ours.model)
        reference = MODELS.build(published.model)
    assert type(model.backbone).__name__ == 'ToMeVisionTransformer'
    assert model.backbone.merge_per_layer == [13] * 12
    ref_state = reference.state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in ref_state.items()}
    result = model.load_state_dict(ref_state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
