"""mmpretrain's multi-head attention, with ToMe's proportional attention and
the keys exposed as the merging metric."""
from typing import Optional, Tuple

import torch
from mmpretrain.models.utils import MultiheadAttention

from mmeffattn.registry import MODELS


@MODELS.register_module()
class ProportionalMultiheadAttention(MultiheadAttention):
    """:class:`mmpretrain.models.utils.MultiheadAttention` for merged tokens.

    Same parameters and state_dict keys as the parent (it adds none). With
    ``size`` given, each key's logit gets ``log(size)`` (a token standing for
    s patches counts s times: proportional attention); with ``size=None`` it
    computes exactly what the parent computes.

    Shapes:
        x: (B, N, C), size: (B, N, 1) or None
        -> (B, N, C) output and (B, N, C / heads) keys averaged over heads.
    """

    def forward(self, x: torch.Tensor, size: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        batch, num_tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, num_tokens, 3, self.num_heads,
                                  self.head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]

        attn_drop = self.attn_drop if self.training else 0.
        if size is None:
            out = self.scaled_dot_product_attention(q, k, v,
                                                    dropout_p=attn_drop)
        else:  # (B, 1, 1, N) float bias over the keys
            bias = size.log().to(q.dtype).transpose(1, 2)[:, None]
            out = self.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=attn_drop)
        out = out.transpose(1, 2).reshape(batch, num_tokens, self.embed_dims)
        out = self.out_drop(self.gamma1(self.proj_drop(self.proj(out))))
        if self.v_shortcut:
            out = v.squeeze(1) + out
        return out, k.mean(dim=1)
