"""RT-DETR's efficient hybrid encoder (Lv et al., "DETRs Beat YOLOs on
Real-time Object Detection", CVPR 2024): attention within S5 only (AIFI),
then CNN cross-scale fusion (CCFM) with CSP blocks of re-parameterisable
RepVGG blocks."""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer
from mmengine.model import BaseModule

from mmeffattn.registry import MODELS


def sincos_position_embedding_2d(height: int, width: int, dims: int,
                                 temperature: float = 10000.,
                                 device=None) -> torch.Tensor:
    """(1, H * W, dims) fixed 2-D embedding: [sin, cos] of the first grid
    coordinate, then [sin, cos] of the second, ``dims / 4`` frequencies each.

    As in the official code, the grid is ``meshgrid(arange(W), arange(H),
    indexing='ij')`` flattened, so on a square map the "w" quarter encodes
    the row of a (row-major) token and the "h" quarter its column; on other
    maps the order follows the official code exactly.
    """
    if dims % 4:
        raise ValueError(f'embed dims {dims} must be divisible by 4 for the '
                         '2-D sin-cos position embedding')
    grid_w, grid_h = torch.meshgrid(
        torch.arange(width, dtype=torch.float32, device=device),
        torch.arange(height, dtype=torch.float32, device=device),
        indexing='ij')
    quarter = dims // 4
    omega = 1. / temperature**(torch.arange(
        quarter, dtype=torch.float32, device=device) / quarter)
    out_w = grid_w.flatten()[:, None] * omega[None]
    out_h = grid_h.flatten()[:, None] * omega[None]
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()],
                     dim=1)[None]


class RepVggBlock(BaseModule):
    """(3x3 conv-BN + 1x1 conv-BN) -> act; :meth:`switch_to_deploy` fuses the
    two branches into one 3x3 conv with bias (RT-DETR's block: no identity
    branch)."""

    def __init__(self, channels: int, act_cfg=dict(type='SiLU'),
                 norm_cfg=dict(type='BN'), init_cfg=None):
        super().__init__(init_cfg)
        self.channels = channels
        self.conv3x3 = ConvModule(channels, channels, 3, padding=1,
                                  norm_cfg=norm_cfg, act_cfg=None)
        self.conv1x1 = ConvModule(channels, channels, 1, norm_cfg=norm_cfg,
                                  act_cfg=None)
        self.act = build_activation_layer(act_cfg)
        self.fused = None

    def forward(self, x):
        if self.fused is not None:
            return self.act(self.fused(x))
        return self.act(self.conv3x3(x) + self.conv1x1(x))

    @staticmethod
    def _fold(branch: ConvModule) -> Tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of conv followed by BN (eval statistics)."""
        bn = branch.bn
        std = (bn.running_var + bn.eps).sqrt()
        scale = bn.weight / std
        kernel = branch.conv.weight * scale[:, None, None, None]
        return kernel, bn.bias - bn.running_mean * scale

    @torch.no_grad()
    def switch_to_deploy(self):
        if self.fused is not None:
            return
        k3, b3 = self._fold(self.conv3x3)
        k1, b1 = self._fold(self.conv1x1)
        fused = nn.Conv2d(self.channels, self.channels, 3, padding=1).to(
            k3.dtype)
        fused.weight.copy_(k3 + F.pad(k1, (1, 1, 1, 1)))
        fused.bias.copy_(b3 + b1)
        self.fused = fused.to(device=k3.device, dtype=k3.dtype)
        del self.conv3x3, self.conv1x1


class CSPRepLayer(BaseModule):
    """``conv3(RepVgg^N(conv1(x)) + conv2(x))``; conv1, conv2: 1x1 conv-BN-act
    to ``out * expansion``; conv3: 1x1 back to ``out`` (identity when the
    widths agree)."""

    def __init__(self, in_channels: int, out_channels: int,
                 num_blocks: int = 3, expansion: float = 1.0,
                 act_cfg=dict(type='SiLU'), norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        hidden = int(out_channels * expansion)
        conv = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv1 = ConvModule(in_channels, hidden, 1, **conv)
        self.conv2 = ConvModule(in_channels, hidden, 1, **conv)
        self.blocks = nn.Sequential(*[
            RepVggBlock(hidden, act_cfg, norm_cfg) for _ in range(num_blocks)])
        self.conv3 = ConvModule(hidden, out_channels, 1, **conv) \
            if hidden != out_channels else nn.Identity()

    def forward(self, x):
        return self.conv3(self.blocks(self.conv1(x)) + self.conv2(x))


@MODELS.register_module()
class HybridEncoder(BaseModule):
    """RT-DETR's efficient hybrid encoder (a neck).

    Per level a 1x1 conv + BN projects to ``hidden_dim``; AIFI, one post-norm
    transformer encoder layer with the 2-D sin-cos position embedding on q
    and k, runs on the levels in ``encoder_levels`` (S5 only by default);
    CCFM fuses top-down (1x1 lateral conv, nearest upsampling, concat,
    CSPRepLayer) then bottom-up (3x3/2 conv, concat, CSPRepLayer).

    Args:
        in_channels (Sequence[int]): channels of S3, S4, S5.
        hidden_dim (int): width of every output. Defaults to 256.
        encoder_levels (Sequence[int]): levels with AIFI. Defaults to (2, ).
        num_heads (int): AIFI heads. Defaults to 8.
        ffn_dim (int): AIFI FFN width. Defaults to 1024.
        dropout (float): AIFI dropout. Defaults to 0.
        pe_temperature (float): position-embedding temperature (1e4).
        expansion (float): CSPRepLayer hidden ratio (R18: 0.5). Defaults 1.
        depth_mult (float): RepVGG blocks per CSPRepLayer =
            ``round(3 * depth_mult)``. Defaults to 1.
        act_cfg (dict): CCFM activation. Defaults to SiLU.

    Shapes:
        inputs: tuple of (B, in_channels[i], H_i, W_i), strides 8, 16, 32
        -> tuple of 3 (B, hidden_dim, H_i, W_i).
    """

    def __init__(self,
                 in_channels: Sequence[int] = (512, 1024, 2048),
                 hidden_dim: int = 256,
                 encoder_levels: Sequence[int] = (2, ),
                 num_heads: int = 8,
                 ffn_dim: int = 1024,
                 dropout: float = 0.,
                 pe_temperature: float = 10000.,
                 expansion: float = 1.0,
                 depth_mult: float = 1.0,
                 act_cfg=dict(type='SiLU'),
                 norm_cfg=dict(type='BN', requires_grad=True),
                 init_cfg=None):
        super().__init__(init_cfg)
        from mmdet.models.layers.transformer import DetrTransformerEncoderLayer
        self.in_channels, self.hidden_dim = list(in_channels), hidden_dim
        self.encoder_levels = list(encoder_levels)
        if any(i not in range(len(in_channels)) for i in encoder_levels):
            raise ValueError(f'encoder_levels {list(encoder_levels)} out of '
                             f'range for {len(in_channels)} input levels')
        self.pe_temperature = pe_temperature
        self.input_proj = nn.ModuleList(
            ConvModule(c, hidden_dim, 1, norm_cfg=norm_cfg, act_cfg=None)
            for c in in_channels)
        self.encoder = nn.ModuleList(
            DetrTransformerEncoderLayer(
                self_attn_cfg=dict(embed_dims=hidden_dim, num_heads=num_heads,
                                   dropout=dropout, batch_first=True),
                ffn_cfg=dict(embed_dims=hidden_dim,
                             feedforward_channels=ffn_dim, ffn_drop=dropout,
                             act_cfg=dict(type='GELU')))
            for _ in encoder_levels)
        num_blocks = round(3 * depth_mult)
        conv = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        levels = len(in_channels)
        self.lateral_convs = nn.ModuleList(
            ConvModule(hidden_dim, hidden_dim, 1, **conv)
            for _ in range(levels - 1))
        self.fpn_blocks = nn.ModuleList(
            CSPRepLayer(2 * hidden_dim, hidden_dim, num_blocks, expansion,
                        act_cfg, norm_cfg) for _ in range(levels - 1))
        self.downsample_convs = nn.ModuleList(
            ConvModule(hidden_dim, hidden_dim, 3, 2, 1, **conv)
            for _ in range(levels - 1))
        self.pan_blocks = nn.ModuleList(
            CSPRepLayer(2 * hidden_dim, hidden_dim, num_blocks, expansion,
                        act_cfg, norm_cfg) for _ in range(levels - 1))

    def aifi(self, x: torch.Tensor, layer) -> torch.Tensor:
        """One post-norm encoder layer over the (B, C, H, W) map's tokens."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        pos = sincos_position_embedding_2d(h, w, c, self.pe_temperature,
                                           x.device).to(x.dtype)
        tokens = layer(tokens, query_pos=pos, key_padding_mask=None)
        return tokens.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'HybridEncoder expects {len(self.in_channels)} '
                             f'levels, got {len(inputs)}')
        feats = [proj(x) for proj, x in zip(self.input_proj, inputs)]
        for layer, level in zip(self.encoder, self.encoder_levels):
            feats[level] = self.aifi(feats[level], layer)
        levels = len(feats)
        # top-down: the lateral conv's output replaces the higher level
        inner = [feats[-1]]
        for idx in range(levels - 1, 0, -1):
            high = self.lateral_convs[levels - 1 - idx](inner[0])
            inner[0] = high
            low = feats[idx - 1]
            up = F.interpolate(high, size=low.shape[-2:], mode='nearest')
            inner.insert(0, self.fpn_blocks[levels - 1 - idx](
                torch.cat([up, low], dim=1)))
        # bottom-up
        outs = [inner[0]]
        for idx in range(levels - 1):
            down = self.downsample_convs[idx](outs[-1])
            outs.append(self.pan_blocks[idx](
                torch.cat([down, inner[idx + 1]], dim=1)))
        return tuple(outs)

    def switch_to_deploy(self) -> None:
        """Fuse every RepVggBlock into one 3x3 conv (eval BN statistics)."""
        for m in self.modules():
            if isinstance(m, RepVggBlock):
                m.switch_to_deploy()
