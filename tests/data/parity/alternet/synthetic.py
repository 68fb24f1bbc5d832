"""Deterministic, RNG-free weights for an official-layout AlterNet state
dict: the parity fixture stores only the layout (key, shape) and outputs,
and the test rebuilds the same weights here (any torch version)."""
import math

import torch


def _waves(numel: int):
    phase = torch.arange(numel, dtype=torch.float64) * 0.618
    return phase.sin(), phase.cos()


def synthetic_tensor(index: int, key: str, shape, waves=None
                     ) -> torch.Tensor:
    """fp64 values ``sin(0.618 j) cos(index) + cos(0.618 j) sin(index)``
    (= ``sin(0.618 j + index)``) scaled per kind of tensor."""
    numel = math.prod(shape)
    if key.endswith('num_batches_tracked'):
        return torch.zeros(shape, dtype=torch.long)
    sin, cos = waves or _waves(numel)
    wave = (sin[:numel] * math.cos(index) +
            cos[:numel] * math.sin(index)).view(shape)
    if key.endswith('running_var'):
        return 1 + 0.5 * wave.square()
    if key.endswith('running_mean') or key.endswith('bias'):
        return 0.1 * wave
    if len(shape) == 1:  # BN weight
        return 1 + 0.2 * wave
    if key.endswith('pos_embedding'):
        return 0.5 * wave
    return wave * (3.0 / math.prod(shape[1:]))**0.5  # unit-variance output


def synthetic_state_dict(layout):
    """``layout``: [(key, shape), ...] in the official order."""
    waves = _waves(max(math.prod(shape) for _, shape in layout))
    return {key: synthetic_tensor(i, key, tuple(shape), waves)
            for i, (key, shape) in enumerate(layout)}


def synthetic_input(shape=(1, 3, 128, 128)) -> torch.Tensor:
    """An fp64 image in [0, 1], ``0.5 + 0.5 sin(0.37 j)`` over its
    elements."""
    numel = math.prod(shape)
    return 0.5 + 0.5 * torch.sin(
        torch.arange(numel, dtype=torch.float64) * 0.37).view(shape)
