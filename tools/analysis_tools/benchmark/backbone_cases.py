"""Whole-backbone cases: each builds one full-size backbone and its input.

- ``backbone``: SeTformer-T/S, mmpretrain's Swin-T/S, SASA-R50 or
  mmpretrain's ResNet-50 (:data:`BACKBONES`), in train mode.
- ``vit``: a ViT-family backbone: ToMe, Castling-ViT or mmpretrain's
  ViT/DeiT.
"""
import torch

BACKBONES = ('setformer-t', 'setformer-s', 'swin-t', 'swin-s', 'sasa-r50',
             'resnet-50')


def build_backbone_case(case):
    """A full-size backbone in train mode (drop path off) and its input."""
    impl = case['impl']
    if impl not in BACKBONES:
        raise ValueError(f'unknown backbone {impl!r}; one of {BACKBONES}')
    if impl.startswith('setformer'):
        from mmeffattn.models import SeTformer
        model = SeTformer(impl[-1], drop_path_rate=0.0)
    elif impl == 'sasa-r50':
        from mmeffattn.models import SASAResNet
        model = SASAResNet(50)
    elif impl == 'resnet-50':
        from mmpretrain.models import ResNet
        model = ResNet(50)
    else:
        from mmpretrain.models import SwinTransformer
        model = SwinTransformer(impl[-1], drop_path_rate=0.0)
    model.init_weights()
    model.train()
    return model, torch.randn(case['B'], 3, case['H'], case['W'])


def build_vit_case(case):
    """A ViT-family backbone: ``impl`` 'tome' (ToMeVisionTransformer with
    ``tome_r``; r=0 is mmpretrain's ViT), 'castling' or 'deit' (mmpretrain's
    VisionTransformer) of ``arch``."""
    from mmpretrain.models.backbones import VisionTransformer

    from mmeffattn.models import CastlingViT, ToMeVisionTransformer
    common = dict(arch=case['arch'], img_size=case['H'], patch_size=16)
    impl = case['impl']
    if impl == 'tome':
        r = case.get('tome_r', 0)
        model = ToMeVisionTransformer(
            tome_r=tuple(r) if isinstance(r, list) else r, **common)
    elif impl == 'castling':
        model = CastlingViT(**common)
    elif impl == 'deit':
        model = VisionTransformer(**common)
    else:
        raise ValueError(f'unknown vit impl {impl!r}')
    return model, torch.randn(case['B'], 3, case['H'], case['W'])
