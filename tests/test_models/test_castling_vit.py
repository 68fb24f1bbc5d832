"""Castling-ViT's linear-angular attention against a per-token brute force
(fp64, gradcheck); inference never forms N x N; the annealing hook."""
import math
from types import SimpleNamespace

import pytest
import torch
from torch.overrides import TorchFunctionMode

from mmeffattn.engine import LinearAngularAuxAnnealHook
from mmeffattn.models import CastlingViT, LinearAngularAttention


@torch.no_grad()
def brute_force(module, x, aux_weight):
    """Per token and per head, as loops over the other tokens."""
    batch, n, c = x.shape
    h = module.num_heads
    d = c // h
    qkv = x @ module.qkv.weight.T
    if module.qkv.bias is not None:
        qkv = qkv + module.qkv.bias
    q, k, v = (qkv[..., i * c:(i + 1) * c].reshape(batch, n, h, d)
               for i in range(3))
    taps = module.dconv.weight.shape[2]
    out = torch.zeros(batch, n, h, d, dtype=x.dtype)
    for b in range(batch):
        for head in range(h):
            qn = [q[b, i, head] / q[b, i, head].norm() for i in range(n)]
            kn = [k[b, j, head] / k[b, j, head].norm() for j in range(n)]
            for i in range(n):
                acc = 0.5 * v[b, i, head]
                for j in range(n):
                    acc = acc + float(qn[i] @ kn[j]) / math.pi * v[b, j, head]
                if aux_weight:
                    logits = torch.stack([q[b, i, head] @ k[b, j, head]
                                          for j in range(n)]) / math.sqrt(d)
                    p = logits.softmax(0)
                    for j in range(n):
                        if p[j] > module.aux_threshold:
                            acc = acc + aux_weight * p[j] * v[b, j, head]
                acc = acc / acc.norm()
                for t in range(taps):  # zero-padded conv along the tokens
                    j = i + t - taps // 2
                    if 0 <= j < n:
                        acc = acc + module.dconv.weight[head, 0, t, 0] * \
                            v[b, j, head]
                out[b, i, head] = acc
    out = out.reshape(batch, n, c)
    return out @ module.proj.weight.T + module.proj.bias


@pytest.mark.parametrize('aux_weight', [0.0, 0.7])
def test_equals_brute_force(aux_weight):
    torch.manual_seed(0)
    module = LinearAngularAttention(12, 3, aux_weight=aux_weight,
                                    aux_threshold=0.05).double()
    x = torch.randn(2, 13, 12, dtype=torch.float64)  # odd N, N > 9 taps
    module.train()
    torch.testing.assert_close(module(x), brute_force(module, x, aux_weight))
    module.eval()  # inference drops the auxiliary branch
    torch.testing.assert_close(module(x), brute_force(module, x, 0.0))


def test_gradcheck():
    torch.manual_seed(0)
    module = LinearAngularAttention(8, 2, aux_weight=0.5,
                                    aux_threshold=0.0).double().train()
    x = torch.randn(1, 7, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x, ))


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


def test_anneal_hook_sets_every_attention():
    model = CastlingViT(arch='deit-tiny', img_size=64)
    hook = LinearAngularAuxAnnealHook(start_weight=1.0, end=0.5)
    logged = {}
    runner = SimpleNamespace(
        model=model, iter=0, max_iters=100,
        message_hub=SimpleNamespace(
            update_scalar=lambda k, v: logged.__setitem__(k, v)))
    hook.before_train(runner)
    weights = []
    for it in (0, 25, 50, 99):
        runner.iter = it
        hook.before_train_iter(runner, it)
        assert len({m.aux_weight for m in model.attention_modules()}) == 1
        weights.append(model.attention_modules()[0].aux_weight)
    assert weights[0] == 1.0 and weights[1] == pytest.approx(0.5)
    assert weights[2] == weights[3] == 0.0
    assert logged['train/castling_aux_weight'] == 0.0
    with pytest.raises(ValueError, match='no LinearAngularAttention'):
        hook.before_train(SimpleNamespace(model=torch.nn.Linear(2, 2)))


def test_equals_official_attention():
    """tests/data/parity/castling_vit/castling_vit.pth (generate.py next to
    it): the official LinAngularAttention (GATECH-EIC/Castling-ViT, commit
    in the file) with its default qkv_bias=False, fp64. Its state dict
    loads strictly into ours (same keys); its ``sparse_reg`` branch is our
    training-only auxiliary branch with weight 1."""
    import os.path as osp
    ref = torch.load(osp.join(osp.dirname(__file__), '..', 'data', 'parity',
                              'castling_vit', 'castling_vit.pth'),
                     weights_only=True)
    module = LinearAngularAttention(24, 3).double()
    module.load_state_dict(ref['state_dict'], strict=True)
    assert module.qkv.bias is None  # the official default
    x = ref['input']
    with torch.no_grad():
        module.eval()
        torch.testing.assert_close(module(x), ref['output'], rtol=0,
                                   atol=1e-13)
        module.train()
        module.aux_weight = 1.0
        torch.testing.assert_close(module(x), ref['output_sparse_reg'],
                                   rtol=0, atol=1e-13)


def test_castling_vit_has_no_qkv_bias_by_default():
    model = CastlingViT(arch=dict(embed_dims=24, num_layers=2, num_heads=3,
                                  feedforward_channels=48),
                        img_size=32, patch_size=8)
    assert not any(k.endswith('qkv.bias') for k in model.state_dict())
