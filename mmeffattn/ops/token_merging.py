"""Token merging (ToMe, Bolya et al., ICLR 2023) as stateless ops.

Bipartite soft matching splits the tokens into set A (even indices) and set B
(odd indices), gives every A token its most similar B token (cosine of the
``metric``, e.g. the keys averaged over heads), and merges the ``r`` A tokens
with the best matches into their B partners::

    merge, unmerge = bipartite_soft_matching(k_mean, r)   # no grad
    x, size = merge_wavg(merge, x, size)                  # size-weighted

Merged tokens are size-weighted averages and carry their size (the number of
patches they stand for), so proportional attention (``log(size)`` added to
the logits) and size-weighted pooling see the original image. Output order:
the protected tokens first (cls, then distillation token), then the unmerged
A tokens, then all B tokens; the spatial order is lost.
"""
import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

MergeFn = Callable[..., torch.Tensor]


def _identity(x: torch.Tensor, mode: str = 'sum') -> torch.Tensor:
    return x


def max_merge(num_tokens: int, class_token: bool = True,
              distill_token: bool = False) -> int:
    """The largest ``r`` one bipartite matching can merge: half of the
    unprotected tokens (set A must keep its protected tokens)."""
    return max((num_tokens - int(class_token) - int(distill_token)) // 2, 0)


def bipartite_soft_matching(
        metric: torch.Tensor, r: int, class_token: bool = True,
        distill_token: bool = False) -> Tuple[MergeFn, MergeFn]:
    """Match ``r`` tokens of set A onto set B.

    Args:
        metric: (B, N, C) similarity features (normalised here).
        r: tokens to remove; capped at :func:`max_merge`.
        class_token: token 0 (in A) is never merged.
        distill_token: token 1 (in B) never receives a merge.

    Returns:
        ``merge(x, mode='sum')``: (B, N, c) -> (B, N - r, c), reducing the
        merged tokens with ``scatter_reduce`` ``mode``; and
        ``unmerge(x)``: (B, N - r, c) -> (B, N, c), every token gets the
        value of the token it was merged into (original order).
    """
    num_tokens = metric.shape[1]
    r = min(int(r), max_merge(num_tokens, class_token, distill_token))
    if r <= 0:
        return _identity, _identity

    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        scores = metric[:, ::2] @ metric[:, 1::2].transpose(-1, -2)
        if class_token:
            scores[:, 0, :] = -math.inf
        if distill_token:
            scores[:, :, 0] = -math.inf
        best_score, best_b = scores.max(dim=-1)             # (B, Na)
        order = best_score.argsort(dim=-1, descending=True)[..., None]
        merged_a = order[:, :r]                              # (B, r, 1)
        # kept A tokens in their original order: protected tokens lead
        kept_a = order[:, r:].sort(dim=1).values             # (B, Na - r, 1)
        target_b = best_b[..., None].gather(1, merged_a)     # (B, r, 1)

    def merge(x: torch.Tensor, mode: str = 'sum') -> torch.Tensor:
        set_a, set_b = x[:, ::2], x[:, 1::2]
        batch, num_a, channels = set_a.shape
        kept = set_a.gather(1, kept_a.expand(batch, num_a - r, channels))
        moved = set_a.gather(1, merged_a.expand(batch, r, channels))
        set_b = set_b.scatter_reduce(
            1, target_b.expand(batch, r, channels), moved, reduce=mode)
        if distill_token:
            return torch.cat([kept[:, :1], set_b[:, :1], kept[:, 1:],
                              set_b[:, 1:]], dim=1)
        return torch.cat([kept, set_b], dim=1)

    def unmerge(x: torch.Tensor) -> torch.Tensor:
        num_kept = kept_a.shape[1]
        if distill_token:
            kept = torch.cat([x[:, :1], x[:, 2:num_kept + 1]], dim=1)
            set_b = torch.cat([x[:, 1:2], x[:, num_kept + 1:]], dim=1)
        else:
            kept, set_b = x[:, :num_kept], x[:, num_kept:]
        batch, _, channels = x.shape
        moved = set_b.gather(1, target_b.expand(batch, r, channels))
        out = x.new_empty(batch, num_tokens, channels)
        out[:, 1::2] = set_b
        out[:, ::2] = out[:, ::2].scatter(
            1, kept_a.expand(batch, num_kept, channels), kept).scatter(
                1, merged_a.expand(batch, r, channels), moved)
        return out

    return merge, unmerge


def merge_wavg(merge: MergeFn, x: torch.Tensor,
               size: Optional[torch.Tensor] = None
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average merge.

    Args:
        merge: from :func:`bipartite_soft_matching`.
        x: (B, N, C) tokens.
        size: (B, N, 1) patches per token; None means all ones.

    Returns:
        (B, N - r, C) merged tokens and their (B, N - r, 1) sizes.
    """
    if size is None:
        size = x.new_ones(x.shape[0], x.shape[1], 1)
    x = merge(x * size, mode='sum')
    size = merge(size, mode='sum')
    return x / size, size


def merge_schedule(r: Union[int, Sequence], num_layers: int) -> List[int]:
    """Tokens merged in each of ``num_layers`` layers.

    ``r`` is an int (the same in every layer), ``(r, inflection)`` with
    ``inflection`` -1 (decreasing from 2r to 0), 0 (constant) or 1
    (increasing), the paper's schedules, or an explicit per-layer list.
    """
    if isinstance(r, bool):
        raise TypeError(f'tome_r must be an int, (r, inflection) or a list of '
                        f'{num_layers} ints, got {r!r}')
    if isinstance(r, int):
        schedule = [r] * num_layers
    elif (isinstance(r, (tuple, list)) and len(r) == 2
          and num_layers != 2 and isinstance(r[1], (int, float))
          and -1 <= r[1] <= 1 and not isinstance(r[0], bool)):
        base, inflection = r
        low = base * (1.0 - inflection)
        high = 2 * base - low
        step = (high - low) / max(num_layers - 1, 1)
        schedule = [int(low + step * i) for i in range(num_layers)]
    elif isinstance(r, (tuple, list)) and len(r) == num_layers:
        schedule = list(r)
    else:
        raise ValueError(f'tome_r must be an int, (r, inflection) with '
                         f'inflection in [-1, 1], or a list of {num_layers} '
                         f'ints (one per layer), got {r!r}')
    if not all(isinstance(v, int) and v >= 0 for v in schedule):
        raise ValueError(f'tome_r gives negative or non-integer merges per '
                         f'layer: {schedule}')
    return schedule
