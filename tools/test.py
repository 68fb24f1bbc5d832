"""Test (evaluate) a checkpoint with mmengine's Runner (mmdet's flags).

The config's ``default_scope`` picks mmpretrain, mmdet or mmseg.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmeffattn  # noqa: E402,F401
from mmeffattn.utils import checkpoint as policy  # noqa: E402
from mmeffattn.utils.launch import (check_config, load_config,  # noqa
                                    setup_cpu_distributed, work_dir_run)

VIS_HOOKS = dict(mmdet='DetVisualizationHook', mmseg='SegVisualizationHook',
                 mmpretrain='VisualizationHook')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs / metrics')
    parser.add_argument('--out', help='dump predictions to a pickle file')
    parser.add_argument('--show', action='store_true', help='show results')
    parser.add_argument('--show-dir',
                        help='save painted predictions under work_dir: '
                        'mmpretrain WORK_DIR/SHOW_DIR, mmdet '
                        'WORK_DIR/TIMESTAMP/SHOW_DIR, mmseg '
                        'WORK_DIR/SHOW_DIR/vis_data/vis_image')
    parser.add_argument('--wait-time', type=float, default=2)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (tta_model/tta_pipeline '
                        'of the config)')
    policy.add_trust_argument(parser)
    parser.add_argument('--non-strict', action='store_true',
                        help='evaluate a checkpoint whose keys do not match '
                        'the model (missing ones keep their initialisation)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _enable_visualization(cfg, args):
    scope = cfg.get('default_scope', 'mmdet')
    hook_type = VIS_HOOKS.get(scope)
    hooks = cfg.default_hooks
    if hook_type is None or 'visualization' not in hooks:
        raise RuntimeError(
            f'--show/--show-dir need default_hooks.visualization '
            f'({hook_type or "a visualization hook"}) in the config')
    vis = hooks.visualization
    if scope == 'mmpretrain':  # every sample, under work_dir like mmdet's
        vis.enable, vis.interval = True, 1
        if args.show_dir:
            vis.out_dir = osp.join(cfg.work_dir, args.show_dir)
    elif scope == 'mmseg':  # SegVisualizationHook writes via the visualizer
        vis.draw, vis.interval = True, 1
        if args.show_dir:
            cfg.visualizer.save_dir = osp.join(cfg.work_dir, args.show_dir)
    else:
        vis.draw = True
        if args.show_dir:
            vis.test_out_dir = args.show_dir
    vis.show = args.show
    vis.wait_time = args.wait_time


def _check_tta(cfg, args) -> None:
    """Refuse the TTA combinations the toolboxes cannot run, in one line."""
    config, scope = args.config, cfg.get('default_scope')
    if scope == 'mmdet' and cfg.model.get('roi_head', {}).get('mask_head'):
        raise RuntimeError(
            f'--tta: {config} predicts instance masks, and mmdet 3.3\'s '
            'DetTTAModel merges boxes only; test without --tta')
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise RuntimeError(f'--tta: {config} defines no tta_model '
                           'and tta_pipeline')
    if scope == 'mmpretrain' and (args.show or args.show_dir):
        raise RuntimeError(
            '--tta with --show/--show-dir: mmpretrain\'s VisualizationHook '
            'cannot draw augmented batches; run them separately')

    def transforms(pipeline):
        for t in pipeline:
            yield t
            for sub in t.get('transforms', []) or []:
                yield from transforms(sub if isinstance(sub, list) else [sub])

    if cfg.tta_model.get('type') == 'DetTTAModel' and not any(
            t.get('type') == 'RandomFlip'
            for t in transforms(cfg.tta_pipeline)):
        raise RuntimeError(
            f'--tta: the tta_pipeline of {config} sets no flip; '
            "DetTTAModel needs RandomFlip(prob=1.) / RandomFlip(prob=0.) "
            'branches')


def build_cfg(args) -> Config:
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        _enable_visualization(cfg, args)
    if args.tta:
        _check_tta(cfg, args)
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    return cfg


def _dump_metric(cfg, out):
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl/.pickle file, got {out}')
    if cfg.get('default_scope') == 'mmdet':
        return dict(type='mmdet.DumpDetResults', out_file_path=out)
    return dict(type='mmengine.DumpResults', out_file_path=out)


def check_checkpoint(model, cfg, args) -> None:
    """Before anything is written: the checkpoint loads under the trust rule
    (inside the work_dir, or ``--trust-checkpoint``), matches its sha256
    name, and, unless ``--non-strict``, matches the model key for key."""
    with policy.trusted_checkpoints(cfg.work_dir):
        ckpt = policy.load_checkpoint_file(args.checkpoint,
                                           trust=args.trust_checkpoint)
    if not args.non_strict:
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) \
            else ckpt
        policy.load_state_dict_checked(
            model, state, args.checkpoint,
            hint='Pass --non-strict to evaluate it anyway.')


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    model = check_config(cfg)
    check_checkpoint(model, cfg, args)
    del model
    setup_cpu_distributed(cfg, args.launcher)
    trusted = args.checkpoint if args.trust_checkpoint else None
    with work_dir_run(cfg, args.launcher), \
            policy.trusted_checkpoints(trusted):
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else \
            RUNNERS.build(cfg)
        if args.out:
            runner.test_evaluator.metrics.append(
                runner.build_evaluator(_dump_metric(cfg, args.out)).metrics[0])
        metrics = runner.test()
    return metrics


if __name__ == '__main__':
    main()
