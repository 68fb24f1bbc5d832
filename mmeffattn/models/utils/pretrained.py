"""Loud loading of ``init_cfg=dict(type='Pretrained', ...)``.

mmengine's ``PretrainedInit`` loads non-strictly and only *logs* missing keys,
so a wrong prefix or a checkpoint of another model silently leaves the weights
random. Our backbones load through :func:`load_pretrained` instead: missing
keys raise, unexpected keys warn, and the checkpoint itself goes through the
weights-only policy of :mod:`mmeffattn.utils.checkpoint`.
"""
import warnings
from typing import Optional

import torch.nn as nn

from mmeffattn.utils.checkpoint import CheckpointError


def load_pretrained(module: nn.Module, checkpoint: str,
                    prefix: Optional[str] = None,
                    map_location: str = 'cpu') -> None:
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(checkpoint, map_location=map_location)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f'checkpoint {checkpoint} holds no state_dict')
    if prefix:
        if not prefix.endswith('.'):
            prefix += '.'
        state = {k[len(prefix):]: v for k, v in state.items()
                 if k.startswith(prefix)}
        if not state:
            raise CheckpointError(
                f'checkpoint {checkpoint} has no key with prefix {prefix!r}')
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise CheckpointError(
            f'checkpoint {checkpoint} (prefix {prefix!r}) does not match '
            f'{type(module).__name__}: {len(result.missing_keys)} missing '
            f'keys, e.g. {result.missing_keys[:5]}')
    if result.unexpected_keys:
        warnings.warn(f'checkpoint {checkpoint}: ignored '
                      f'{len(result.unexpected_keys)} unexpected keys, e.g. '
                      f'{result.unexpected_keys[:5]}')


class StrictPretrainedMixin:
    """``init_weights`` that routes ``Pretrained`` init_cfg to load_pretrained."""

    def init_weights(self):
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.init_cfg = None
            try:
                super().init_weights()
            finally:
                self.init_cfg = cfg
            load_pretrained(self, cfg['checkpoint'], cfg.get('prefix'),
                            cfg.get('map_location', 'cpu'))
            self._is_init = True
        else:
            super().init_weights()
