"""Local window multi-head self-attention on (B, C, H, W) maps (AlterNet)."""
import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmeffattn.models.utils.backbone import check_int
from mmeffattn.ops import window_attention2d
from mmeffattn.registry import MODELS


@MODELS.register_module()
class WindowSelfAttention2d(BaseModule):
    """1x1-conv q / kv projections, attention within ``w x w`` windows with
    one (2w-1)^2 relative position table shared by all heads, 1x1-conv
    output projection (Park & Kim 2022, AlterNet's ``LocalAttention``).

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        num_heads (int): heads. Defaults to 8.
        head_dim (int): channels per head (inner width = heads x head_dim).
            Defaults to 64.
        window_size (int): window edge; maps it does not divide are padded
            and the padding masked. Defaults to 7.
        init_cfg (dict, optional): initialisation config.

    Shapes:
        x: (B, in_channels, H, W) -> (B, out_channels, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int,
                 num_heads: int = 8, head_dim: int = 64,
                 window_size: int = 7, init_cfg=None):
        super().__init__(init_cfg)
        for name, value in dict(in_channels=in_channels,
                                out_channels=out_channels,
                                num_heads=num_heads, head_dim=head_dim,
                                window_size=window_size).items():
            check_int('WindowSelfAttention2d', name, value)
        inner = num_heads * head_dim
        self.num_heads, self.window_size = num_heads, window_size
        self.q = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.kv = nn.Conv2d(in_channels, 2 * inner, 1, bias=False)
        self.proj = nn.Conv2d(inner, out_channels, 1)
        self.rel_pos_bias = nn.Parameter(
            torch.zeros(2 * window_size - 1, 2 * window_size - 1))

    def init_weights(self):
        super().init_weights()
        nn.init.trunc_normal_(self.rel_pos_bias, std=0.02)

    def forward(self, x):
        k, v = self.kv(x).chunk(2, dim=1)
        out = window_attention2d(self.q(x), k, v, self.window_size,
                                 self.rel_pos_bias, self.num_heads)
        return self.proj(out)
