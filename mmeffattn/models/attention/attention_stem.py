"""SASA attention stem with spatially-aware values (paper Sec. 3.2,
App. A.1)."""
import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmeffattn.models.utils.backbone import check_int
from mmeffattn.ops import (attention_stem_bn_relu_pool,
                           attention_stem_fused_runs, patch_attention)
from mmeffattn.registry import MODELS


@MODELS.register_module()
class AttentionStem(BaseModule):
    """Self-attention inside each ``block x block`` patch, then BN, ReLU and a
    ``block x block`` max pool (stride ``block``), as the paper's stem.

    Values are spatially aware: ``v_ab = (sum_m p(a, b, m) W_V^m) x_ab`` with
    ``p(a, b, .) = softmax_m((emb_row[a] + emb_col[b]) . nu_m)`` over the
    absolute position (a, b) inside the patch; the mixture weights are shared
    across heads. Logits are ``q . k + q . r`` with relative row/col
    embeddings as in :class:`LocalSelfAttention2d`. The paper does not give the
    number of mixtures m; we use 4 (docs/sasa.md).

    On CPU with a plain ``BatchNorm2d`` and blocks 4 or 8, the attention,
    norm, ReLU and pool run fused
    (:func:`mmeffattn.ops.attention_stem_bn_relu_pool`): the same function
    and gradients without the full-resolution maps. Elsewhere
    (GPU, SyncBN, other blocks, export) the unfused modules run.

    Shapes:
        x: (B, C_in, H, W) -> (B, C_out, ceil(H/block), ceil(W/block)).
    """

    def __init__(self,
                 in_channels: int = 3,
                 out_channels: int = 64,
                 num_heads: int = 4,
                 num_mixtures: int = 4,
                 block: int = 4,
                 norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        from mmcv.cnn import build_norm_layer
        for name, value in dict(in_channels=in_channels,
                                out_channels=out_channels,
                                num_heads=num_heads,
                                num_mixtures=num_mixtures,
                                block=block).items():
            check_int('AttentionStem', name, value)
        if out_channels % (2 * num_heads):
            raise ValueError(f'out_channels={out_channels} must be divisible '
                             f'by 2 * num_heads={2 * num_heads}')
        self.out_channels, self.num_heads = out_channels, num_heads
        self.num_mixtures, self.block = num_mixtures, block
        head_dim = out_channels // num_heads
        self.query = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.key = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.value = nn.Conv2d(in_channels, out_channels * num_mixtures, 1,
                               bias=False)
        self.emb_row = nn.Parameter(torch.randn(block, out_channels) * 0.02)
        self.emb_col = nn.Parameter(torch.randn(block, out_channels) * 0.02)
        self.emb_mix = nn.Parameter(torch.randn(num_mixtures, out_channels))
        self.rel_row = nn.Parameter(
            torch.randn(2 * block - 1, head_dim // 2) * 0.02)
        self.rel_col = nn.Parameter(
            torch.randn(2 * block - 1, head_dim // 2) * 0.02)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]
        self.act = nn.ReLU(inplace=True)

    def init_weights(self):
        super().init_weights()
        for proj in (self.query, self.key, self.value):  # see SASA layer
            proj.reset_parameters()

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, Hp, Wp) -> (B, nH*nW, C, block*block)."""
        bsz, channels, height, width = x.shape
        b = self.block
        x = x.view(bsz, channels, height // b, b, width // b, b)
        return x.permute(0, 2, 4, 1, 3, 5).reshape(bsz, -1, channels, b * b)

    def value_weights(self) -> torch.Tensor:
        """(b^2, C_out, C_in): the value projection of each position in the
        patch, ``sum_m p(a, b, m) W_V^m``."""
        b, c = self.block, self.out_channels
        pos = (self.emb_row[:, None] + self.emb_col[None, :]).view(b * b, c)
        mix = (pos @ self.emb_mix.t()).softmax(-1)  # (b^2, m)
        w = self.value.weight.view(self.num_mixtures, c, -1)
        return torch.einsum('pm,mci->pci', mix, w)

    def _fused(self, x: torch.Tensor) -> bool:
        """Whether the fused CPU kernel computes this forward."""
        return type(self.norm) is nn.BatchNorm2d and \
            attention_stem_fused_runs(x, self.block)

    def _batch_norm_args(self) -> dict:
        """What ``nn.BatchNorm2d.forward`` passes to ``F.batch_norm`` (and,
        in training, the batch counter it advances)."""
        norm = self.norm
        factor = 0.0 if norm.momentum is None else norm.momentum
        if norm.training and norm.track_running_stats and \
                norm.num_batches_tracked is not None:
            norm.num_batches_tracked.add_(1)
            if norm.momentum is None:  # cumulative moving average
                factor = 1.0 / float(norm.num_batches_tracked)
        tracked = not norm.training or norm.track_running_stats
        return dict(
            running_mean=norm.running_mean if tracked else None,
            running_var=norm.running_var if tracked else None,
            weight=norm.weight, bias=norm.bias,
            training=norm.training or norm.running_mean is None,
            momentum=factor, eps=norm.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bsz, _, height, width = x.shape
        b = self.block
        pad_h, pad_w = (-height) % b, (-width) % b
        x = nn.functional.pad(x, (0, pad_w, 0, pad_h))
        n_h, n_w = x.shape[2] // b, x.shape[3] // b
        # logits and mixing in fp32 (see query_key_fp32)
        with torch.autocast(x.device.type, enabled=False):
            if x.dtype in (torch.float16, torch.bfloat16):
                x = x.float()
            w_value = self.value_weights().to(x.dtype)
            w_query = self.query.weight.flatten(1).to(x.dtype)
            w_key = self.key.weight.flatten(1).to(x.dtype)
            if self._fused(x):
                return attention_stem_bn_relu_pool(
                    x.contiguous(), w_query, w_key, w_value, self.rel_row,
                    self.rel_col, **self._batch_norm_args(),
                    num_heads=self.num_heads, block=b)
            # Projections of the (few-channel) input patches, straight into
            # the attention's (B, n, C, b^2) layout; the m mixture values are
            # one per-position projection (linear in W_V^m).
            xp = self._patches(x)  # (B, n, C_in, b^2)
            q, k = w_query @ xp, w_key @ xp
            v = torch.einsum('pci,bnip->bncp', w_value, xp)
            out = patch_attention(q, k, v, self.rel_row.to(x.dtype),
                                  self.rel_col.to(x.dtype), self.num_heads,
                                  n_h, n_w, b)
        return nn.functional.max_pool2d(self.act(self.norm(out)), b, b)
