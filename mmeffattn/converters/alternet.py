"""Convert an official AlterNet checkpoint (xxxnell/how-do-vits-work,
``models/alternet.py``: ``dnn_50`` / ``dnn_101`` with the ImageNet stem) to
an mmpretrain ``ImageClassifier`` with ``mmeffattn.AlterNet``
(``out_indices=(3,)``), ``GlobalAveragePooling`` and ``LinearClsHead``, as
in ``configs/alternet/alternet-50_8xb32_in1k.py``.

SRC is read weights-only: a checkpoint saved by the official code
(``{'state_dict': ..., 'optimizer': ...}``) or a bare state dict; a
``module.`` prefix is dropped. DST is weights-only:
``{'state_dict': ..., 'meta': {...}}``. Every key is mapped by the tables
below; a key that maps to nothing, or a tensor whose shape our model cannot
take (the CIFAR 3x3 stem, a strided ``to_kv``), is an error naming it. With
``--config`` the result is loaded with ``strict=True`` into the model of
that config.

Layout: ``layer0.layer0.0`` is ``backbone.stem.0``; in the pre-activation
bottlenecks ``bn``/``conv2.0``/``conv3.0`` are ``norm1``/``norm2``/
``norm3`` and ``conv2.2``/``conv3.2`` are ``conv2``/``conv3``; in the MSA
blocks ``attn.attn.to_q``/``to_kv``/``to_out.0`` are ``attn.q``/``kv``/
``proj`` and ``attn.pos_embedding`` is ``attn.rel_pos_bias`` (the same
(2w-1, 2w-1) table, same indexing); ``classifier.0.bn`` is
``backbone.out_norm3.0`` and ``classifier.0.dense`` is ``head.fc``.
"""
import re
from collections import OrderedDict
from typing import Dict

import torch

from . import common

_BN = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
_BLOCK = {
    # pre-activation bottleneck (preresnet_dnn_block.Bottleneck)
    r'bn\.' + _BN: r'norm1.\1',
    r'conv1\.weight': 'conv1.weight',
    r'conv2\.0\.' + _BN: r'norm2.\1',
    r'conv2\.2\.weight': 'conv2.weight',
    r'conv3\.0\.' + _BN: r'norm3.\1',
    r'conv3\.2\.weight': 'conv3.weight',
    r'shortcut\.0\.weight': 'shortcut.weight',
    # MSA block (alternet.AttentionBlockB)
    r'norm([12])\.' + _BN: r'norm\1.\2',
    r'conv\.weight': 'conv.weight',
    r'attn\.pos_embedding': 'attn.rel_pos_bias',
    r'attn\.attn\.to_q\.weight': 'attn.q.weight',
    r'attn\.attn\.to_kv\.weight': 'attn.kv.weight',
    r'attn\.attn\.to_out\.0\.(weight|bias)': r'attn.proj.\1',
}
_TOP = {
    r'layer0\.layer0\.0\.weight': 'backbone.stem.0.weight',
    r'classifier\.0\.bn\.' + _BN: r'backbone.out_norm3.0.\1',
    r'classifier\.0\.dense\.(weight|bias)': r'head.fc.\1',
}


def map_key(key: str) -> str:
    """The mmpretrain/mmeffattn name of an official key. Raises
    ``KeyError`` naming a key that maps to nothing."""
    new = common.match_rules(key, _TOP)
    if new is not None:
        return new
    m = re.fullmatch(r'layer([1-4])\.(\d+)\.(.+)', key)
    tail = m and common.match_rules(m.group(3), _BLOCK)
    if tail is not None:
        return f'backbone.layer{m.group(1)}.{m.group(2)}.{tail}'
    raise KeyError(f'official AlterNet key {key!r} maps to no '
                   'mmeffattn.AlterNet parameter (not a models/alternet.py '
                   'dnn_50/dnn_101 checkpoint with the BN-GAP classifier)')


def _check_shape(key: str, value: torch.Tensor):
    if key == 'layer0.layer0.0.weight' and tuple(value.shape[2:]) != (7, 7):
        raise ValueError(
            f'{key}: shape {tuple(value.shape)} is the 3x3 stem without '
            'pooling (stem=False, the CIFAR models); mmeffattn.AlterNet '
            'builds the ImageNet stem (7x7/2 conv, 3x3/2 max pool)')
    if key.endswith('to_kv.weight') and tuple(value.shape[2:]) != (1, 1):
        raise ValueError(
            f'{key}: shape {tuple(value.shape)}: keys/values computed with '
            'a strided k x k conv (k > 1); mmeffattn.AlterNet has k=1')


def official_state_dict(ckpt) -> Dict[str, torch.Tensor]:
    """The model weights in an official checkpoint (see module docstring)."""
    if not isinstance(ckpt, dict):
        raise TypeError(f'expected a dict checkpoint, got {type(ckpt)}')
    state = ckpt.get('state_dict', ckpt)
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state.items()}


def convert(
        state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Official state dict -> ``ImageClassifier`` state dict."""
    return common.rename_state_dict(state, map_key, _check_shape)
