"""RetinaNet head whose 3x3 convolutions are SASA layers (SASA App. A.3)."""
import torch.nn as nn
from mmdet.models.dense_heads import RetinaHead

from mmeffattn.models.attention import LocalSelfAttention2d
from mmeffattn.registry import MODELS


@MODELS.register_module()
class SASARetinaHead(RetinaHead):
    """mmdet's :class:`~mmdet.models.dense_heads.RetinaHead`, fully
    attentional.

    The stacked 3x3 convs of the classification and box branches are SASA
    layers (+ ReLU) whose value projections start from N(0, 0.01), as the
    paper. The final 3x3 prediction convs are a SASA layer followed by the
    paper's pointwise (1x1) convolution "to mix the heads"; that 1x1 conv
    keeps RetinaHead's name (``retina_cls``/``retina_reg``) and init, so the
    focal-loss prior bias still applies. Weights are shared across levels.
    """

    def __init__(self, *args, attn_cfg=None, **kwargs):
        self.attn_cfg = dict(dict(kernel_size=7, num_heads=8,
                                  value_init_std=0.01), **(attn_cfg or {}))
        super().__init__(*args, **kwargs)

    def _branch(self):
        layers, in_channels = [], self.in_channels
        for _ in range(self.stacked_convs):
            layers.append(nn.Sequential(
                LocalSelfAttention2d(in_channels, self.feat_channels,
                                     **self.attn_cfg),
                nn.ReLU(inplace=True)))
            in_channels = self.feat_channels
        layers.append(LocalSelfAttention2d(in_channels, self.feat_channels,
                                           **self.attn_cfg))
        return nn.ModuleList(layers)

    def _init_layers(self):
        self.relu = nn.Identity()  # activations live inside the branches
        self.cls_convs = self._branch()
        self.reg_convs = self._branch()
        self.retina_cls = nn.Conv2d(
            self.feat_channels, self.num_base_priors * self.cls_out_channels,
            1)
        self.retina_reg = nn.Conv2d(
            self.feat_channels,
            self.num_base_priors * self.bbox_coder.encode_size, 1)
