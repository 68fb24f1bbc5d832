"""Checkpoint loading policy for torch>=2.6 with mmengine 0.10.7.

* Every checkpoint first loads **weights-only** (torch's restricted
  unpickler, with numpy arrays/scalars allow-listed).
* A checkpoint that lies inside the run's own ``work_dir`` may fall back to a
  full unpickle when the Runner resumes or loads it (``Runner.load_or_resume``,
  used by train and test): it is the run's own file. mmengine training
  checkpoints need this: their ``message_hub`` pickles ``HistoryBuffer``
  objects with bound methods (``getattr``), which no allow-list can make safe.
* Anything else that is not weights-only (a published or third-party file) is
  refused with :class:`CheckpointError` naming the file; so is a corrupt or
  truncated file.
"""
import contextlib
import functools
import os
import os.path as osp
import pickle
import threading
import zipfile
from typing import Iterator, Optional

import numpy as np
import torch

_STATE = threading.local()
TRUST_ENV = 'MMEFFATTN_TRUST_CHECKPOINTS'


class CheckpointError(RuntimeError):
    """A checkpoint that cannot or must not be loaded."""


def _safe_globals() -> list:
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy<2
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(t)) for t in (
        np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
        np.int64, np.uint8, np.bool_)]
    return [_reconstruct, scalar, np.ndarray, np.dtype] + dtypes


def _trusted_root() -> Optional[str]:
    return getattr(_STATE, 'trusted_root', None)


@contextlib.contextmanager
def trusted_checkpoints(root: str) -> Iterator[None]:
    """Within the block, checkpoints under ``root`` may be fully unpickled."""
    old = _trusted_root()
    _STATE.trusted_root = osp.realpath(root)
    try:
        yield
    finally:
        _STATE.trusted_root = old


def _is_trusted(path: str) -> bool:
    if os.environ.get(TRUST_ENV) == '1':
        return True
    root = _trusted_root()
    if root is None:
        return False
    return osp.commonpath([osp.realpath(path), root]) == root


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


def load_checkpoint_file(path: str, map_location='cpu'):
    """Load a local checkpoint under the policy of this module.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: corrupt file, or a non weights-only pickle outside a
            trusted resume.
    """
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    if not _is_torch_file(path):
        raise CheckpointError(
            f'corrupt or not a PyTorch checkpoint: {path}')
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
        if _is_trusted(path):
            return torch.load(path, map_location=map_location,
                              weights_only=False)
        raise CheckpointError(
            f'checkpoint {path} is not weights-only (it pickles arbitrary '
            'objects) and is refused. Published checkpoints must hold only '
            'tensors and plain data (tools/model_converters/publish_model.py '
            'writes such files). A run may load its own checkpoints from '
            'inside its work_dir (--work-dir); to trust this file anyway set '
            f'{TRUST_ENV}=1.') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(
            f'corrupt or not a PyTorch checkpoint: {path} ({_reason(exc)})'
        ) from exc


def _load_from_local(filename, map_location):
    return load_checkpoint_file(filename, map_location)


def _trusting_work_dir(load_or_resume):

    @functools.wraps(load_or_resume)
    def wrapper(self, *args, **kwargs):
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
