"""Shared set-up of tools/train.py and tools/test.py (all toolboxes)."""
import contextlib
import fcntl
import os
import os.path as osp
import re
import shutil
from typing import Iterable, Iterator, Optional

import torch


def load_config(args):
    """Config of ``args.config`` with ``--cfg-options``, ``--launcher`` and
    ``--work-dir`` applied (default ``./work_dirs/<config name>``). Raises
    :class:`WorkDirBusyError` at once if another run holds that work_dir."""
    from mmengine.config import Config
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if _launcher_rank(args.launcher) == 0:
        check_work_dir_free(cfg.work_dir)
    return cfg


def setup_cpu_distributed(cfg, launcher: str) -> None:
    """On machines without CUDA, run ``--launcher pytorch`` on gloo.

    mmengine 0.10.7 calls ``torch.cuda.set_device`` in ``init_dist`` and gives
    DDP ``device_ids=[LOCAL_RANK]``; both fail without a GPU. We open the gloo
    group ourselves (the Runner then skips ``init_dist``) and wrap with
    ``device_ids=None``.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def _datasets(cfg) -> Iterable[dict]:
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if not loader:
            continue
        stack = [loader.get('dataset')]
        while stack:
            ds = stack.pop()
            if isinstance(ds, dict):
                yield ds
                stack.append(ds.get('dataset'))
                stack.extend(ds.get('datasets') or [])


def build_config_model(cfg):
    """``cfg.model`` built as the Runner builds it: in the config's
    ``default_scope``, with a top-level ``data_preprocessor`` (mmpretrain's
    batch augments) merged in. No ``init_weights``."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') and 'data_preprocessor' not in model_cfg:
        model_cfg.data_preprocessor = cfg.data_preprocessor
    return MODELS.build(model_cfg)


def build_checkpoint_model(config: str, checkpoint: str, edit_cfg=None,
                           trust: bool = False):
    """The config's model with a checkpoint's weights (strict, loaded
    weights-only unless ``trust``: the tools' ``--trust-checkpoint``), in
    eval mode; and the config. ``edit_cfg(cfg)`` may change the config
    before the model is built. Missing files raise one ``FileNotFoundError``
    that names them; a checkpoint whose keys do not match the model raises
    :class:`~mmeffattn.utils.CheckpointError` naming the first ones."""
    from mmengine.config import Config

    from mmeffattn.utils.checkpoint import (load_checkpoint_file,
                                            load_state_dict_checked)
    for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} file {path} does not exist')
    cfg = Config.fromfile(config)
    if edit_cfg is not None:
        edit_cfg(cfg)
    model = build_config_model(cfg)
    state = load_checkpoint_file(checkpoint, trust=trust)
    load_state_dict_checked(model, state.get('state_dict', state), checkpoint)
    return model.eval(), cfg


def check_config(cfg, build_model: bool = True):
    """Fail early, before the Runner writes anything, with one clear error.

    Checks that every dataset's ``data_root`` and annotation file exist and
    that the model config builds (unknown ``type`` names, bad arguments).
    Returns the built model (``None`` without ``build_model``).
    """
    for ds in _datasets(cfg):
        root = ds.get('data_root')
        if root is not None and not osp.isdir(root):
            raise FileNotFoundError(
                f"data_root '{root}' of {ds.get('type')} does not exist. "
                'Generate the embedded demo data with `make data` (python '
                'tools/misc/make_demo_data.py data/demo) or point data_root '
                'at your dataset (--cfg-options).')
        ann = ds.get('ann_file')
        if ann and isinstance(ann, str):
            path = ann if osp.isabs(ann) or root is None else osp.join(
                root, ann)
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f"ann_file '{path}' of {ds.get('type')} does not exist")
    if build_model:
        return build_config_model(cfg)
    return None


def use_atomic_checkpoints(cfg) -> None:
    """Save through :class:`~mmeffattn.engine.AtomicCheckpointHook` where
    the config names mmengine's ``CheckpointHook``."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook and hook.get('type') in ('CheckpointHook',
                                     'mmengine.CheckpointHook'):
        hook['type'] = 'mmeffattn.AtomicCheckpointHook'


def check_run_checkpoint(cfg, trust: bool = False) -> Optional[dict]:
    """Load the checkpoint a run will start from, before anything is
    written: ``cfg.load_from``, or with ``cfg.resume`` and no ``load_from``
    the one ``last_checkpoint`` of ``cfg.work_dir`` names. Integrity (a
    ``-<sha256 prefix>.pth`` name) and the trust rule apply: files inside
    ``cfg.work_dir`` or, with ``trust``, ``cfg.load_from`` may be fully
    unpickled. URLs are left to the Runner. Returns the loaded checkpoint,
    or ``None`` when there is none to check."""
    from mmengine.runner import find_latest_checkpoint

    from mmeffattn.utils.checkpoint import (load_checkpoint_file,
                                            trusted_checkpoints)
    path = cfg.get('load_from')
    if path is None and cfg.get('resume') and osp.isdir(cfg.work_dir):
        path = find_latest_checkpoint(cfg.work_dir)
        if path is not None and not osp.isfile(path):
            raise FileNotFoundError(
                f'{osp.join(cfg.work_dir, "last_checkpoint")} names {path}, '
                'which does not exist; resume from an existing checkpoint '
                'with --resume PATH')
    if path is None or '://' in str(path):
        return None
    with trusted_checkpoints(cfg.work_dir):
        return load_checkpoint_file(path, trust=trust)


LOCK_FILE = '.lock'
TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')
_RANK_VARS = dict(pytorch='RANK', slurm='SLURM_PROCID',
                  mpi='OMPI_COMM_WORLD_RANK')


def _launcher_rank(launcher: str) -> int:
    """This process's global rank, from the launcher's environment (the
    process group may not exist yet)."""
    return int(os.environ.get(_RANK_VARS.get(launcher, ''), 0) or 0)


class WorkDirBusyError(RuntimeError):
    """Another run holds the work_dir's lock."""


def _busy(work_dir: str, path: str, fd: int) -> WorkDirBusyError:
    holder = os.read(fd, 64).decode(errors='replace').strip()
    return WorkDirBusyError(
        f'work_dir {work_dir} is in use by another run (pid '
        f'{holder or "unknown"}, holding {path}): one run per work_dir. '
        'Wait for it to end or pass another --work-dir.')


def check_work_dir_free(work_dir: str) -> None:
    """Raise :class:`WorkDirBusyError` at once if a run holds
    ``work_dir``'s lock (creates nothing; the tools call it before their
    slower checks)."""
    path = osp.join(work_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        raise _busy(work_dir, path, fd) from None
    finally:
        os.close(fd)


def lock_work_dir(work_dir: str) -> int:
    """Take ``WORK_DIR/.lock`` (an exclusive ``fcntl.flock``, released by the
    OS when the process ends, even on SIGKILL) and write our pid into it.
    Creates ``work_dir``. Returns the file descriptor that holds the lock.

    Raises:
        WorkDirBusyError: another process holds it; the message names its
            pid.
    """
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        error = _busy(work_dir, path, fd)
        os.close(fd)
        raise error from None
    os.ftruncate(fd, 0)
    os.write(fd, f'{os.getpid()}\n'.encode())
    return fd


def _cleanup_failed_run(work_dir: str, before: Optional[set],
                        config_dump: Optional[str]) -> None:
    """Remove what a run that failed before producing anything left: its
    timestamp folders (without ``vis_data/scalars.json``), its config dump,
    and ``work_dir`` itself when the run created it."""
    new = set(os.listdir(work_dir)) - (before or set()) - {LOCK_FILE}
    removable = {n for n in new if n == config_dump or (
        TIMESTAMP.match(n) and not osp.isfile(
            osp.join(work_dir, n, 'vis_data', 'scalars.json')))}
    if new - removable:
        return  # checkpoints, predictions, figures: keep everything
    for name in removable:
        path = osp.join(work_dir, name)
        if osp.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    if before is None and set(os.listdir(work_dir)) <= {LOCK_FILE}:
        shutil.rmtree(work_dir, ignore_errors=True)


@contextlib.contextmanager
def work_dir_run(cfg, launcher: str = 'none') -> Iterator[None]:
    """Hold ``cfg.work_dir`` for one run (:func:`lock_work_dir`, on the
    first process only) and, if the run fails before it produced anything
    (a checkpoint, scalars, a prediction file), remove the folders it
    created, so that a failed start leaves no timestamped folder behind."""
    if _launcher_rank(launcher) != 0:
        yield
        return
    work_dir = osp.abspath(cfg.work_dir)
    before = set(os.listdir(work_dir)) if osp.isdir(work_dir) else None
    fd = lock_work_dir(work_dir)
    filename = getattr(cfg, 'filename', None)
    dump = osp.basename(filename) if filename else None
    try:
        yield
    except BaseException:
        try:
            _cleanup_failed_run(work_dir, before, dump)
        except OSError:
            pass  # the run's own error is the one to report
        raise
    finally:
        os.close(fd)
