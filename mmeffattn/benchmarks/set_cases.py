"""SeT benchmark cases: SeT attention vs global softmax attention (SDPA), and
whole backbones (SeTformer-T vs mmpretrain's Swin-T)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SDPAAttention(nn.Module):
    """Global multi-head softmax attention with the same projections."""

    def __init__(self, channels, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x, hw_shape=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads) \
            .permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class WithShape(nn.Module):

    def __init__(self, attn, hw_shape):
        super().__init__()
        self.attn, self.hw_shape = attn, hw_shape

    def forward(self, x):
        return self.attn(x, self.hw_shape)


def build_set_case(case):
    from mmeffattn.models import SeTAttention
    c, heads = case['C'], case['heads']
    hw = (case['H'], case['W'])
    if case['impl'] == 'set':
        attn = SeTAttention(c, heads)
    else:
        attn = SDPAAttention(c, heads)
    return WithShape(attn, hw), torch.randn(case['B'], hw[0] * hw[1], c)


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
