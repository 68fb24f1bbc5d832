"""Loud loading of ``init_cfg=dict(type='Pretrained', ...)``.

mmengine's ``PretrainedInit`` loads non-strictly and only *logs* missing keys,
so a wrong prefix or a checkpoint of another model silently leaves the weights
random. Our backbones load through :func:`load_pretrained` instead: missing
keys raise, unexpected keys warn, and the checkpoint itself goes through the
weights-only policy of :mod:`mmeffattn.utils.checkpoint`.
"""
import glob
import os.path as osp
import re
import warnings
from typing import Optional

import torch.nn as nn

from mmeffattn.utils.checkpoint import CheckpointError

PUBLISHED_SUFFIX = re.compile(r'_(\d{8})-([0-9a-f]{8})\.pth$')


def resolve_checkpoint(path: str) -> str:
    """``path``, or the newest published file of the same name.

    Configs name a classifier as ``checkpoints/NAME.pth``, while
    tools/model_converters/publish_model.py writes
    ``checkpoints/NAME_<YYYYMMDD>-<sha256[:8]>.pth``. When ``path`` itself is
    absent, the published file with the latest date is taken. URLs and
    existing files are returned unchanged.
    """
    if '://' in path or osp.isfile(path) or not path.endswith('.pth'):
        return path
    stem = path[:-len('.pth')]
    found = [p for p in glob.glob(glob.escape(stem) + '_*-*.pth')
             if PUBLISHED_SUFFIX.search(p[len(stem):])]
    if not found:
        raise FileNotFoundError(
            f'checkpoint {path} does not exist, nor a published '
            f'{osp.basename(stem)}_<YYYYMMDD>-<hash>.pth beside it. Publish '
            'the classifier with tools/model_converters/publish_model.py '
            'into that folder, or override the path with --cfg-options '
            'model.backbone.init_cfg.checkpoint=PATH')
    return max(found, key=lambda p: PUBLISHED_SUFFIX.search(p).group(1))


def load_pretrained(module: nn.Module, checkpoint: str,
                    prefix: Optional[str] = None,
                    map_location: str = 'cpu') -> None:
    from mmengine.runner.checkpoint import _load_checkpoint
    checkpoint = resolve_checkpoint(checkpoint)
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
    missing_ok = getattr(module, 'pretrained_missing_ok', lambda key: False)
    fresh = [k for k in result.missing_keys if missing_ok(k)]
    if fresh:
        warnings.warn(f'checkpoint {checkpoint} has no {fresh}; these '
                      'output layers keep their default init')
        result.missing_keys[:] = [k for k in result.missing_keys
                                  if not missing_ok(k)]
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
    """``init_weights`` that routes a ``Pretrained`` init_cfg to
    load_pretrained."""

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
