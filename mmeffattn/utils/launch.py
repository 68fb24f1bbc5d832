"""Shared set-up of tools/train.py and tools/test.py (one tools/ for all toolboxes)."""
import os.path as osp
from typing import Iterable

import torch


def load_config(args):
    """Config of ``args.config`` with ``--cfg-options``, ``--launcher`` and
    ``--work-dir`` applied (default ``./work_dirs/<config name>``)."""
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


def build_checkpoint_model(config: str, checkpoint: str, edit_cfg=None):
    """The config's model with a checkpoint's weights (strict, loaded
    weights-only), in eval mode; and the config. ``edit_cfg(cfg)`` may change
    the config before the model is built. Missing files raise one
    ``FileNotFoundError`` that names them."""
    from mmengine.config import Config
    from mmeffattn.utils.checkpoint import load_checkpoint_file
    for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} file {path} does not exist')
    cfg = Config.fromfile(config)
    if edit_cfg is not None:
        edit_cfg(cfg)
    model = build_config_model(cfg)
    state = load_checkpoint_file(checkpoint)
    model.load_state_dict(state.get('state_dict', state), strict=True)
    return model.eval(), cfg


def check_config(cfg, build_model: bool = True) -> None:
    """Fail early, before the Runner writes anything, with one clear error.

    Checks that every dataset's ``data_root`` and annotation file exist and
    that the model config builds (unknown ``type`` names, bad arguments).
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
        build_config_model(cfg)
