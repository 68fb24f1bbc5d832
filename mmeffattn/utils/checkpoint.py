"""Checkpoint loading policy for torch>=2.6 with mmengine 0.10.7.

* Every checkpoint first loads **weights-only** (torch's restricted
  unpickler, with numpy arrays/scalars allow-listed).
* A file is fully unpickled only when it is trusted: it lies inside the
  run's own ``work_dir`` (``Runner.load_or_resume``, used by train and test,
  trusts its work_dir), or the user named it with ``--trust-checkpoint``
  (tools/train.py, test.py, publish_model.py, pytorch2onnx.py and the
  analysis tools that load checkpoints). mmengine training checkpoints need
  this: their ``message_hub`` pickles ``HistoryBuffer`` objects with bound
  methods (``getattr``), which no allow-list can make safe.
* Anything else that is not weights-only is refused with
  :class:`CheckpointError` naming the file; so is a corrupt or truncated
  file.
* A file whose name ends in ``-<hex>.pth`` (``NAME_<date>-<sha256[:8]>.pth``,
  torch.hub's and OpenMMLab's convention) must hash to that sha256 prefix.
"""
import contextlib
import functools
import hashlib
import os
import os.path as osp
import pickle
import re
import threading
import zipfile
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

_STATE = threading.local()
TRUST_FLAG = '--trust-checkpoint'
HASH_SUFFIX = re.compile(r'-([0-9a-f]{8,64})\.pth$')
_VERIFIED = {}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot or must not be loaded."""


def add_trust_argument(parser) -> None:
    """Add ``--trust-checkpoint`` (the same flag in every tool)."""
    parser.add_argument(
        TRUST_FLAG, action='store_true',
        help='fully unpickle the checkpoint named on the command line even '
        'if it is not weights-only and lies outside the run\'s work_dir '
        '(pickled code runs: only for files you trust)')


def _safe_globals() -> list:
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy<2
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(t)) for t in (
        np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
        np.int64, np.uint8, np.bool_)]
    return [_reconstruct, scalar, np.ndarray, np.dtype] + dtypes


def _trusted_roots() -> tuple:
    return getattr(_STATE, 'trusted_roots', ())


@contextlib.contextmanager
def trusted_checkpoints(*roots: Optional[str]) -> Iterator[None]:
    """Within the block, checkpoints under any of ``roots`` (folders or
    single files; ``None`` is ignored) may be fully unpickled."""
    old = _trusted_roots()
    _STATE.trusted_roots = old + tuple(
        osp.realpath(osp.expanduser(r)) for r in roots if r)
    try:
        yield
    finally:
        _STATE.trusted_roots = old


def _is_trusted(path: str) -> bool:
    real = osp.realpath(path)
    return any(osp.commonpath([real, root]) == root
               for root in _trusted_roots())


def _reason(exc: Exception) -> str:
    """One line of an unpickling error, without torch's boilerplate."""
    text = str(exc)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
        text = text.split('Check the documentation', 1)[0]
    text = ' '.join(text.split())
    return text[:200] or type(exc).__name__


def _is_torch_file(path: str) -> bool:
    """A zip archive (torch.save's format) or a legacy pickle stream."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, 'rb') as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def verify_hash(path: str) -> None:
    """Check the sha256 prefix that a ``...-<hex>.pth`` name carries.

    Raises:
        CheckpointError: the file's sha256 does not start with the prefix.
    """
    match = HASH_SUFFIX.search(osp.basename(path))
    if match is None:
        return
    st = os.stat(path)
    key = (osp.realpath(path), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return
    sha = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            sha.update(block)
    expected, actual = match.group(1), sha.hexdigest()
    if not actual.startswith(expected):
        raise CheckpointError(
            f'checkpoint {path} fails its integrity check: the name carries '
            f'the sha256 prefix {expected}, the file hashes to '
            f'{actual[:len(expected)]} (sha256 {actual}); the file is '
            'corrupt or altered. Names ending in -<hex>.pth are verified; '
            'rename a file whose suffix is not its hash.')
    _VERIFIED[key] = True


def load_checkpoint_file(path: str, map_location='cpu', trust: bool = False):
    """Load a local checkpoint under the policy of this module.

    Args:
        path (str): The file.
        map_location: As in :func:`torch.load`. Defaults to ``'cpu'``.
        trust (bool): Fully unpickle ``path`` even outside a trusted root
            (the tools' ``--trust-checkpoint``). Defaults to False.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: corrupt file, a sha256 prefix in the name that the
            file does not match, or a non weights-only pickle that is not
            trusted.
    """
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    if not _is_torch_file(path):
        raise CheckpointError(
            f'corrupt or not a PyTorch checkpoint: {path}')
    verify_hash(path)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as exc:
        # a pickle that names a global outside the allow-list is
        # "not weights-only"; any other unpickling error is a broken file
        if 'GLOBAL' not in str(exc):
            raise CheckpointError(
                f'corrupt or not a PyTorch checkpoint: {path} '
                f'({_reason(exc)})') from exc
        if trust or _is_trusted(path):
            return torch.load(path, map_location=map_location,
                              weights_only=False)
        raise CheckpointError(
            f'checkpoint {path} is not weights-only (it pickles arbitrary '
            'objects) and is refused: only files inside the run\'s own '
            f'work_dir or named with {TRUST_FLAG} are fully unpickled. If '
            f'you trust it, pass {TRUST_FLAG} (tools/train.py, test.py, '
            'model_converters/publish_model.py, deployment/pytorch2onnx.py '
            'and the analysis tools take it); a file named in a config '
            '(pretrained backbone, teacher) must be weights-only: write one '
            'with tools/model_converters/publish_model.py FILE NAME '
            f'{TRUST_FLAG}.') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(
            f'corrupt or not a PyTorch checkpoint: {path} ({_reason(exc)})'
        ) from exc


def _count(keys: Sequence[str]) -> str:
    return f'{len(keys)} key' + ('s' if len(keys) != 1 else '')


def _names(keys: Sequence[str], num: int = 3) -> str:
    shown = ', '.join(keys[:num])
    return shown + (', ...' if len(keys) > num else '')


def load_state_dict_checked(model: torch.nn.Module, state_dict: dict,
                            path: str, strict: bool = True,
                            hint: str = '') -> tuple:
    """Load ``state_dict`` into ``model`` as mmengine does (a leading
    ``module.`` stripped, TTA and DDP wrappers unwrapped), refusing any
    mismatch when ``strict``.

    Missing ``num_batches_tracked`` buffers are allowed (mmengine ignores
    them too); keys that the model's own ``_load_from_state_dict`` hooks
    handle (old SeTformer norms) count as matched.

    Args:
        model (nn.Module): The model (modified in place).
        state_dict (dict): The checkpoint's ``state_dict``.
        path (str): The checkpoint file, for the message.
        strict (bool): Raise on missing, unexpected or mis-shaped keys.
            Defaults to True.
        hint (str): Appended to the error, e.g. how to opt out.

    Returns:
        tuple: ``(missing, unexpected, mismatched)`` key lists.

    Raises:
        CheckpointError: a mismatch while ``strict``, naming the first keys.
    """
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    state = {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and hasattr(
        v, 'shape') and tuple(v.shape) != tuple(own[k].shape)]
    shapes = [f'{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}'
              for k in mismatched]
    for k in mismatched:
        state.pop(k)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys
               if not k.endswith('num_batches_tracked')
               and k not in mismatched]
    unexpected = list(result.unexpected_keys)
    if strict and (missing or unexpected or mismatched):
        parts = []
        if missing:
            parts.append(f'{_count(missing)} missing ({_names(missing)})')
        if unexpected:
            parts.append(f'{_count(unexpected)} unexpected '
                         f'({_names(unexpected)})')
        if mismatched:
            parts.append(f'{_count(mismatched)} of another shape, '
                         f'checkpoint vs model ({_names(shapes)})')
        raise CheckpointError(
            f'checkpoint {path} does not match the model: '
            f'{"; ".join(parts)}.{" " + hint if hint else ""}')
    return missing, unexpected, mismatched


def _load_from_local(filename, map_location):
    return load_checkpoint_file(filename, map_location)


def _trusting_work_dir(load_or_resume):

    @functools.wraps(load_or_resume)
    def wrapper(self, *args, **kwargs):
        if self._resume and self._load_from is None and not self._has_loaded:
            from mmengine.runner import find_latest_checkpoint
            if find_latest_checkpoint(self.work_dir) is None:
                self.logger.info(
                    f'No checkpoint in {self.work_dir} to resume from: '
                    'training starts from scratch.')
                self._resume = False
        with trusted_checkpoints(self.work_dir):
            return load_or_resume(self, *args, **kwargs)

    wrapper._mmeffattn_policy = True
    return wrapper


def register_checkpoint_policy() -> None:
    """Install the policy into mmengine (idempotent)."""
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', force=True)(_load_from_local)
    if not getattr(Runner.load_or_resume, '_mmeffattn_policy', False):
        Runner.load_or_resume = _trusting_work_dir(Runner.load_or_resume)
