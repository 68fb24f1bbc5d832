"""Batch chunk sizes of SeT's CPU paths, in one place.

They change no value (tests run each path with chunks of one item and of
the whole batch); they trade a loop over the batch for memory traffic. Each
path runs its batch in chunks whose largest temporaries take about
``CHUNK_BYTES[name]`` bytes:

* ``'plans'`` (:func:`~.set_attention.set_attention`): the (h, N, m) plans
  of a chunk, so that Sinkhorn's passes over them stay in cache (time stays
  linear in N for large N);
* ``'kernels'`` (the PyTorch path of
  :func:`~.set_attention.set_attention_nystrom`): the (h, N, m) Gibbs
  kernels of a chunk, so that backward's temporaries stay small;
* ``'qkv'`` (:class:`~mmeffattn.models.SeTAttention` on the CPU kernel):
  the (n, N, 3C) fp32 q/k/v projection of a chunk. Projection, transport
  and output projection of a chunk run while its q/k/v is in cache, and no
  tensor of the layer's backward is B x N x 3C: at 12544 tokens (B = 8,
  C = 64) a whole projection and its gradient are 77 MiB each, above
  glibc's mmap threshold, so mapped and zeroed afresh on every step.
"""
from typing import Optional

MiB = 1 << 20
CHUNK_BYTES = {'plans': 4 * MiB, 'kernels': 2 * MiB, 'qkv': 8 * MiB}


def items_per_chunk(bytes_per_item: int, chunk_bytes: Optional[int],
                    name: str, at_least: int = 1) -> int:
    """Batch items per chunk: as many as fit ``chunk_bytes`` (default
    ``CHUNK_BYTES[name]``; 0 means one chunk of any size), at least
    ``at_least`` and 1."""
    budget = CHUNK_BYTES[name] if chunk_bytes is None else chunk_bytes
    if budget == 0:
        return 1 << 62
    return max(1, at_least, budget // max(bytes_per_item, 1))
