"""RT-DETR on mmdet's DINO machinery (Lv et al., "DETRs Beat YOLOs on
Real-time Object Detection", CVPR 2024).

What is mmdet's and reused: ``DINO``'s training flow, ``CdnQueryGenerator``
(contrastive denoising queries), ``DeformableDetrTransformerDecoderLayer``
(post-norm; mmcv's ``MultiScaleDeformableAttention``), the anchor generation
of ``gen_encoder_output_proposals`` (cell centres, wh = 0.05 * 2^level,
invalid outside (0.01, 0.99): memory zeroed, anchor = inf), ``DINOHead``'s
losses (matched, denoising, encoder top-k) with the Hungarian assigner.

What RT-DETR changes, here: no transformer encoder in the detector (the
``HybridEncoder`` neck does it), no level embedding or learned content
queries -- the top-k encoder features (by max class logit) *are* the
content queries, detached, and their boxes the detached references; the
decoder's ``query_pos`` is an MLP(4 -> 2d -> d) of the reference box and it
has no extra output norm.
"""
import copy
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.detectors import DINO
from mmdet.models.detectors.deformable_detr import DeformableDETR
from mmdet.models.layers.transformer import (CdnQueryGenerator,
                                             DeformableDetrTransformerDecoder,
                                             DinoTransformerDecoder,
                                             inverse_sigmoid)
from mmdet.models.layers.transformer.utils import MLP
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from torch import Tensor

from mmeffattn.registry import MODELS

#: the official ``inverse_sigmoid`` clamp (mmdet's DINO uses 1e-3)
INVERSE_SIGMOID_EPS = 1e-5


class RTDETRTransformerDecoder(DinoTransformerDecoder):
    """DINO's decoder with RT-DETR's ``query_pos = MLP(box)`` and no final
    norm; iterative refinement with detached references is DINO's."""

    def _init_layers(self) -> None:
        DeformableDetrTransformerDecoder._init_layers(self)
        self.ref_point_head = MLP(4, 2 * self.embed_dims, self.embed_dims, 2)

    def forward(self, query: Tensor, value: Tensor, key_padding_mask: Tensor,
                self_attn_mask: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor,
                valid_ratios: Tensor, reg_branches: nn.ModuleList,
                **kwargs) -> Tuple[Tensor, Tensor]:
        """query (B, Q, d), reference_points (B, Q, 4) normalised cxcywh ->
        (hidden states (L, B, Q, d), references (L + 1, B, Q, 4))."""
        intermediate, references = [], [reference_points]
        for lid, layer in enumerate(self.layers):
            points = reference_points[:, :, None] * torch.cat(
                [valid_ratios, valid_ratios], -1)[:, None]
            query = layer(
                query,
                query_pos=self.ref_point_head(reference_points),
                value=value,
                key_padding_mask=key_padding_mask,
                self_attn_mask=self_attn_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                reference_points=points,
                **kwargs)
            refined = (reg_branches[lid](query) + inverse_sigmoid(
                reference_points, eps=INVERSE_SIGMOID_EPS)).sigmoid()
            reference_points = refined.detach()
            intermediate.append(query)
            references.append(refined)
        return torch.stack(intermediate), torch.stack(references)


class RTDETRCdnQueryGenerator(CdnQueryGenerator):
    """mmdet's ``CdnQueryGenerator`` whose noisy boxes are unsigmoided with
    RT-DETR's eps (``INVERSE_SIGMOID_EPS``, 1e-5; mmdet's is 1e-3).

    The noise is DINO's, drawn in mmdet's order: each corner of a
    normalised xyxy box moves by ``u * s * (w, h) / 2`` with a random sign,
    ``u`` in [0, 1) for the positive and [1, 2) for the negative copy of
    every group, ``s = box_noise_scale``; the box is clipped to [0, 1].
    """

    def generate_dn_bbox_query(self, gt_bboxes: Tensor,
                               num_groups: int) -> Tensor:
        """(N, 4) normalised xyxy targets -> (2 * num_groups * N, 4)
        unsigmoided noisy cxcywh boxes; per group N positives, then N
        negatives."""
        num = len(gt_bboxes)
        boxes = gt_bboxes.repeat(2 * num_groups, 1)
        sign = torch.randint_like(boxes, low=0, high=2,
                                  dtype=torch.float32) * 2.0 - 1.0
        part = torch.rand_like(boxes)
        if num:
            rows = torch.arange(len(boxes), device=boxes.device)
            part[(rows // num) % 2 == 1] += 1.0
        part = part * sign
        whwh = bbox_xyxy_to_cxcywh(boxes)[:, 2:].repeat(1, 2)
        noisy = (boxes + part * whwh * self.box_noise_scale / 2).clamp(0, 1)
        return inverse_sigmoid(bbox_xyxy_to_cxcywh(noisy),
                               eps=INVERSE_SIGMOID_EPS)

    def collate_dn_queries(self, input_label_query: Tensor,
                           input_bbox_query: Tensor, batch_idx: Tensor,
                           batch_size: int, num_groups: int
                           ) -> Tuple[Tensor, Tensor]:
        """mmdet's layout, in the queries' dtype (mmdet 3.3 collates into
        the default dtype, which fails for fp64 models): (T, d) label and
        (T, 4) box queries, T = 2 * num_groups * targets, -> (B, 2 *
        num_groups * max_targets, d) and (B, ..., 4), zero-padded."""
        counts = torch.bincount(batch_idx, minlength=batch_size)
        max_num = int(counts.max()) if len(batch_idx) else 0
        slots = torch.cat([torch.arange(int(n), device=batch_idx.device)
                           for n in counts])
        slots = torch.cat([slots + max_num * i
                           for i in range(2 * num_groups)]).long()
        index = (batch_idx.repeat(2 * num_groups), slots)
        num_dn = max_num * 2 * num_groups
        labels = input_label_query.new_zeros(batch_size, num_dn,
                                             input_label_query.shape[-1])
        boxes = input_label_query.new_zeros(batch_size, num_dn, 4)
        labels[index] = input_label_query
        boxes[index] = input_bbox_query.to(boxes.dtype)
        return labels, boxes


def select_topk_queries(scores: Tensor, memory: Tensor, coords_unact: Tensor,
                        k: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """RT-DETR's query selection: the ``k`` positions with the highest
    max-class logit.

    Args:
        scores (Tensor): (B, N, num_classes) encoder class logits.
        memory (Tensor): (B, N, d) encoder features (after enc_output).
        coords_unact (Tensor): (B, N, 4) unsigmoided encoder boxes.
        k (int): queries to keep.

    Returns:
        tuple: content queries (B, k, d), detached; reference boxes
        (B, k, 4), unsigmoided and detached; the gathered class logits
        (B, k, C) and sigmoid boxes (B, k, 4), with gradients, for the
        encoder's loss.
    """
    if k > scores.shape[1]:
        raise ValueError(f'num_queries={k} exceeds the {scores.shape[1]} '
                         'encoder positions; use a larger input or fewer '
                         'queries')
    index = scores.max(-1)[0].topk(k, dim=1)[1]

    def gather(t):
        return t.gather(1, index[..., None].expand(-1, -1, t.shape[-1]))

    coords = gather(coords_unact)
    return (gather(memory).detach(), coords.detach(), gather(scores),
            coords.sigmoid())


@MODELS.register_module()
class RTDETR(DINO):
    """RT-DETR: backbone -> ``HybridEncoder`` (+ per-level input projection)
    -> IoU-aware top-k query selection -> deformable decoder with denoising.

    Args are :class:`mmdet.models.DINO`'s, without ``encoder`` and
    ``positional_encoding`` (the neck encodes).
    """

    def __init__(self, *args, num_feature_levels: int = 3, **kwargs) -> None:
        for key in ('encoder', 'positional_encoding'):
            if kwargs.get(key) is not None:
                raise ValueError(f'RTDETR takes no `{key}`: the HybridEncoder '
                                 'neck is its encoder')
        # DeformableDETR and DINO write into these dicts: building twice from
        # one config (tools/train.py checks the config first) must work
        for key in ('bbox_head', 'dn_cfg', 'decoder'):
            if kwargs.get(key) is not None:
                kwargs[key] = copy.deepcopy(kwargs[key])
        kwargs.setdefault('with_box_refine', True)
        kwargs.setdefault('as_two_stage', True)
        super().__init__(*args, num_feature_levels=num_feature_levels,
                         **kwargs)
        # DINO has completed dn_cfg (classes, widths, queries) in place
        self.dn_query_generator = RTDETRCdnQueryGenerator(**kwargs['dn_cfg'])

    def _init_layers(self) -> None:
        self.decoder = RTDETRTransformerDecoder(**self.decoder)
        self.embed_dims = self.decoder.embed_dims
        self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
        self.memory_trans_norm = nn.LayerNorm(self.embed_dims)

    def init_weights(self) -> None:
        super(DeformableDETR, self).init_weights()
        for p in self.decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        nn.init.xavier_uniform_(self.memory_trans_fc.weight)

    def pre_transformer(self, mlvl_feats, batch_data_samples=None):
        """Flatten the levels; padding masks and valid ratios as mmdet's
        DeformableDETR (no position or level embeddings)."""
        bs = mlvl_feats[0].shape[0]
        masks = None
        if batch_data_samples is not None:
            input_h, input_w = batch_data_samples[0].batch_input_shape
            shapes = [s.img_shape for s in batch_data_samples]
            if any(tuple(s) != (input_h, input_w) for s in shapes):
                masks = mlvl_feats[0].new_ones((bs, input_h, input_w))
                for i, (h, w) in enumerate(shapes):
                    masks[i, :h, :w] = 0
        feat_flatten, mask_flatten, spatial_shapes = [], [], []
        for feat in mlvl_feats:
            h, w = feat.shape[-2:]
            spatial_shapes.append((h, w))
            feat_flatten.append(feat.flatten(2).transpose(1, 2))
            if masks is not None:
                mask = F.interpolate(masks[None], size=(h, w)).to(
                    torch.bool)[0]
                mask_flatten.append(mask.flatten(1))
        feat_flatten = torch.cat(feat_flatten, 1)
        spatial_shapes = torch.as_tensor(spatial_shapes, dtype=torch.long,
                                         device=feat_flatten.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros(
            (1, )), spatial_shapes.prod(1).cumsum(0)[:-1]))
        if masks is not None:
            mask_flatten = torch.cat(mask_flatten, 1)
            shapes = spatial_shapes.tolist()
            valid_ratios = torch.stack([
                self.get_valid_ratio(m.view(bs, h, w)) for m, (h, w) in zip(
                    mask_flatten.split([h * w for h, w in shapes], 1),
                    shapes)], 1)
        else:
            mask_flatten = None
            valid_ratios = feat_flatten.new_ones(bs, len(mlvl_feats), 2)
        common = dict(spatial_shapes=spatial_shapes,
                      level_start_index=level_start_index,
                      valid_ratios=valid_ratios)
        encoder_inputs = dict(feat=feat_flatten, feat_mask=mask_flatten,
                              **common)
        decoder_inputs = dict(memory_mask=mask_flatten, **common)
        return encoder_inputs, decoder_inputs

    def forward_encoder(self, feat: Tensor, feat_mask: Optional[Tensor],
                        spatial_shapes: Tensor, **kwargs) -> Dict:
        """The neck has encoded: the memory is the flattened levels."""
        return dict(memory=feat, memory_mask=feat_mask,
                    spatial_shapes=spatial_shapes)

    def pre_decoder(self, memory: Tensor, memory_mask: Optional[Tensor],
                    spatial_shapes: Tensor, batch_data_samples=None
                    ) -> Tuple[Dict, Dict]:
        """Anchors and enc_output (mmdet's), class and box heads on every
        position, top-``num_queries`` selection, denoising queries."""
        layer = self.decoder.num_layers
        output_memory, output_proposals = self.gen_encoder_output_proposals(
            memory, memory_mask, spatial_shapes)
        enc_class = self.bbox_head.cls_branches[layer](output_memory)
        enc_coord_unact = self.bbox_head.reg_branches[layer](
            output_memory) + output_proposals
        query, reference, topk_score, topk_coords = select_topk_queries(
            enc_class, output_memory, enc_coord_unact, self.num_queries)
        dn_mask = dn_meta = None
        if self.training:
            dn_label_query, dn_bbox_query, dn_mask, dn_meta = \
                self.dn_query_generator(batch_data_samples)
            query = torch.cat([dn_label_query, query], dim=1)
            reference = torch.cat([dn_bbox_query, reference], dim=1)
        decoder_inputs = dict(query=query, memory=memory,
                              reference_points=reference.sigmoid(),
                              dn_mask=dn_mask)
        head_inputs = dict(enc_outputs_class=topk_score,
                           enc_outputs_coord=topk_coords,
                           dn_meta=dn_meta) if self.training else dict()
        return decoder_inputs, head_inputs


__all__ = ['RTDETR', 'RTDETRTransformerDecoder', 'RTDETRCdnQueryGenerator',
           'select_topk_queries']
