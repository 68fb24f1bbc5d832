"""What every converter of official weights shares:
renaming with a check that no two keys collide, the command line, the
optional strict load into a config's model, and the weights-only output."""
import argparse
import os.path as osp
import re
from collections import OrderedDict
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch

Rules = Union[Dict[str, object], Sequence[Tuple[str, object]]]


def match_rules(key: str, rules: Rules) -> Optional[str]:
    """The first rule ``(regex, replacement)`` whose regex matches all of
    ``key``, applied: a replacement is a ``re`` template or a callable on the
    match. ``None`` when no rule matches."""
    for pattern, repl in (rules.items() if isinstance(rules, dict)
                          else rules):
        m = re.fullmatch(pattern, key)
        if m:
            return repl(m) if callable(repl) else m.expand(repl)
    return None


def rename_state_dict(
        state: Dict[str, torch.Tensor],
        map_key: Callable[[str], str],
        check: Optional[Callable[[str, torch.Tensor], None]] = None
) -> 'OrderedDict[str, torch.Tensor]':
    """``state`` with every key renamed by ``map_key`` (which raises
    ``KeyError`` naming a key it cannot map); ``check(key, value)`` may refuse
    a tensor. Two keys mapping to one name is an error."""
    out = OrderedDict()
    for key, value in state.items():
        if check is not None:
            check(key, value)
        new = map_key(key)
        if new in out:
            raise KeyError(f'{key!r} maps to {new!r}, already mapped')
        out[new] = value
    return out


def converter_parser(description: str,
                     source: str) -> argparse.ArgumentParser:
    """``SRC DST [--config CFG]``, mmdet's converter convention."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help=f'{source} checkpoint')
    parser.add_argument('dst', help='output weights-only checkpoint')
    parser.add_argument('--config', help='check: load with strict=True into '
                        'the model of this config')
    return parser


def check_loads_strictly(state: Dict[str, torch.Tensor], config: str,
                         default_scope: str = 'mmpretrain') -> None:
    """Load ``state`` with ``strict=True`` into the model of ``config``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmeffattn  # noqa: F401
    from mmeffattn.registry import MODELS
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', default_scope))
    MODELS.build(cfg.model).load_state_dict(state, strict=True)


def save_converted(state: Dict[str, torch.Tensor], src: str, dst: str,
                   converter: str, config: Optional[str] = None,
                   default_scope: str = 'mmpretrain') -> None:
    """Check the strict load when ``config`` is given, then write
    ``{'state_dict', 'meta'}`` (loadable weights-only) to ``dst``."""
    if config:
        check_loads_strictly(state, config, default_scope)
    torch.save(dict(state_dict=state,
                    meta=dict(source=osp.basename(src), converter=converter)),
               dst)
    print(f'{len(state)} tensors -> {dst}')
