"""CastlingViT: inference never forms N x N, DeiT weights load but the
dconv, no qkv bias by default, and arguments that are refused by name."""
import pytest
import torch
from torch.overrides import TorchFunctionMode

from mmeffattn.engine import LinearAngularAuxAnnealHook
from mmeffattn.models import CastlingViT, LinearAngularAttention


class ShapeRecorder(TorchFunctionMode):

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.shapes.append(tuple(out.shape))
        return out


def forms_n_by_n(module, x, n):
    with ShapeRecorder() as rec:
        module(x)
    return any(len(s) >= 2 and s[-1] == n and s[-2] == n for s in rec.shapes)


def test_inference_never_forms_n_by_n():
    model = CastlingViT(arch='deit-tiny', img_size=96, patch_size=16)
    for m in model.attention_modules():
        m.aux_weight = 1.0
    x = torch.randn(1, 3, 96, 96)  # 36 patches + cls = 37 tokens
    model.train()
    assert forms_n_by_n(model, x, 37)  # the recorder sees the aux branch
    model.eval()
    with torch.no_grad():
        assert not forms_n_by_n(model, x, 37)


def test_castling_vit_loads_deit_weights_but_dconv():
    from mmpretrain.models.backbones import VisionTransformer
    deit = VisionTransformer(arch='deit-tiny', img_size=64)
    model = CastlingViT(arch='deit-tiny', img_size=64, qkv_bias=True)
    result = model.load_state_dict(deit.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert sorted(result.missing_keys) == sorted(
        f'layers.{i}.attn.dconv.weight' for i in range(12))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='divisible by num_heads'):
        LinearAngularAttention(10, 3)
    with pytest.raises(ValueError,
                       match='dconv_kernel=4 is invalid; it must be an odd'):
        LinearAngularAttention(12, 3, dconv_kernel=4)
    with pytest.raises(ValueError, match='layer scale'):
        CastlingViT(arch='deit-tiny', layer_scale_init_value=0.1)
    with pytest.raises(ValueError, match='end must be in'):
        LinearAngularAuxAnnealHook(end=0)


def test_castling_vit_has_no_qkv_bias_by_default():
    model = CastlingViT(arch=dict(embed_dims=24, num_layers=2, num_heads=3,
                                  feedforward_channels=48),
                        img_size=32, patch_size=8)
    assert not any(k.endswith('qkv.bias') for k in model.state_dict())
