"""Per-op profile of one training step of a full-size backbone
(torch.profiler).

    python tools/analysis_tools/profile_backbone.py sasa-r50 [--batch 8]
        [--size 224] [--threads 2] [--rows 15] [--by-node]

Prints torch.profiler's table (self CPU time per op, one step after two
warm-up steps) for any backbone of ``--suite backbone``: setformer-t,
setformer-s, swin-t, swin-s, sasa-r50, resnet-50. ``--by-node`` instead
times three steps by the clock, per autograd node in backward and per module
type in forward (benchmark/step_timing.py beside this script: the profiler
can attribute a custom kernel's time to the ops around it).
"""
import argparse
import logging
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from benchmark.backbone_cases import BACKBONES  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('backbone', help=f'one of {", ".join(BACKBONES)}')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--rows', type=int, default=15)
    parser.add_argument('--by-node', action='store_true',
                        help='wall-clock time per autograd node / module')
    args = parser.parse_args(argv)
    if args.backbone not in BACKBONES:
        parser.error(f'unknown backbone {args.backbone!r}; one of '
                     f'{", ".join(BACKBONES)}')
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch
    from benchmark.backbone_cases import build_backbone_case
    from mmengine.logging import MMLogger
    from torch.profiler import profile
    if args.threads:
        torch.set_num_threads(args.threads)
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # init logs
    model, x = build_backbone_case(dict(impl=args.backbone, B=args.batch,
                                        H=args.size, W=args.size))

    def step_loss():
        model.zero_grad(set_to_none=True)
        return sum(o.float().mean() for o in model(x))

    for _ in range(2):
        step_loss().backward()
    print(f'{args.backbone}: one training step, B={args.batch}, '
          f'{args.size}x{args.size}, {torch.get_num_threads()} threads')
    if args.by_node:
        from benchmark.step_timing import format_step_table, time_step
        print(format_step_table(*time_step(model, step_loss), args.rows))
        return
    with profile() as prof:
        step_loss().backward()
    print(prof.key_averages().table(sort_by='self_cpu_time_total',
                                    row_limit=args.rows))


if __name__ == '__main__':
    main()
