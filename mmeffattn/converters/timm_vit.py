"""Convert a timm ``VisionTransformer`` checkpoint (ViT, DeiT without the
distillation token; the layout ToMe's official patch runs on) to an
mmpretrain ``ImageClassifier`` with ``VisionTransformer`` keys: the model
of the ToMe configs (``mmeffattn.ToMeVisionTransformer`` +
``VisionTransformerClsHead``), which has the same keys.

SRC is read weights-only: a timm state dict, or a checkpoint with it under
``model`` or ``state_dict``. DST is weights-only:
``{'state_dict': ..., 'meta': {...}}``. With a config, the result is
loaded with ``strict=True`` into the model of that config.

Mapping: ``patch_embed.proj`` -> ``backbone.patch_embed.projection``;
``blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`` ->
``backbone.layers.i.{ln1, attn.qkv, attn.proj, ln2, ffn.layers.0.0,
ffn.layers.1}``; ``norm`` -> ``backbone.ln1`` (the final norm,
``final_norm=True``); ``fc_norm`` -> ``backbone.ln2`` (the norm after
average pooling: ``out_type='avg_featmap'`` with ``final_norm=False``);
``head`` -> ``head.layers.head``; ``cls_token``/``pos_embed`` ->
``backbone.``. A key outside this table (distillation token, layer scale,
register tokens, q/k norms) is an error naming it: those models are other
mmpretrain classes. mmpretrain's ViT, DeiT and DeiT-3 checkpoints need no
conversion (they load as they are; mmpretrain's
``tools/model_converters/deit3_to_mmpretrain.py`` converts the DeiT-3
originals). For ``mmeffattn.CastlingViT`` the result initialises
everything but the attention's ``dconv`` (load it non-strictly, e.g. as
``init_cfg=dict(type='Pretrained', checkpoint=DST)``; Castling-ViT's qkv
has no bias by default, so ``qkv.bias`` is then ignored).
"""
import re
from collections import OrderedDict
from typing import Dict

import torch

from . import common

_WB = r'(weight|bias)'
_BLOCK = {
    r'norm1\.' + _WB: r'ln1.\1',
    r'attn\.qkv\.' + _WB: r'attn.qkv.\1',
    r'attn\.proj\.' + _WB: r'attn.proj.\1',
    r'norm2\.' + _WB: r'ln2.\1',
    r'mlp\.fc1\.' + _WB: r'ffn.layers.0.0.\1',
    r'mlp\.fc2\.' + _WB: r'ffn.layers.1.\1',
}
_TOP = {
    r'cls_token': 'backbone.cls_token',
    r'pos_embed': 'backbone.pos_embed',
    r'patch_embed\.proj\.' + _WB: r'backbone.patch_embed.projection.\1',
    r'norm\.' + _WB: r'backbone.ln1.\1',
    r'fc_norm\.' + _WB: r'backbone.ln2.\1',
    r'head\.' + _WB: r'head.layers.head.\1',
}


def map_key(key: str) -> str:
    """The mmpretrain name of a timm key. Raises ``KeyError`` naming a key
    that maps to nothing."""
    new = common.match_rules(key, _TOP)
    if new is not None:
        return new
    m = re.fullmatch(r'blocks\.(\d+)\.(.+)', key)
    tail = m and common.match_rules(m.group(2), _BLOCK)
    if tail is not None:
        return f'backbone.layers.{m.group(1)}.{tail}'
    raise KeyError(f'timm key {key!r} maps to no mmpretrain '
                   'VisionTransformer parameter (distilled DeiT, layer '
                   'scale, register tokens and q/k norms are not plain '
                   'ViT/DeiT layouts)')


def timm_state_dict(ckpt) -> Dict[str, torch.Tensor]:
    """The weights in a timm checkpoint (see module docstring)."""
    if not isinstance(ckpt, dict):
        raise TypeError(f'expected a dict checkpoint, got {type(ckpt)}')
    for key in ('model', 'state_dict'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in ckpt.items()}


def convert(
        state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """timm state dict -> ``ImageClassifier`` state dict."""
    return common.rename_state_dict(state, map_key)
