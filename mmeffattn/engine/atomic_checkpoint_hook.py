"""mmengine's CheckpointHook, made loss-free when a save fails."""
import os
import os.path as osp
import shutil
from collections import deque

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from mmeffattn.registry import HOOKS


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written; the previous one is intact."""


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_space(folder: str) -> str:
    try:
        return f'{shutil.disk_usage(folder).free / 2**20:.1f} MiB free'
    except OSError:
        return 'free space unknown'


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` whose saves never lose a
    checkpoint.

    mmengine 0.10.7 removes the oldest checkpoint beyond ``max_keep_ckpts``
    (and the previous best one) *before* writing the new file in place, so a
    failed write (a full disk) leaves no usable checkpoint and
    ``last_checkpoint`` naming a deleted file. Here each save goes to a
    temporary file in the same folder, is flushed to disk (fsync) and renamed
    into place (``os.replace``, atomic on POSIX); only then is
    ``last_checkpoint`` rewritten (the same way), and only then are old
    checkpoints removed. A failed save raises :class:`CheckpointSaveError`
    naming the path and the free space; the temporary file is removed and
    the previous checkpoint stays resumable (``--resume``).

    Takes the arguments of :class:`~mmengine.hooks.CheckpointHook`.
    tools/train.py uses it in place of ``CheckpointHook`` for any config.
    Remote backends (``backend_args``) write directly, with the same order
    of save, ``last_checkpoint`` and removal.
    """

    _previous_ckpt = None

    def _atomic_save(self, runner, filename: str, **kwargs) -> None:
        """``runner.save_checkpoint(self.out_dir, filename, **kwargs)``
        through a temporary file."""
        save = type(runner).save_checkpoint  # not a per-instance override
        backend = getattr(self.file_backend, 'wrapped', self.file_backend)
        if not is_main_process() or not isinstance(backend, LocalBackend):
            save(runner, self.out_dir, filename, **kwargs)
            return
        path = osp.join(self.out_dir, filename)
        tmp_name = f'.{filename}.tmp'
        tmp = osp.join(self.out_dir, tmp_name)
        try:
            save(runner, self.out_dir, tmp_name, **kwargs)
            _fsync(tmp)
            os.replace(tmp, path)
            _fsync(self.out_dir)
        except OSError as exc:
            self._fail(path, tmp, exc)

    def _fail(self, path: str, tmp: str, exc: OSError) -> None:
        if osp.lexists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass
        previous = self._previous_ckpt
        kept = (f'{previous} is intact; `tools/train.py CONFIG --resume` '
                'continues from it once there is space' if previous else
                'no earlier checkpoint of this run exists')
        reason = exc.strerror or str(exc)
        raise CheckpointSaveError(
            f'saving checkpoint {path} failed: {reason} (errno {exc.errno}); '
            f'{_free_space(self.out_dir)} on {self.out_dir}. Nothing was '
            f'replaced or removed: {kept}.') from None

    def _write_last_checkpoint(self, runner) -> None:
        path = osp.join(runner.work_dir, 'last_checkpoint')
        tmp = osp.join(runner.work_dir, '.last_checkpoint.tmp')
        try:
            with open(tmp, 'w') as f:
                f.write(self.last_ckpt)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            self._fail(path, tmp, exc)

    def _remove(self, path: str) -> None:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed saves folders
            self.file_backend.rmtree(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        hub = runner.message_hub
        keep = self.max_keep_ckpts > 0
        old_ids = list(self.keep_ckpt_ids) if keep else None
        old_last = self.last_ckpt
        stale = []
        # the saved message_hub records the state after this save, as
        # mmengine's does; the files are removed only once it succeeded
        if keep and not (self.keep_ckpt_ids
                         and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self._previous_ckpt = old_last
        if old_last is None and osp.isfile(
                osp.join(runner.work_dir, 'last_checkpoint')):
            with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
                self._previous_ckpt = f.read().strip() or None
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        hub.update_info('last_ckpt', self.last_ckpt)
        try:
            self._atomic_save(
                runner, filename,
                file_client_args=self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta, by_epoch=self.by_epoch,
                backend_args=self.backend_args, **self.args)
            if is_main_process():
                self._write_last_checkpoint(runner)
        except CheckpointSaveError:
            if keep:
                self.keep_ckpt_ids = deque(old_ids, self.max_keep_ckpts)
                hub.update_info('keep_ckpt_ids', old_ids)
            self.last_ckpt = old_last
            hub.update_info('last_ckpt', old_last)
            raise
        if is_main_process():
            for old in stale:
                path = self.file_backend.join_path(
                    self.out_dir, self.filename_tmpl.format(old))
                if path != self.last_ckpt:
                    self._remove(path)

    def _publish_model(self, runner, ckpt_path: str) -> None:
        """``published_keys``: the checkpoint with those keys only, named
        ``<name>-<sha256[:8]>.pth`` after the file's own hash (mmengine
        hashes the pickle instead, which the loader's name check refuses),
        written atomically."""
        import hashlib

        import torch

        from mmeffattn.utils.checkpoint import (load_checkpoint_file,
                                                trusted_checkpoints)
        if not is_main_process():
            return
        with trusted_checkpoints(runner.work_dir):
            checkpoint = load_checkpoint_file(ckpt_path)
        checkpoint = {k: v for k, v in checkpoint.items()
                      if k in self.published_keys}
        tmp = osp.splitext(ckpt_path)[0] + '.publish.tmp'
        try:
            torch.save(checkpoint, tmp)
            _fsync(tmp)
            with open(tmp, 'rb') as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            final = osp.splitext(ckpt_path)[0] + f'-{sha[:8]}.pth'
            os.replace(tmp, final)
        except OSError as exc:
            self._previous_ckpt = ckpt_path
            self._fail(osp.splitext(ckpt_path)[0] + '-<sha256>.pth', tmp,
                       exc)
        runner.logger.info(f'The checkpoint ({ckpt_path}) is published to '
                           f'{final}.')

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine's best-checkpoint logic, with the new best saved
        atomically before the previous best is removed."""
        removed = []
        backend = self.file_backend

        class DeferRemoval:
            wrapped = backend

            def __getattr__(self, name):
                return getattr(backend, name)

            def remove(self, path):
                removed.append(path)

            def rmtree(self, path):
                removed.append(path)

        def save(out_dir, filename, **kwargs):
            self._previous_ckpt = removed[-1] if removed else None
            self._atomic_save(runner, filename, **kwargs)

        self.file_backend = DeferRemoval()
        runner.save_checkpoint = save
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
            del runner.save_checkpoint
        keep = {self.last_ckpt, getattr(self, 'best_ckpt_path', None),
                *(getattr(self, 'best_ckpt_path_dict', None) or {}).values()}
        for path in removed:
            if path not in keep:
                self._remove(path)
