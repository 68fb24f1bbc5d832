"""Anneals Castling-ViT's training-only softmax branch to zero."""
import math

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmeffattn.registry import HOOKS


@HOOKS.register_module()
class LinearAngularAuxAnnealHook(Hook):
    """Sets ``aux_weight`` of every
    :class:`~mmeffattn.LinearAngularAttention` before each training iteration.

    The weight follows a half cosine from ``start_weight`` at the first
    iteration to 0 at ``end`` (a fraction of the run's iterations) and stays
    0 after it, so the last part of training optimises the model that
    inference runs (linear-angular only). Castling-ViT anneals this branch
    but publishes no schedule; docs/castling_vit.md gives the reasons for
    this one. The weight is logged as ``castling_aux_weight``.

    Args:
        start_weight (float): weight at iteration 0. Defaults to 1.0.
        end (float): fraction of ``max_iters`` where it reaches 0, in
            (0, 1]. Defaults to 0.75.
    """

    priority = 'NORMAL'

    def __init__(self, start_weight: float = 1.0, end: float = 0.75):
        if not 0 < end <= 1:
            raise ValueError(f'LinearAngularAuxAnnealHook: end must be in '
                             f'(0, 1] (a fraction of training), got {end}')
        if start_weight < 0:
            raise ValueError(f'LinearAngularAuxAnnealHook: start_weight must '
                             f'be >= 0, got {start_weight}')
        self.start_weight, self.end = start_weight, end

    def weight_at(self, progress: float) -> float:
        """The weight at ``progress`` = iteration / max_iters in [0, 1]."""
        t = min(progress / self.end, 1.0)
        return self.start_weight * 0.5 * (1 + math.cos(math.pi * t))

    @staticmethod
    def attention_modules(model):
        from mmeffattn.models.attention import LinearAngularAttention
        model = model.module if is_model_wrapper(model) else model
        return [m for m in model.modules()
                if isinstance(m, LinearAngularAttention)]

    def before_train(self, runner) -> None:
        self._modules = self.attention_modules(runner.model)
        if not self._modules:
            raise ValueError('LinearAngularAuxAnnealHook: the model has no '
                             'LinearAngularAttention (is it a CastlingViT?)')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        weight = self.weight_at(runner.iter / max(runner.max_iters, 1))
        for module in self._modules:  # found once, in before_train
            module.aux_weight = weight
        runner.message_hub.update_scalar('train/castling_aux_weight', weight)
