"""ToMe's bipartite soft matching and size-weighted merge against a plain-loop
brute force (fp64), with gradients."""
import math

import pytest
import torch

from mmeffattn.ops import (bipartite_soft_matching, max_merge, merge_schedule,
                           merge_wavg)


def brute_force_merge(metric, x, size, r, class_token, distill_token):
    """One batch element, written as loops: (N, c), (N, c), (N, 1) ->
    merged tokens, sizes, and for every input token the output row it
    went to."""
    n = metric.shape[0]
    unit = [metric[i] / math.sqrt(sum(float(v)**2 for v in metric[i]))
            for i in range(n)]
    set_a, set_b = list(range(0, n, 2)), list(range(1, n, 2))
    r = min(r, (n - int(class_token) - int(distill_token)) // 2)
    best = {}
    for a in set_a:
        best_score, best_b = -math.inf, None
        for b in set_b:
            if (class_token and a == 0) or (distill_token and b == 1):
                score = -math.inf
            else:
                score = float((unit[a] * unit[b]).sum())
            if best_b is None or score > best_score:
                best_score, best_b = score, b
        best[a] = (best_score, best_b)
    ranked = sorted(set_a, key=lambda a: best[a][0], reverse=True)
    merged = set(ranked[:r])
    # kept A tokens: original order with a cls token, else ranked order
    kept = [a for a in (set_a if class_token else ranked) if a not in merged]
    # output rows: protected first, then kept A, then B
    if distill_token:
        order = [kept[0], set_b[0]] + kept[1:] + set_b[1:]
    else:
        order = kept + set_b
    row = {t: i for i, t in enumerate(order)}
    for a in merged:
        row[a] = row[best[a][1]]
    out = torch.zeros(len(order), x.shape[1], dtype=x.dtype)
    out_size = torch.zeros(len(order), 1, dtype=x.dtype)
    for t in range(n):
        out[row[t]] += x[t] * size[t]
        out_size[row[t]] += size[t]
    return out / out_size, out_size, [row[t] for t in range(n)]


CASES = [  # (tokens, r, class_token, distill_token)
    (17, 3, True, False),    # odd
    (16, 5, True, False),    # even
    (17, 8, True, False),    # r at its cap: every A token but cls merges
    (16, 100, True, False),  # r above the cap
    (15, 7, False, False),   # no cls, cap
    (16, 3, False, False),   # no cls: kept A tokens stay in ranked order
    (18, 4, True, True),     # cls + distillation token
    (19, 8, True, True),     # both, at the cap
]


@pytest.mark.parametrize('n,r,cls,dist', CASES)
def test_matching_equals_brute_force(n, r, cls, dist):
    g = torch.Generator().manual_seed(n * 100 + r)
    metric = torch.randn(3, n, 5, generator=g, dtype=torch.float64)
    x = torch.randn(3, n, 4, generator=g, dtype=torch.float64)
    size = torch.randint(1, 5, (3, n, 1), generator=g).double()
    merge, unmerge = bipartite_soft_matching(metric, r, cls, dist)
    out, out_size = merge_wavg(merge, x, size)
    assert out.shape[1] == n - min(r, max_merge(n, cls, dist))
    for b in range(3):
        ref, ref_size, rows = brute_force_merge(metric[b], x[b], size[b],
                                                r, cls, dist)
        torch.testing.assert_close(out[b], ref)
        torch.testing.assert_close(out_size[b], ref_size)
        # unmerge gives every token its group's value, in the input order
        torch.testing.assert_close(unmerge(out)[b], ref[rows])
    assert torch.equal(out_size.sum(1), size.sum(1))


def test_class_token_never_merged_even_when_most_similar():
    n = 21
    metric = torch.randn(2, n, 6, dtype=torch.float64) * 0.01
    metric[:, :, 0] += 1.0  # every token points the same way as ...
    metric[:, 0] = metric[:, 0] * 0 + torch.tensor([1.0, 0, 0, 0, 0, 0])
    x = torch.randn(2, n, 3, dtype=torch.float64)
    merge, _ = bipartite_soft_matching(metric, max_merge(n), True)
    out, size = merge_wavg(merge, x)
    assert out.shape[1] == n - max_merge(n) == 11
    assert torch.equal(out[:, 0], x[:, 0])
    assert torch.equal(size[:, 0], torch.ones(2, 1, dtype=torch.float64))
    # distillation token: never a merge target
    merge, _ = bipartite_soft_matching(metric, max_merge(n, True, True),
                                       True, True)
    out, size = merge_wavg(merge, x)
    assert torch.equal(out[:, 1], x[:, 1]) and (size[:, :2] == 1).all()


def test_r_zero_is_identity():
    x = torch.randn(2, 9, 4)
    merge, unmerge = bipartite_soft_matching(x, 0)
    assert merge(x) is x and unmerge(x) is x


def test_merge_wavg_gradcheck():
    g = torch.Generator().manual_seed(0)
    metric = torch.randn(2, 13, 4, generator=g, dtype=torch.float64)
    merge, unmerge = bipartite_soft_matching(metric, 5)
    x = torch.randn(2, 13, 3, generator=g, dtype=torch.float64,
                    requires_grad=True)
    size = torch.randint(1, 4, (2, 13, 1), generator=g).double()
    assert torch.autograd.gradcheck(lambda t: merge_wavg(merge, t, size)[0],
                                    (x, ))
    assert torch.autograd.gradcheck(lambda t: unmerge(merge(t)), (x, ))


def test_merge_schedule():
    assert merge_schedule(13, 12) == [13] * 12
    decreasing = merge_schedule((8, -1), 12)
    assert decreasing == [int(16 - i * 16 / 11) for i in range(12)]
    assert decreasing[0] == 16 and decreasing[-1] == 0
    assert merge_schedule((8, 0), 12) == [8] * 12
    assert merge_schedule((8, 1), 12)[::11] == [0, 16]
    assert merge_schedule([1, 2, 3], 3) == [1, 2, 3]
    # lists are per-layer values padded with zeros, tuples (r, inflection)
    assert merge_schedule([8, 0], 12) == [8] + [0] * 11
    assert merge_schedule((8, -0.5), 12) == [int(12 - i * 8 / 11)
                                             for i in range(12)]
    for bad in ([1, 2, 3, 4], -1, (8, 2), 'x', [1.5] * 3, True, (8, -1, 0)):
        with pytest.raises((ValueError, TypeError), match='tome_r'):
            merge_schedule(bad, 3)
