"""Convert an official RT-DETR checkpoint (lyuwenyu/RT-DETR, rtdetr_pytorch:
PResNet-18/34/50/101-vd) to ``mmeffattn.RTDETR``.

SRC is read with ``torch.load(weights_only=True)``; its weights are
``ema.module`` (the EMA model the official evaluation uses) when present,
else ``model`` (``key`` picks one), or SRC is a bare state dict. DST is
weights-only: ``{'state_dict': ..., 'meta': {...}}``. Every key is mapped by
the table below; a key that maps to nothing is an error naming it. With
``--config`` the result is loaded with ``strict=True`` into the model built
from that config.

Layout: ``backbone.*`` -> mmeffattn ``PResNet`` (mmdet ResNet names),
``encoder.*`` -> ``neck.0`` (``HybridEncoder``), ``decoder.input_proj`` ->
``neck.1`` (``ChannelMapper``), the decoder layers -> ``decoder.layers``,
``enc_output`` -> ``memory_trans_fc``/``memory_trans_norm``, the score and
box heads of the L decoder layers -> ``bbox_head.{cls,reg}_branches.0..L-1``
and the encoder's -> ``bbox_head.{cls,reg}_branches.L``, the denoising class
embedding -> ``dn_query_generator.label_embedding`` without its all-zero
padding row. Frozen BNs (no ``num_batches_tracked``) get a zero count.
Official converted models expect inputs scaled to [0, 1] (``mean=0``,
``std=255``, RGB), not ImageNet mean/std: see docs/rtdetr.md.
"""
import re
from collections import OrderedDict
from typing import Dict

import torch

from . import common

_BN = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
_WB = r'(weight|bias)'
_MHA = r'(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)'
_BRANCH = dict(a='1', b='2', c='3')
_RES = r'backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.'


def _layer(m, tail):
    return f'backbone.layer{int(m.group(1)) + 1}.{m.group(2)}.{tail}'


# (pattern, replacement): a string template for re.sub, or a callable of the
# match; the first full match wins
RULES = [
    # backbone: deep stem, residual blocks, shortcuts
    (r'backbone\.conv1\.conv1_([123])\.conv\.weight',
     lambda m: f'backbone.stem.{3 * (int(m.group(1)) - 1)}.weight'),
    (r'backbone\.conv1\.conv1_([123])\.norm\.' + _BN,
     lambda m: f'backbone.stem.{3 * (int(m.group(1)) - 1) + 1}.'
     f'{m.group(2)}'),
    (_RES + r'branch2([abc])\.conv\.weight',
     lambda m: _layer(m, f'conv{_BRANCH[m.group(3)]}.weight')),
    (_RES + r'branch2([abc])\.norm\.' + _BN,
     lambda m: _layer(m, f'bn{_BRANCH[m.group(3)]}.{m.group(4)}')),
    # shortcut after an average pool (stride 2) or alone (stride 1): both
    # are (pool, conv, norm) in mmdet's average-down ResLayer
    (_RES + r'short\.conv\.conv\.weight',
     lambda m: _layer(m, 'downsample.1.weight')),
    (_RES + r'short\.conv\.norm\.' + _BN,
     lambda m: _layer(m, f'downsample.2.{m.group(3)}')),
    (_RES + r'short\.conv\.weight',
     lambda m: _layer(m, 'downsample.1.weight')),
    (_RES + r'short\.norm\.' + _BN,
     lambda m: _layer(m, f'downsample.2.{m.group(3)}')),
    # hybrid encoder
    (r'encoder\.input_proj\.(\d+)\.0\.weight',
     r'neck.0.input_proj.\1.conv.weight'),
    (r'encoder\.input_proj\.(\d+)\.1\.' + _BN, r'neck.0.input_proj.\1.bn.\2'),
    (r'encoder\.encoder\.(\d+)\.layers\.0\.self_attn\.' + _MHA,
     r'neck.0.encoder.\1.self_attn.attn.\2'),
    (r'encoder\.encoder\.(\d+)\.layers\.0\.linear1\.' + _WB,
     r'neck.0.encoder.\1.ffn.layers.0.0.\2'),
    (r'encoder\.encoder\.(\d+)\.layers\.0\.linear2\.' + _WB,
     r'neck.0.encoder.\1.ffn.layers.1.\2'),
    (r'encoder\.encoder\.(\d+)\.layers\.0\.norm([12])\.' + _WB,
     lambda m: f'neck.0.encoder.{m.group(1)}.norms.{int(m.group(2)) - 1}.'
     f'{m.group(3)}'),
    (r'encoder\.(lateral_convs|downsample_convs)\.(\d+)\.conv\.weight',
     r'neck.0.\1.\2.conv.weight'),
    (r'encoder\.(lateral_convs|downsample_convs)\.(\d+)\.norm\.' + _BN,
     r'neck.0.\1.\2.bn.\3'),
    (r'encoder\.(fpn_blocks|pan_blocks)\.(\d+)\.(conv[123])\.conv\.weight',
     r'neck.0.\1.\2.\3.conv.weight'),
    (r'encoder\.(fpn_blocks|pan_blocks)\.(\d+)\.(conv[123])\.norm\.' + _BN,
     r'neck.0.\1.\2.\3.bn.\4'),
    (r'encoder\.(fpn_blocks|pan_blocks)\.(\d+)\.bottlenecks\.(\d+)\.'
     r'conv([12])\.conv\.weight',
     lambda m: f'neck.0.{m.group(1)}.{m.group(2)}.blocks.{m.group(3)}.'
     f'{("conv3x3", "conv1x1")[int(m.group(4)) - 1]}.conv.weight'),
    (r'encoder\.(fpn_blocks|pan_blocks)\.(\d+)\.bottlenecks\.(\d+)\.'
     r'conv([12])\.norm\.' + _BN,
     lambda m: f'neck.0.{m.group(1)}.{m.group(2)}.blocks.{m.group(3)}.'
     f'{("conv3x3", "conv1x1")[int(m.group(4)) - 1]}.bn.{m.group(5)}'),
    # decoder input projection, layers, query selection, heads
    (r'decoder\.input_proj\.(\d+)\.conv\.weight',
     r'neck.1.convs.\1.conv.weight'),
    (r'decoder\.input_proj\.(\d+)\.norm\.' + _BN, r'neck.1.convs.\1.bn.\2'),
    (r'decoder\.decoder\.layers\.(\d+)\.self_attn\.' + _MHA,
     r'decoder.layers.\1.self_attn.attn.\2'),
    (r'decoder\.decoder\.layers\.(\d+)\.cross_attn\.(sampling_offsets|'
     r'attention_weights|value_proj|output_proj)\.' + _WB,
     r'decoder.layers.\1.cross_attn.\2.\3'),
    (r'decoder\.decoder\.layers\.(\d+)\.linear1\.' + _WB,
     r'decoder.layers.\1.ffn.layers.0.0.\2'),
    (r'decoder\.decoder\.layers\.(\d+)\.linear2\.' + _WB,
     r'decoder.layers.\1.ffn.layers.1.\2'),
    (r'decoder\.decoder\.layers\.(\d+)\.norm([123])\.' + _WB,
     lambda m: f'decoder.layers.{m.group(1)}.norms.{int(m.group(2)) - 1}.'
     f'{m.group(3)}'),
    (r'decoder\.denoising_class_embed\.weight',
     'dn_query_generator.label_embedding.weight'),
    (r'decoder\.query_pos_head\.layers\.([01])\.' + _WB,
     r'decoder.ref_point_head.layers.\1.\2'),
    (r'decoder\.enc_output\.0\.' + _WB, r'memory_trans_fc.\1'),
    (r'decoder\.enc_output\.1\.' + _WB, r'memory_trans_norm.\1'),
    (r'decoder\.dec_score_head\.(\d+)\.' + _WB,
     r'bbox_head.cls_branches.\1.\2'),
    (r'decoder\.dec_bbox_head\.(\d+)\.layers\.([012])\.' + _WB,
     lambda m: f'bbox_head.reg_branches.{m.group(1)}.{2 * int(m.group(2))}.'
     f'{m.group(3)}'),
    # enc_score_head / enc_bbox_head: branch L, filled in by convert()
    (r'decoder\.enc_score_head\.' + _WB, r'bbox_head.cls_branches.{L}.\1'),
    (r'decoder\.enc_bbox_head\.layers\.([012])\.' + _WB,
     lambda m: f'bbox_head.reg_branches.{{L}}.{2 * int(m.group(1))}.'
     f'{m.group(2)}'),
]
# buffers the official model derives from its config (recomputed here)
DERIVED = (r'encoder\.pos_embed\d+', r'decoder\.anchors',
           r'decoder\.valid_mask')


def map_key(key: str) -> str:
    """The mmeffattn name of an official key (``{L}`` left for the number of
    decoder layers). Raises ``KeyError`` naming a key that maps to nothing."""
    new = common.match_rules(key, RULES)
    if new is not None:
        return new
    raise KeyError(f'official RT-DETR key {key!r} maps to no mmeffattn.RTDETR '
                   'parameter (unsupported variant: deployed RepVGG blocks, '
                   'learned queries, extra input levels, more than one AIFI '
                   'layer per level, or not an rtdetr_pytorch checkpoint)')


def official_state_dict(ckpt, key: str = 'auto') -> Dict[str, torch.Tensor]:
    """The model weights in an official checkpoint (see module docstring)."""
    if not isinstance(ckpt, dict):
        raise TypeError(f'expected a dict checkpoint, got {type(ckpt)}')
    if key not in ('auto', 'ema', 'model'):
        raise ValueError(f"key={key!r}: use 'auto', 'ema' or 'model'")
    if key == 'auto':
        key = 'ema' if 'ema' in ckpt else 'model' if 'model' in ckpt else None
    if key is None:
        return ckpt
    if key not in ckpt:
        raise KeyError(f'checkpoint has no {key!r} entry '
                       f'(top-level keys: {sorted(ckpt)[:10]})')
    state = ckpt[key]
    return state['module'] if key == 'ema' else state


def convert(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official state dict -> mmeffattn.RTDETR state dict."""
    layers = {int(m.group(1)) for k in state
              for m in [re.match(r'decoder\.dec_score_head\.(\d+)\.', k)] if m}
    num_layers = len(layers)
    out = OrderedDict()
    for key, value in state.items():
        if any(re.fullmatch(p, key) for p in DERIVED):
            continue
        new = map_key(key).replace('{L}', str(num_layers))
        if key == 'decoder.denoising_class_embed.weight':
            # nn.Embedding(num_classes + 1, padding_idx=num_classes): the
            # padding row is zero and never used
            if value[-1].abs().max() != 0:
                raise ValueError(f'{key}: the padding row (index '
                                 f'{len(value) - 1}) is not zero')
            value = value[:-1]
        if new in out:
            raise KeyError(f'{key!r} maps to {new!r}, already mapped')
        out[new] = value
    for new in list(out):
        if new.endswith('.running_mean'):
            count = new[:-len('running_mean')] + 'num_batches_tracked'
            out.setdefault(count, torch.tensor(0, dtype=torch.long))
    return out
