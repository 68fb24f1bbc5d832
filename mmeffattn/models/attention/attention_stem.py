"""SASA attention stem with spatially-aware values (paper Sec. 3.2, App. A.1)."""
import torch
import torch.nn as nn
from mmengine.model import BaseModule

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
        idx = torch.arange(block)
        self.register_buffer('rel_index', (idx[None, :] - idx[:, None]) +
                             block - 1, persistent=False)

    def init_weights(self):
        super().init_weights()
        for proj in (self.query, self.key, self.value):  # see SASA layer
            proj.reset_parameters()

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, Hp, Wp) -> (B, nH*nW, block*block, C)."""
        bsz, channels, height, width = x.shape
        b = self.block
        x = x.view(bsz, channels, height // b, b, width // b, b)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(bsz, -1, b * b, channels)

    def value_weights(self) -> torch.Tensor:
        """(b^2, C_out, C_in): the value projection of each position in the
        patch, ``sum_m p(a, b, m) W_V^m``."""
        b, c = self.block, self.out_channels
        pos = (self.emb_row[:, None] + self.emb_col[None, :]).view(b * b, c)
        mix = (pos @ self.emb_mix.t()).softmax(-1)  # (b^2, m)
        w = self.value.weight.view(self.num_mixtures, c, -1)
        return torch.einsum('pm,mci->pci', mix, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bsz, _, height, width = x.shape
        b, h, c = self.block, self.num_heads, self.out_channels
        pad_h, pad_w = (-height) % b, (-width) % b
        x = nn.functional.pad(x, (0, pad_w, 0, pad_h))
        n_h, n_w = x.shape[2] // b, x.shape[3] // b
        # Projections of the (few-channel) input patches, straight into the
        # attention's (B, n, heads, b^2, d) layout: the C_out-channel maps
        # at full resolution are never formed in image layout (they were
        # most of a SASA-R50 training step), and the m mixture values are
        # one per-position projection (linear in W_V^m).
        with torch.autocast(x.device.type, enabled=False):
            # logits and mixing in fp32 (see query_key_fp32)
            xp = self._patches(x.float() if x.dtype in (
                torch.float16, torch.bfloat16) else x)  # (B, n, b^2, C_in)
            wq, wk = (p.weight.view(h, c // h, -1).to(xp.dtype)
                      for p in (self.query, self.key))
            q = torch.einsum('bnpi,hdi->bnhpd', xp, wq)
            k = torch.einsum('bnpi,hdi->bnhpd', xp, wk)
            v = torch.einsum('bnpi,phdi->bnhpd', xp, self.value_weights().to(
                xp.dtype).view(b * b, h, c // h, -1))
            out = self._attend(q, k, v, n_h, n_w)
        out = self.act(self.norm(out.reshape(bsz, c, n_h * b, n_w * b)))
        return nn.functional.max_pool2d(out, b, b)

    def _attend(self, q, k, v, n_h: int, n_w: int) -> torch.Tensor:
        """(B, n, heads, b^2, d) q, k, v -> (B, C, nH, b, nW, b) attention
        output (n = nH * nW)."""
        device = q.device
        b = self.block
        # logits q.k + q.r within each patch: (B, n, heads, b^2, b^2)
        d2 = q.shape[-1] // 2
        row = q[..., :d2] @ self.rel_row.t()  # (B,n,h,b^2,2b-1)
        col = q[..., d2:] @ self.rel_col.t()
        ri = self.rel_index  # (b, b): key pos - query pos + b - 1
        qy = torch.arange(b, device=device).repeat_interleave(b)
        qx = torch.arange(b, device=device).repeat(b)
        row = row.gather(-1, ri[qy].expand(row.shape[:-1] + (b, )))
        col = col.gather(-1, ri[qx].expand(col.shape[:-1] + (b, )))
        rel = (row[..., :, None] + col[..., None, :]).flatten(-2)
        attn = (q @ k.transpose(-1, -2) + rel).softmax(-1)
        out = attn @ v  # (B, n, heads, b^2, d)
        out = out.view(out.shape[0], n_h, n_w, out.shape[2], b, b, -1)
        # (B, nH, nW, heads, b, b, d) -> (B, heads, d, nH, b, nW, b)
        return out.permute(0, 3, 6, 1, 4, 2, 5)
