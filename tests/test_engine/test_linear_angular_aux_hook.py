"""LinearAngularAuxAnnealHook: Castling-ViT's auxiliary-branch weight,
annealed linearly to 0 over the first part of training."""
from types import SimpleNamespace

import pytest
import torch

from mmeffattn.engine import LinearAngularAuxAnnealHook
from mmeffattn.models import CastlingViT


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
