"""What our backbones share: strict Pretrained init, frozen stages, norm_eval."""
from typing import List

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
