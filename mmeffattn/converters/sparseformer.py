"""Convert an official SparseFormer checkpoint (showlab/sparseformer,
``imagenet/models/sparseformer.py``: the released T/S/B ImageNet-1k files
``sparseformer_{t,s,b}_imagenet1k.pth``) to an mmpretrain
``ImageClassifier`` with ``mmeffattn.SparseFormer``.

SRC is read weights-only (the training checkpoint's pickled yacs ``config``
entry is read as a plain dict and dropped). Its weights are ``model_ema``
(what the official evaluation loads) when present, else ``model``
(``key`` picks one), or SRC is a bare state dict. DST is weights-only:
``{'state_dict': ..., 'meta': {...}}``. Every key is mapped by the table
below; a key that maps to nothing is an error naming it. With a config,
the result is loaded with ``strict=True`` into the model of that config.

Layout: ``layers.0`` is the focusing unit (``backbone.focus``), ``layers.1``
the width transition, ``layers.2..`` the cortex units (``backbone.cortex``);
``nn.MultiheadAttention``'s ``in_proj``/``out_proj`` become
``attn.qkv``/``attn.proj``; ``roi_offset_bias`` becomes the bias of
``mixer.offsets``; ``head.norm`` is ``backbone.norm`` and
``head.classifier`` is ``head.fc``.
"""
import re
from collections import OrderedDict
from typing import Dict

import torch

from . import common

_WB = r'(weight|bias)'
_UNIT = {
    r'ln_attn\.' + _WB: r'norm_attn.\1',
    r'attn\.in_proj_(weight|bias)': r'attn.qkv.\1',
    r'attn\.out_proj\.' + _WB: r'attn.proj.\1',
    r'ffn\.0\.' + _WB: r'norm_ffn.\1',
    r'ffn\.1\.' + _WB: r'ffn.layers.0.0.\1',
    r'ffn\.3\.' + _WB: r'ffn.layers.1.\1',
    r'roi_adjust_module\.0\.' + _WB: r'mixer.roi_norm.\1',
    r'roi_adjust_module\.1\.weight': 'mixer.roi_delta.weight',
    r'roi_offset_module\.0\.' + _WB: r'mixer.offset_norm.\1',
    r'roi_offset_module\.1\.weight': 'mixer.offsets.weight',
    r'roi_offset_bias': 'mixer.offsets.bias',
    r'adaptive_mixing\.parameter_generator\.0\.' + _WB:
    r'mixer.generator_norm.\1',
    r'adaptive_mixing\.parameter_generator\.([12])\.' + _WB:
    lambda m: f'mixer.generator.{int(m.group(1)) - 1}.{m.group(2)}',
    r'adaptive_mixing\.m_beta': 'mixer.channel_bias',
    r'adaptive_mixing\.s_beta': 'mixer.point_bias',
    r'adaptive_mixing\.tuo_proj\.' + _WB: r'mixer.out.\1',
}
_TOP = {
    r'feat_extractor\.conv1\.' + _WB: r'backbone.early_conv.0.\1',
    r'token_roi\.weight': 'backbone.token_roi',
    r'token_embedding\.weight': 'backbone.token_embed',
    r'layers\.1\.([01])\.' + _WB: r'backbone.transition.\1.\2',
    r'head\.norm\.' + _WB: r'backbone.norm.\1',
    r'head\.classifier\.' + _WB: r'head.fc.\1',
}


def map_key(key: str) -> str:
    """The mmpretrain/mmeffattn name of an official key. Raises
    ``KeyError`` naming a key that maps to nothing."""
    new = common.match_rules(key, _TOP)
    if new is not None:
        return new
    m = re.fullmatch(r'layers\.(\d+)\.(.+)', key)
    tail = (m and m.group(1) != '1'
            and common.match_rules(m.group(2), _UNIT))
    if tail:
        idx = int(m.group(1))
        unit = 'backbone.focus' if idx == 0 else f'backbone.cortex.{idx - 2}'
        return f'{unit}.{tail}'
    raise KeyError(f'official SparseFormer key {key!r} maps to no '
                   'mmeffattn.SparseFormer parameter (not an '
                   'imagenet/models/sparseformer.py checkpoint, or a layout '
                   'with more than 2 widths or a sampling unit beyond the '
                   'first cortex unit)')


def load_official(path: str):
    """``torch.load(weights_only=True)``, with the yacs ``CfgNode`` of the
    official training checkpoints read as an ``OrderedDict`` (data only)."""
    with torch.serialization.safe_globals([(OrderedDict,
                                            'yacs.config.CfgNode')]):
        return torch.load(path, map_location='cpu', weights_only=True)


def official_state_dict(ckpt, key: str = 'auto') -> Dict[str, torch.Tensor]:
    """The model weights in an official checkpoint (see module docstring)."""
    if not isinstance(ckpt, dict):
        raise TypeError(f'expected a dict checkpoint, got {type(ckpt)}')
    if key not in ('auto', 'model_ema', 'model'):
        raise ValueError(f"key={key!r}: use 'auto', 'model_ema' or 'model'")
    if key == 'auto':
        key = 'model_ema' if ckpt.get('model_ema') is not None else \
            'model' if 'model' in ckpt else None
    if key is None:
        return ckpt
    if ckpt.get(key) is None:
        raise KeyError(f'checkpoint has no {key!r} entry '
                       f'(top-level keys: {sorted(ckpt)[:10]})')
    state = ckpt[key]
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state.items()}


def convert(
        state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Official state dict -> ``ImageClassifier`` state dict."""
    return common.rename_state_dict(state, map_key)
