"""What our backbones share: strict Pretrained init, frozen stages, norm_eval."""
from typing import List

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from .norm import eval_norms
from .pretrained import StrictPretrainedMixin


class EffAttnBackbone(StrictPretrainedMixin, BaseModule):
    """Base of mmeffattn backbones (mmpretrain conventions).

    Subclasses set ``self.frozen_stages`` and ``self.norm_eval`` and list the
    modules to freeze in :meth:`_frozen_modules`; ``train()`` keeps them
    frozen (eval mode, no grad) and, with ``norm_eval``, norms in eval mode.
    """

    #: smallest input edge: the total stride, below which the last stage has
    #: no pixel of its own
    min_input_size = 32

    def check_input(self, x) -> None:
        """One clear error for an input that is not a float (B, C, H, W)
        image batch of at least ``min_input_size`` pixels a side."""
        channels = getattr(self, 'in_channels', None)
        want = (f'(B, {channels or "C"}, H, W) float tensor with H, W >= '
                f'{self.min_input_size}')
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'{type(self).__name__} expects a {want}, got '
                            f'{type(x).__name__}')
        got = f'{x.dtype} tensor of shape {tuple(x.shape)}'
        if (x.dim() != 4 or not x.is_floating_point()
                or (channels and x.shape[1] != channels)
                or min(x.shape[-2:]) < self.min_input_size):
            hint = '' if x.is_floating_point() else (
                ' (normalise images first, e.g. with the model\'s '
                'data_preprocessor)')
            raise ValueError(f'{type(self).__name__} expects a {want}, got '
                             f'a {got}{hint}')

    def _frozen_modules(self) -> List[nn.Module]:
        raise NotImplementedError

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            eval_norms(self)
        return self
