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
A tokens, then all B tokens; the spatial order is lost. As in the official
ToMe, the unmerged A tokens are put back in their original order only when
there is a cls token; without one they stay in order of decreasing best
similarity, which changes the A/B split of the next layer.
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
        kept_a = order[:, r:]                                # (B, Na - r, 1)
        if class_token:  # original order, so the cls token leads
            kept_a = kept_a.sort(dim=1).values
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
    """Tokens merged in each of ``num_layers`` layers (the official
    ``parse_r``).

    Args:
        r (int | tuple | list): an int, the same in every layer; a tuple
            ``(r, inflection)``, ``inflection`` a number in [-1, 1]: layer
            ``i`` merges ``int(lo + i * (2r - 2 lo) / (L - 1))`` with
            ``lo = int(r * (1 - inflection))`` (-1 decreases from 2r to 0,
            0 is constant, 1 increases from 0 to 2r); a list, one int per
            layer, padded with zeros when shorter than ``num_layers``.
        num_layers (int): L.

    Returns:
        list[int]: L non-negative ints.
    """
    def fail(why):
        raise ValueError(
            f'tome_r must be an int, a tuple (r, inflection) with inflection '
            f'in [-1, 1], or a list of at most {num_layers} ints (one per '
            f'layer, padded with zeros); got {r!r}: {why}')

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if is_int(r):
        schedule = [r] * num_layers
    elif isinstance(r, tuple):
        if len(r) != 2 or not is_int(r[0]) or isinstance(r[1], bool) \
                or not isinstance(r[1], (int, float)) \
                or not -1 <= r[1] <= 1:
            fail('a tuple is (int r, inflection in [-1, 1])')
        base, inflection = r
        low = int(base * (1.0 - inflection))
        step = (2 * base - 2 * low) / max(num_layers - 1, 1)
        schedule = [int(low + step * i) for i in range(num_layers)]
    elif isinstance(r, list):
        if len(r) > num_layers:
            fail(f'{len(r)} entries for {num_layers} layers')
        schedule = list(r) + [0] * (num_layers - len(r))
    else:
        fail(f'type {type(r).__name__}')
    if not all(is_int(v) and v >= 0 for v in schedule):
        fail(f'negative or non-integer merges per layer: {schedule}')
    return schedule
