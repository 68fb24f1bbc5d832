"""Token Merging (ToMe) for mmpretrain's plain ViT / DeiT."""
from typing import Optional, Sequence, Tuple, Union

import torch
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from mmpretrain.models.utils import resize_pos_embed

from mmeffattn.models.utils import check_vit_input, set_vit_stages
from mmeffattn.ops import bipartite_soft_matching, merge_schedule, merge_wavg
from mmeffattn.registry import MODELS

from ..attention.proportional_attention import ProportionalMultiheadAttention


class ToMeTransformerEncoderLayer(TransformerEncoderLayer):
    """mmpretrain's encoder layer with a merge between attention and FFN::

        x = x + attn(ln1(x), size); merge r tokens; x = ffn(ln2(x)) + x

    Adds no parameters: the parent's modules and state_dict keys.
    """

    def forward(self, x: torch.Tensor, size: Optional[torch.Tensor] = None,
                r: int = 0, prop_attn: bool = True,
                class_token: bool = True
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        out, metric = self.attn(self.ln1(x), size if prop_attn else None)
        x = x + out
        if r > 0:
            merge, _ = bipartite_soft_matching(metric, r, class_token)
            x, size = merge_wavg(merge, x, size)
        return self.ffn(self.ln2(x), identity=x), size


@MODELS.register_module()
class ToMeVisionTransformer(VisionTransformer):
    """mmpretrain's :class:`VisionTransformer` with token merging.

    Every layer merges ``r`` tokens after its attention residual, by
    bipartite soft matching on the keys (averaged over heads); the class
    token is never merged. The modules and state_dict keys are the
    parent's, so any mmpretrain ViT/DeiT checkpoint loads with
    ``strict=True`` and ToMe applies off the shelf; ``tome_r=0`` computes
    exactly what :class:`VisionTransformer` computes.

    Args:
        tome_r (int | tuple | list): tokens merged per layer, as the
            official ``parse_r``: an int (the same in every layer), a tuple
            ``(r, inflection)`` with inflection in [-1, 1] (``(r, -1)``
            decreases from 2r to 0, the paper's schedule; ``(r, 0)``
            constant; ``(r, 1)`` increasing), or a list of per-layer values
            padded with zeros (:func:`~mmeffattn.ops.merge_schedule`).
            Each layer merges at most half
            of its tokens other than the class token. Can be changed after
            building (``model.backbone.tome_r = 8``). Defaults to 0.
        prop_attn (bool): proportional attention (``log(size)`` on the
            logits). Defaults to True.
        **kwargs: :class:`VisionTransformer`'s arguments (``arch`` includes
            the ViT and DeiT archs). ``out_type`` ``'cls_token'`` or
            ``'avg_featmap'`` (size-weighted mean of the tokens) when
            merging; ``'featmap'`` and ``'raw'`` need the token grid, which
            merging destroys, and raise. ``out_indices`` and
            ``frozen_stages`` keep upstream's meanings (a stage is a layer:
            ``out_indices`` in ``[-num_layers, num_layers - 1]``,
            ``frozen_stages`` in ``[-1, num_layers]``), checked at build.

    Shapes:
        x: (B, C, H, W), H, W >= the patch size -> tuple of
        (B, embed_dims) per ``out_indices``.

    Example:
        >>> import torch
        >>> from mmeffattn.models import ToMeVisionTransformer
        >>> arch = dict(embed_dims=32, num_layers=2, num_heads=2,
        ...             feedforward_channels=64)
        >>> model = ToMeVisionTransformer(tome_r=2, arch=arch, img_size=32,
        ...                               patch_size=8)
        >>> tuple(model(torch.rand(1, 3, 32, 32))[0].shape)
        (1, 32)
    """

    #: output types that need the tokens' spatial order
    SPATIAL_OUT_TYPES = ('featmap', 'raw')

    def __init__(self, tome_r: Union[int, Sequence] = 0,
                 prop_attn: bool = True, **kwargs):
        out_indices = kwargs.pop('out_indices', -1)
        frozen_stages = kwargs.pop('frozen_stages', -1)
        super().__init__(**kwargs)
        set_vit_stages(self, out_indices, frozen_stages)
        # the same modules, with forwards that carry sizes and merge
        for layer in self.layers:
            layer.__class__ = ToMeTransformerEncoderLayer
            layer.attn.__class__ = ProportionalMultiheadAttention
        self.prop_attn = prop_attn
        self.tome_r = tome_r

    @property
    def tome_r(self):
        return self._tome_r

    @tome_r.setter
    def tome_r(self, value):
        schedule = merge_schedule(value, self.num_layers)
        if any(schedule) and self.out_type in self.SPATIAL_OUT_TYPES:
            raise ValueError(
                f'ToMeVisionTransformer cannot merge tokens (tome_r={value!r})'
                f' with out_type={self.out_type!r}: merging loses the token '
                f'grid a dense head needs. Use out_type="cls_token" or '
                f'"avg_featmap", or tome_r=0.')
        self._tome_r, self.merge_per_layer = value, schedule

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        check_vit_input(self, x)
        batch = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        x = x + resize_pos_embed(
            self.pos_embed, self.patch_resolution, patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        x = self.pre_norm(self.drop_after_pos(x))

        size = None  # patches per token, (B, N, 1); None while unmerged
        outs = []
        for i, (layer, r) in enumerate(zip(self.layers,
                                           self.merge_per_layer)):
            x, size = layer(x, size, r, self.prop_attn,
                            class_token=self.cls_token is not None)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_merged_output(
                    x, size, patch_resolution))
        return tuple(outs)

    def _format_merged_output(self, x, size, hw):
        if size is None or self.out_type == 'cls_token':
            return self._format_output(x, hw)
        # avg_featmap: the mean over patches, each merged token weighted by
        # the patches it stands for
        tokens = x[:, self.num_extra_tokens:]
        size = size[:, self.num_extra_tokens:]
        return self.ln2((tokens * size).sum(1) / size.sum(1))
