"""Self-attention inside non-overlapping ``b x b`` patches (SASA's attention
stem, paper Sec. 3.2), as a functional op.

For each patch, head and position ``p`` in the patch, a softmax over the
patch's ``b^2`` positions ``s`` of ``q_p . k_s + q_p . r_{s-p}``, where ``r``
concatenates a row-offset and a column-offset embedding (``d/2`` each, index
``offset + b - 1``); output ``sum_s softmax_s(.) v_s``.

Batched matmuls in PyTorch (any device and dtype; tested against a
pixel-by-pixel brute force). On CPU the stem runs fused with its BatchNorm,
ReLU and pool instead (:mod:`.attention_stem`); this is its unfused path and
its reference.
"""
import torch
from torch import Tensor


def patch_attention(q: Tensor, k: Tensor, v: Tensor, rel_row: Tensor,
                    rel_col: Tensor, num_heads: int, n_h: int, n_w: int,
                    block: int) -> Tensor:
    """Self-attention inside each ``block x block`` patch.

    Args:
        q, k, v: (B, nH*nW, C, block^2): per patch (row-major), channels
            (``num_heads`` heads of d = C / num_heads, d even) and positions
            (row-major) inside the patch.
        rel_row, rel_col: (2*block - 1, d/2) offset embeddings.
        num_heads, n_h, n_w, block: heads, patches per column / row, patch
            edge.

    Returns:
        (B, C, nH*block, nW*block): the output in image layout.
    """
    bsz, n, channels, positions = q.shape
    if (n != n_h * n_w or positions != block * block
            or channels % (2 * num_heads) or k.shape != q.shape
            or v.shape != q.shape):
        raise ValueError(
            f'q, k, v must be (B, {n_h}*{n_w}, C, {block}^2) with C divisible '
            f'by 2*num_heads={2 * num_heads}, got {tuple(q.shape)}, '
            f'{tuple(k.shape)}, {tuple(v.shape)}')
    b = block

    def heads(t):  # (B, n, C, P) -> (B, n, heads, P, d)
        return t.view(bsz, n, num_heads, -1, positions).transpose(-1, -2)

    q, k, v = heads(q), heads(k), heads(v)
    d2 = q.shape[-1] // 2
    row = q[..., :d2] @ rel_row.t()  # (B, n, heads, P, 2b-1)
    col = q[..., d2:] @ rel_col.t()
    pos = torch.arange(b, device=q.device)
    rel_index = pos[None, :] - pos[:, None] + b - 1  # (query, key) offsets
    qy, qx = pos.repeat_interleave(b), pos.repeat(b)
    row = row.gather(-1, rel_index[qy].expand(row.shape[:-1] + (b, )))
    col = col.gather(-1, rel_index[qx].expand(col.shape[:-1] + (b, )))
    rel = (row[..., :, None] + col[..., None, :]).flatten(-2)
    attn = (q @ k.transpose(-1, -2) + rel).softmax(-1)
    out = (attn @ v).view(bsz, n_h, n_w, num_heads, b, b, -1)
    # (B, nH, nW, heads, b, b, d) -> (B, heads, d, nH, b, nW, b)
    return out.permute(0, 3, 6, 1, 4, 2, 5).reshape(bsz, channels, n_h * b,
                                                    n_w * b)
