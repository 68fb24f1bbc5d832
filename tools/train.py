"""Train a model with mmengine's Runner (mmdet's tools/train.py flags).

One script for all toolboxes: the config's ``default_scope`` (mmpretrain,
mmdet or mmseg) picks the registries.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmeffattn  # noqa: E402,F401  (registry + checkpoint policy)
from mmeffattn.utils import checkpoint as policy  # noqa: E402
from mmeffattn.utils.launch import (check_config, check_run_checkpoint,  # noqa
                                    load_config, setup_cpu_distributed,
                                    use_atomic_checkpoints, work_dir_run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale lr with the actual total batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work_dir if no path is given')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    policy.add_trust_argument(parser)
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args) -> Config:
    if args.amp and not torch.cuda.is_available():
        raise RuntimeError(
            '--amp needs a CUDA GPU: mmengine\'s AmpOptimWrapper runs fp16 '
            'autocast with a GradScaler on CUDA. On a CPU, train without '
            '--amp (fp32); the ops themselves support bf16 autocast.')
    cfg = load_config(args)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr', {}).get('base_batch_size'):
            raise RuntimeError('--auto-scale-lr needs `auto_scale_lr = dict('
                               'base_batch_size=...)` in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None):
    """Checks (config, data, model, the checkpoint to start from) run before
    the work_dir is created; the run then holds the work_dir's lock, and a
    failed start removes the folders it made."""
    args = parse_args(argv)
    cfg = build_cfg(args)
    check_config(cfg)
    check_run_checkpoint(cfg, trust=args.trust_checkpoint)
    use_atomic_checkpoints(cfg)
    setup_cpu_distributed(cfg, args.launcher)
    trusted = cfg.load_from if args.trust_checkpoint else None
    with work_dir_run(cfg, args.launcher), \
            policy.trusted_checkpoints(trusted):
        if 'runner_type' not in cfg:
            runner = Runner.from_cfg(cfg)
        else:
            runner = RUNNERS.build(cfg)
        runner.train()
    return runner


if __name__ == '__main__':
    main()
