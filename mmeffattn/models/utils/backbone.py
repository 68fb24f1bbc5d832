"""What our backbones share: strict Pretrained init, frozen stages, norm_eval,
and the checks of their constructor arguments and inputs."""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from .norm import eval_norms
from .pretrained import StrictPretrainedMixin


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(owner: str, name: str, value, minimum: int = 1,
              maximum: Optional[int] = None, odd: bool = False) -> int:
    """``value`` if it is an int in ``[minimum, maximum]`` (and odd, with
    ``odd``); otherwise one ValueError naming ``owner``'s argument, the
    value and the allowed range."""
    ok = _is_int(value) and value >= minimum and (
        maximum is None or value <= maximum) and (not odd or value % 2 == 1)
    if not ok:
        kind = 'an odd int' if odd else 'an int'
        bound = f'>= {minimum}' if maximum is None else \
            f'in [{minimum}, {maximum}]'
        raise ValueError(f'{owner}: {name}={value!r} is invalid; it must be '
                         f'{kind} {bound}')
    return value


def check_number(owner: str, name: str, value, low: float,
                 high: float = math.inf, low_open: bool = False,
                 high_open: bool = False) -> float:
    """``value`` if it is a real number in the interval from ``low`` to
    ``high`` (open at an end with ``low_open`` / ``high_open``); otherwise
    one ValueError naming the argument, the value and the interval."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and not math.isnan(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        interval = ('(' if low_open else '[') + f'{low:g}, {high:g}' + (
            ')' if high_open or high == math.inf else ']')
        raise ValueError(f'{owner}: {name}={value!r} is invalid; it must be '
                         f'a number in {interval}')
    return value


def check_divisible(owner: str, name: str, value: int, by_name: str,
                    by: int) -> None:
    """One ValueError unless ``by`` divides ``value``."""
    if value % by:
        raise ValueError(f'{owner}: {name}={value} is invalid; it must be '
                         f'divisible by {by_name}={by}')


def check_square(owner: str, name: str, value) -> int:
    """``value`` if it is a perfect square >= 1 (a grid of sqrt x sqrt)."""
    ok = _is_int(value) and value >= 1 and math.isqrt(value)**2 == value
    if not ok:
        raise ValueError(f'{owner}: {name}={value!r} is invalid; it must be '
                         'a perfect square int >= 1 (1, 4, 9, ...)')
    return value


def check_out_indices(owner: str, out_indices: Union[int, Sequence[int]],
                      num_stages: int) -> Tuple[int, ...]:
    """``out_indices`` as a tuple of stage indices in ``[0, num_stages)``,
    a negative index ``i`` counting from the end (``num_stages + i``, as
    mmpretrain's VisionTransformer); one ValueError naming the valid range
    for anything else."""
    indices = [out_indices] if _is_int(out_indices) else out_indices
    valid = f'[{-num_stages}, {num_stages - 1}]'
    if not isinstance(indices, Sequence) or isinstance(indices, str) or \
            not indices:
        raise ValueError(f'{owner}: out_indices={out_indices!r} is invalid; '
                         f'it must be an int or a non-empty sequence of ints '
                         f'in {valid} ({num_stages} stages)')
    for i in indices:
        if not (_is_int(i) and -num_stages <= i < num_stages):
            raise ValueError(
                f'{owner}: out_indices={tuple(indices)!r} holds {i!r}; '
                f'each index must be an int in {valid} ({num_stages} '
                'stages, negative counting from the last)')
    return tuple(i % num_stages for i in indices)


def check_frozen_stages(owner: str, frozen_stages: int,
                        max_stages: int) -> int:
    """``frozen_stages`` if it is an int in ``[-1, max_stages]`` (-1: none
    frozen); one ValueError naming the valid range otherwise."""
    if not (_is_int(frozen_stages) and -1 <= frozen_stages <= max_stages):
        raise ValueError(f'{owner}: frozen_stages={frozen_stages!r} is '
                         f'invalid; it must be an int in [-1, {max_stages}] '
                         '(-1: nothing frozen)')
    return frozen_stages


def check_image_batch(owner: str, x, channels: Optional[int],
                      min_size: int) -> None:
    """One clear error for an input that is not a float (B, C, H, W)
    image batch of at least ``min_size`` pixels a side."""
    want = (f'(B, {channels or "C"}, H, W) float tensor with H, W >= '
            f'{min_size}')
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'{owner} expects a {want}, got '
                        f'{type(x).__name__}')
    got = f'{x.dtype} tensor of shape {tuple(x.shape)}'
    if (x.dim() != 4 or not x.is_floating_point()
            or (channels and x.shape[1] != channels)
            or min(x.shape[-2:]) < min_size):
        hint = '' if x.is_floating_point() else (
            ' (normalise images first, e.g. with the model\'s '
            'data_preprocessor)')
        raise ValueError(f'{owner} expects a {want}, got a {got}{hint}')


class EffAttnBackbone(StrictPretrainedMixin, BaseModule):
    """Base of mmeffattn backbones (mmpretrain conventions).

    Subclasses set ``self.frozen_stages`` and ``self.norm_eval`` and list the
    modules to freeze in :meth:`_frozen_modules`; ``train()`` keeps them
    frozen (eval mode, no grad) and, with ``norm_eval``, batch norms in eval
    mode (as mmpretrain's ResNet: LayerNorm and GroupNorm have no running
    statistics, their mode changes nothing).
    """

    #: smallest input edge: the total stride, below which the last stage has
    #: no pixel of its own
    min_input_size = 32

    def check_input(self, x) -> None:
        """One clear error for an input that is not a float (B, C, H, W)
        image batch of at least ``min_input_size`` pixels a side."""
        check_image_batch(type(self).__name__, x,
                          getattr(self, 'in_channels', None),
                          self.min_input_size)

    def _frozen_modules(self) -> List[nn.Module]:
        raise NotImplementedError

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            eval_norms(self)
        return self


def set_vit_stages(vit: nn.Module, out_indices, frozen_stages) -> None:
    """Validate and apply ``out_indices`` and ``frozen_stages`` of an
    mmpretrain :class:`VisionTransformer` subclass built with the defaults
    (-1, -1), once its layers are final.

    The meanings are upstream's: a stage is a layer, ``out_indices`` in
    ``[-num_layers, num_layers - 1]``; ``frozen_stages`` in
    ``[-1, num_layers]``, ``k >= 1`` freezing the embeddings and the first
    ``k`` layers (and the final norm at ``num_layers``), 0 and -1 nothing.
    """
    owner = type(vit).__name__
    vit.out_indices = list(check_out_indices(owner, out_indices,
                                             vit.num_layers))
    vit.frozen_stages = check_frozen_stages(owner, frozen_stages,
                                            vit.num_layers)
    if vit.frozen_stages > 0:
        vit._freeze_stages()


def check_vit_input(vit: nn.Module, x) -> None:
    """:func:`check_image_batch` for a ViT: at least one patch a side."""
    proj = getattr(vit.patch_embed, 'projection', None)
    size = proj.kernel_size if proj is not None else (1, )
    check_image_batch(type(vit).__name__, x,
                      getattr(proj, 'in_channels', None), max(size))
