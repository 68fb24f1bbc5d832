"""Castling-ViT: a DeiT whose softmax attention is linear-angular."""
import numpy as np
from mmpretrain.models.backbones import VisionTransformer

from mmeffattn.models.utils import (check_int, check_number, check_vit_input,
                                    set_vit_stages)
from mmeffattn.registry import MODELS

from ..attention.linear_angular_attention import LinearAngularAttention


@MODELS.register_module()
class CastlingViT(VisionTransformer):
    """mmpretrain's :class:`VisionTransformer` (DeiT archs) with
    :class:`~mmeffattn.LinearAngularAttention` in every layer.

    Everything but the attention is mmpretrain's (patch embedding, class
    token, position embedding, FFN, norms, ``out_type``, ``out_indices``,
    ``frozen_stages``, layer-wise lr decay depths); a DeiT checkpoint
    initialises all of it, the ``dconv`` filters start fresh.

    Args:
        arch (str | dict): ``'deit-tiny'``, ``'deit-small'``, ``'deit-base'``
            or any :class:`VisionTransformer` arch. Defaults to
            ``'deit-small'``.
        dconv_kernel (int): taps of the depthwise sequence convolution over
            v, an odd int >= 1. Defaults to 9.
        aux_threshold (float): mask threshold of the training-only masked
            softmax branch. Defaults to 0.02.
        qkv_bias (bool): bias of the qkv projection. Defaults to False,
            the official default (mmpretrain's DeiT has one: pass True to
            take it from a DeiT checkpoint).
        **kwargs: :class:`VisionTransformer`'s arguments, with upstream's
            meanings: ``out_indices`` in ``[-num_layers, num_layers - 1]``
            (a stage is a layer), ``frozen_stages`` in ``[-1, num_layers]``
            (``k >= 1``: the embeddings and the first k layers; 0, -1:
            nothing), both checked at build.

    Shapes:
        x: (B, 3, H, W) with H, W >= the patch size -> tuple per
        ``out_indices`` (``out_type``).

    Example:
        >>> import torch
        >>> from mmeffattn.models import CastlingViT
        >>> arch = dict(embed_dims=32, num_layers=2, num_heads=2,
        ...             feedforward_channels=64)
        >>> model = CastlingViT(arch, img_size=32, patch_size=8)
        >>> tuple(model(torch.rand(1, 3, 32, 32))[0].shape)
        (1, 32)
    """

    def __init__(self, arch='deit-small', dconv_kernel: int = 9,
                 aux_threshold: float = 0.02, **kwargs):
        if kwargs.get('layer_scale_init_value', 0):
            raise ValueError('CastlingViT has no layer scale; remove '
                             'layer_scale_init_value')
        check_int('CastlingViT', 'dconv_kernel', dconv_kernel, odd=True)
        check_number('CastlingViT', 'aux_threshold', aux_threshold, 0, 1)
        out_indices = kwargs.pop('out_indices', -1)
        frozen_stages = kwargs.pop('frozen_stages', -1)
        super().__init__(arch=arch, **kwargs)
        drop_path = np.linspace(0, kwargs.get('drop_path_rate', 0.),
                                self.num_layers)
        for layer, rate in zip(self.layers, drop_path):
            layer.attn = LinearAngularAttention(
                embed_dims=self.embed_dims,
                num_heads=self.arch_settings['num_heads'],
                qkv_bias=kwargs.get('qkv_bias', False),
                dconv_kernel=dconv_kernel,
                aux_threshold=aux_threshold,
                proj_drop=kwargs.get('drop_rate', 0.),
                dropout_layer=dict(type='DropPath', drop_prob=float(rate)))
        # after the attention swap, so that frozen layers stay frozen
        set_vit_stages(self, out_indices, frozen_stages)

    def forward(self, x):
        """(B, 3, H, W), H, W >= the patch size -> as upstream."""
        check_vit_input(self, x)
        return super().forward(x)

    def attention_modules(self):
        """The :class:`LinearAngularAttention` of every layer."""
        return [layer.attn for layer in self.layers]
