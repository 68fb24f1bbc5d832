"""SeT attention module (Self-optimal Transport, SeTformer, AAAI 2024)."""
import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmeffattn.models.utils.backbone import (check_divisible, check_int,
                                             check_number, check_square)
from mmeffattn.ops import (grid_positions, is_exporting, items_per_chunk,
                           nystrom_basis, nystrom_features,
                           nystrom_kernel_runs, set_attention,
                           set_attention_nystrom, squared_distances)
from mmeffattn.registry import MODELS

FEATURE_MAPS = ('nystrom', 'linear')


@MODELS.register_module()
class SeTAttention(BaseModule):
    """Multi-head SeT attention on a token grid (docs/setformer.md).

    Queries and keys are mapped to a kernel feature space (Nystrom Gaussian
    map on the sphere with learned anchors, or ``'linear'``: the unit
    direction), transported by Sinkhorn (``sinkhorn``: stabilised scaling
    domain by default, log domain as the reference) onto ``num_refs`` learned
    references per head, with the positional penalty
    ``-|p_i - p_j|^2 / (2 sigma_h^2)`` between token and reference grid
    positions (``sigma_h`` learned), then gathered / scattered. Never forms
    an N x N matrix.

    Args:
        embed_dims (int): C.
        num_heads (int): h; C must be divisible by h.
        num_refs (int): references m per head, a perfect square (their
            positions form a sqrt(m) x sqrt(m) grid). Defaults to 49.
        num_iters (int): Sinkhorn iterations L. Defaults to 3.
        ot_eps (float): entropic regularisation. Defaults to 0.5.
        feature_map (str): ``'nystrom'`` or ``'linear'``.
        num_anchors (int, optional): Nystrom anchors a; default head dim.
        kernel_sigma (float): Gaussian bandwidth on the sphere (OTK: 0.5).
        pos_penalty (bool): use the positional term. Defaults to True.
        sinkhorn (str): ``'scaling'`` (fast) or ``'log'`` (log domain).
        qkv_bias (bool), attn_drop, proj_drop: as mmpretrain attention.
        qkv_chunk_bytes (int, optional): the fused CPU path's batch chunk,
            in bytes of q/k/v projection (:meth:`batch_chunk`); 0: one
            chunk. Defaults to None: ``mmeffattn.ops.CHUNK_BYTES['qkv']``.

    Shapes:
        x: (B, N, C) with ``hw_shape = (H, W)``, N = H*W -> (B, N, C).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 num_refs: int = 49,
                 num_iters: int = 3,
                 ot_eps: float = 0.5,
                 feature_map: str = 'nystrom',
                 num_anchors: Optional[int] = None,
                 kernel_sigma: float = 0.5,
                 pos_penalty: bool = True,
                 sinkhorn: str = 'scaling',
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 qkv_chunk_bytes: Optional[int] = None,
                 init_cfg=None):
        super().__init__(init_cfg)
        owner = 'SeTAttention'
        check_int(owner, 'embed_dims', embed_dims)
        check_int(owner, 'num_heads', num_heads)
        check_divisible(owner, 'embed_dims', embed_dims, 'num_heads',
                        num_heads)
        side = math.isqrt(check_square(owner, 'num_refs', num_refs))
        check_int(owner, 'num_iters', num_iters)
        check_number(owner, 'ot_eps', ot_eps, 0, low_open=True)
        check_number(owner, 'kernel_sigma', kernel_sigma, 0, low_open=True)
        if num_anchors is not None:
            check_int(owner, 'num_anchors', num_anchors)
        if qkv_chunk_bytes is not None:
            check_int(owner, 'qkv_chunk_bytes', qkv_chunk_bytes, 0)
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f'feature_map must be one of {FEATURE_MAPS}, '
                             f'got {feature_map!r}')
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.head_dims = embed_dims // num_heads
        self.num_refs, self.num_iters = num_refs, num_iters
        self.ot_eps = ot_eps
        self.feature_map, self.kernel_sigma = feature_map, kernel_sigma
        self.pos_penalty, self.sinkhorn = pos_penalty, sinkhorn
        self.qkv_chunk_bytes = qkv_chunk_bytes
        feat_dim = self.head_dims
        if feature_map == 'nystrom':
            feat_dim = num_anchors or self.head_dims
            self.anchors = nn.Parameter(
                torch.randn(num_heads, feat_dim, self.head_dims))
            self.register_buffer('nystrom_z', None, persistent=False)
            self.register_buffer('nystrom_k_inv_sqrt', None,
                                 persistent=False)
            self._nystrom_key = None
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        self.refs = nn.Parameter(
            torch.randn(num_heads, num_refs, feat_dim) / math.sqrt(feat_dim))
        if pos_penalty:
            # log sigma_h, initialised to one reference-grid cell
            self.pos_log_sigma = nn.Parameter(
                torch.full((num_heads, ), math.log(1.0 / side)))
            self.register_buffer('ref_pos', grid_positions(side, side),
                                 persistent=False)
            self._dist2_cache = {}
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def nystrom_basis(self):
        """Unit anchors and ``K_ZZ^(-1/2)`` of the Nystrom map.

        Training: computed in each forward (differentiable, shared by q and
        k). Eval: computed once when the anchors change (their version
        counter moves on any in-place update, e.g. ``load_state_dict``) and
        kept as non-persistent buffers, so that eval and export run no
        eigendecomposition.
        """
        if self.training:
            return nystrom_basis(self.anchors, self.kernel_sigma)
        if self.nystrom_z is not None and (torch.compiler.is_compiling()
                                           or is_exporting()):
            return self.nystrom_z, self.nystrom_k_inv_sqrt  # set by eval()
        key = (self.anchors._version, self.anchors.data_ptr(),
               self.anchors.dtype, self.anchors.device)
        if self.nystrom_z is None or self._nystrom_key != key:
            with torch.no_grad():
                z, k_inv_sqrt = nystrom_basis(self.anchors, self.kernel_sigma)
            self.nystrom_z, self.nystrom_k_inv_sqrt = z, k_inv_sqrt
            self._nystrom_key = key
        return self.nystrom_z, self.nystrom_k_inv_sqrt

    def train(self, mode: bool = True):
        super().train(mode)
        if not mode and self.feature_map == 'nystrom':
            self.nystrom_basis()  # cache now, outside any trace
        return self

    def grid_distances(self, height: int, width: int, device,
                       dtype) -> torch.Tensor:
        """(H*W, m) squared distances of token to reference positions,
        computed once per grid shape (they hold no parameter)."""
        key = (height, width, device, dtype)
        dist2 = self._dist2_cache.get(key)
        if dist2 is None:
            # reference cells built in the input's dtype (a cast of an
            # fp32 grid would be off by ~1e-8 in an fp64 model)
            side = math.isqrt(self.ref_pos.shape[0])
            dist2 = squared_distances(
                grid_positions(height, width, device, dtype),
                grid_positions(side, side, device, dtype))
            if not (torch.compiler.is_compiling() or is_exporting()):
                self._dist2_cache = {key: dist2}  # the newest shape only
        return dist2

    def features(self, x: torch.Tensor, basis=None) -> torch.Tensor:
        """(B, h, N, d) -> (B, h, N, a) kernel features."""
        if self.feature_map == 'nystrom':
            return nystrom_features(x, self.anchors, self.kernel_sigma,
                                    basis=basis or self.nystrom_basis())
        return F.normalize(
            x.to(torch.promote_types(x.dtype, torch.float32)), dim=-1)

    def _positional_factors(self, x, hw_shape):
        """The positional log penalty as ``(1, N, m)`` squared distances and
        the (h,) per-head factor ``-1 / (2 sigma_h^2)``, or (None, None);
        checks the shape."""
        height, width = hw_shape
        if height * width != x.shape[1]:
            raise ValueError(f'hw_shape {tuple(hw_shape)} does not match '
                             f'{x.shape[1]} tokens')
        if not self.pos_penalty:
            return None, None
        work = torch.promote_types(x.dtype, torch.float32)
        dist2 = self.grid_distances(height, width, x.device, work)
        sigma = self.pos_log_sigma.to(work).exp()
        return dist2[None], -0.5 / sigma**2

    def _positional_term(self, x, hw_shape):
        """The (h, N, m) positional log penalty, or None; checks the shape."""
        dist2, factor = self._positional_factors(x, hw_shape)
        return None if dist2 is None else factor[:, None, None] * dist2

    def _projections(self, x, hw_shape):
        """q, k, v (B, h, N, d) and the (h, N, m) positional log penalty."""
        pos_log = self._positional_term(x, hw_shape)
        bsz, num_tokens, _ = x.shape
        q, k, v = self.qkv(x).view(bsz, num_tokens, 3, self.num_heads,
                                   self.head_dims).permute(2, 0, 3, 1, 4)
        return q, k, v, pos_log

    def _transport_inputs(self, x, hw_shape):
        q, k, v, pos_log = self._projections(x, hw_shape)
        basis = self.nystrom_basis() if self.feature_map == 'nystrom' \
            else None
        return (self.features(q, basis), self.features(k, basis), v,
                pos_log)

    @torch.no_grad()
    def transport_plans(self, x: torch.Tensor, hw_shape: Sequence[int],
                        mask: Optional[torch.Tensor] = None):
        """The plans the forward uses: (T^q, T^k), each (B, heads, N, m).

        ``N * T^q[i]`` is query i's mixture over the references (sums to
        1); ``T^k[:, j]`` is reference j's mass over the tokens (sums to
        1/m).
        """
        psi_q, psi_k, v, pos_log = self._transport_inputs(x, hw_shape)
        _, plans = set_attention(psi_q, psi_k, v, self.refs, self.ot_eps,
                                 self.num_iters, pos_log, mask,
                                 return_plans=True, sinkhorn=self.sinkhorn)
        return plans

    def batch_chunk(self, x: torch.Tensor) -> int:
        """Batch items per chunk of the fused CPU path (projection,
        transport and output projection of a chunk run together): those
        whose (n, N, 3C) fp32 q/k/v projection fits ``qkv_chunk_bytes``
        (:mod:`mmeffattn.ops.set.chunking` says why), and at least enough
        (batch, head) groups for every thread. Elsewhere (GPU, tracing) the
        whole batch is one chunk."""
        bsz, num_tokens, channels = x.shape
        if self.qkv_chunk_bytes == 0 or not nystrom_kernel_runs(x):
            return bsz
        groups = -(-torch.get_num_threads() // self.num_heads)
        return items_per_chunk(num_tokens * 3 * channels * 4,
                               self.qkv_chunk_bytes, 'qkv', at_least=groups)

    def _fused(self, x, z, weight, pos_log, pos_scale, mask):
        """(n, N, C) -> (n, N, C) through the fused SeT kernel."""
        bsz, num_tokens, channels = x.shape
        qkv = self.qkv(x).view(bsz, num_tokens, 3, self.num_heads,
                               self.head_dims)
        out = set_attention_nystrom(qkv, z, weight, self.kernel_sigma,
                                    self.num_iters, pos_log, mask,
                                    pos_scale=pos_scale)
        return self.proj_drop(self.proj(out.reshape(bsz, num_tokens,
                                                    channels)))

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int],
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        bsz, num_tokens, channels = x.shape
        fused = self.feature_map == 'nystrom' and self.sinkhorn == 'scaling'
        if fused and not (self.training and self.attn_drop.p > 0):
            # features, log kernels and transport in one function, on the
            # qkv projection as laid out (no permuted copies)
            pos_log, pos_scale = self._positional_factors(x, hw_shape)
            z, k_inv_sqrt = self.nystrom_basis()
            weight = k_inv_sqrt @ (self.refs.to(z.dtype).transpose(-1, -2)
                                   / self.ot_eps)
            step = self.batch_chunk(x)
            if step >= bsz:
                return self._fused(x, z, weight, pos_log, pos_scale, mask)
            masks = [None] * -(-bsz // step) if mask is None else \
                mask.split(step)
            return torch.cat([
                self._fused(part, z, weight, pos_log, pos_scale, part_mask)
                for part, part_mask in zip(x.split(step), masks)
            ])
        psi_q, psi_k, v, pos_log = self._transport_inputs(x, hw_shape)
        out = set_attention(psi_q, psi_k, self.attn_drop(v), self.refs,
                            self.ot_eps, self.num_iters, pos_log, mask,
                            sinkhorn=self.sinkhorn)
        out = out.transpose(1, 2).reshape(bsz, num_tokens, channels)
        return self.proj_drop(self.proj(out))
