"""Speed against accuracy of token merging: sweep ToMe's r on trained models.

Each MODEL is ``CONFIG CHECKPOINT`` of an mmpretrain classifier with a plain
ViT (``VisionTransformer``, swapped for ``mmeffattn.ToMeVisionTransformer``
with the same weights: off the shelf) or a ``ToMeVisionTransformer``. For
every r (tokens merged per layer, constant schedule) it evaluates top-1 on the
config's val set and times the eval forward (median of ``--repeat`` runs,
round robin over r, fixed thread count, batch ``--batch-size``), then
writes a JSON file and a plot of img/s against top-1, one point per r, one
line per model.

  python tools/analysis_tools/tome_sweep.py \\
      --model configs/demo/vit-demo_1xb64-60e_digits.py VIT_CKPT \\
      --model configs/demo/tome-r8_vit-demo_1xb64-60e_digits.py TOME_CKPT \\
      --out docs/benchmarks/tome.png
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import torch  # noqa: E402
from benchmark.timers import time_round_robin  # noqa: E402

PLAIN_VIT = ('VisionTransformer', 'mmpretrain.VisionTransformer')
TOME_VIT = 'mmeffattn.ToMeVisionTransformer'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', nargs=2, action='append', required=True,
                        metavar=('CONFIG', 'CHECKPOINT'),
                        help='a trained classifier (repeat for several)')
    parser.add_argument('--label', action='append', default=None,
                        help='legend label per --model (default: config name)')
    parser.add_argument('--r', type=int, nargs='+', default=None,
                        help='r values (default: 0 to the largest r the first '
                        'layer can merge, step --r-step)')
    parser.add_argument('--r-step', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=256,
                        help='images per timed forward')
    parser.add_argument('--repeat', type=int, default=10,
                        help='timed forwards per r (median reported)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch\'s default)')
    parser.add_argument('--out', default='work_dirs/tome_sweep/tome.png',
                        help='plot path; the JSON goes beside it')
    from mmeffattn.utils.checkpoint import add_trust_argument
    add_trust_argument(parser)
    args = parser.parse_args(argv)
    if args.label and len(args.label) != len(args.model):
        parser.error(f'{len(args.label)} --label for {len(args.model)} '
                     f'--model')
    return args


def build_tome_classifier(config, checkpoint, trust=False):
    """The config's classifier with a ToMe backbone and the checkpoint's
    weights (strict), in eval mode; and the config."""
    from mmeffattn.utils.launch import build_checkpoint_model

    def to_tome(cfg):
        backbone = cfg.model.backbone
        if backbone.type in PLAIN_VIT:
            backbone.type = TOME_VIT
        elif backbone.type != TOME_VIT:
            raise ValueError(f'{config}: the backbone is {backbone.type}; '
                             'the ToMe sweep needs a VisionTransformer or a '
                             'ToMeVisionTransformer')
    return build_checkpoint_model(config, checkpoint, to_tome, trust)


def val_batches(cfg):
    """The val set, preprocessed once: list of (inputs, labels)."""
    from mmengine.runner import Runner
    loader = Runner.build_dataloader(
        dict(cfg.val_dataloader, num_workers=0, persistent_workers=False))
    return loader


def sweep(model, cfg, rs, batch_size, repeat):
    """Top-1 and img/s of the model for each r."""
    loader = val_batches(cfg)
    data = [model.data_preprocessor(b, False) for b in loader]
    inputs = torch.cat([d['inputs'] for d in data])
    labels = torch.cat([torch.stack([s.gt_label for s in d['data_samples']])
                        for d in data]).flatten()
    timed = inputs[:batch_size]
    if len(timed) < batch_size:  # repeat val images up to the batch size
        timed = timed.repeat(-(-batch_size // len(timed)), 1, 1, 1)[
            :batch_size]
    top1 = {}
    with torch.no_grad():
        for r in rs:
            model.backbone.tome_r = r
            logits = torch.cat([model(inputs[i:i + 256], mode='tensor')
                                for i in range(0, len(inputs), 256)])
            top1[r] = (logits.argmax(1) == labels).float().mean().item() * 100
        # timing: round robin over r, so that slow drifts of a shared
        # machine spread over all r alike

        def forward_at(r):
            def fn():
                model.backbone.tome_r = r
                model(timed, mode='tensor')
            return fn
        samples = time_round_robin([forward_at(r) for r in rs], repeat)
        times = {r: [t / 1e3 for t in ts] for r, ts in zip(rs, samples)}
    rows = []
    for r in rs:
        median = statistics.median(times[r])
        rows.append(dict(r=r, top1=round(top1[r], 2),
                         img_s=round(batch_size / median, 1),
                         img_s_min=round(batch_size / max(times[r]), 1),
                         img_s_max=round(batch_size / min(times[r]), 1)))
        print(f'  r={r:3d}  top-1 {top1[r]:6.2f}  {batch_size / median:8.1f} '
              f'img/s', flush=True)
    return rows


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for res in results:
        xs = [row['img_s'] for row in res['rows']]
        ys = [row['top1'] for row in res['rows']]
        ax.plot(xs, ys, 'o-', label=res['label'])
        for row in res['rows']:
            ax.annotate(f"{row['r']}", (row['img_s'], row['top1']),
                        textcoords='offset points', xytext=(3, 3),
                        fontsize=7)
    ax.set_xlabel('inference throughput (img/s, median)')
    ax.set_ylabel('top-1 (%)')
    ax.set_title('ToMe: one point per r (tokens merged per layer)')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import mmeffattn.models  # noqa: F401
    from mmeffattn.ops import max_merge
    results = []
    labels = args.label or [osp.splitext(osp.basename(c))[0]
                            for c, _ in args.model]
    for (config, checkpoint), label in zip(args.model, labels):
        model, cfg = build_tome_classifier(config, checkpoint,
                                           args.trust_checkpoint)
        backbone = model.backbone
        num_tokens = (backbone.patch_resolution[0] *
                      backbone.patch_resolution[1] +
                      backbone.num_extra_tokens)
        rs = args.r or list(range(
            0, max_merge(num_tokens, backbone.cls_token is not None) + 1,
            args.r_step))
        print(f'{label}: {config} {checkpoint}')
        results.append(dict(label=label, config=config,
                            checkpoint=checkpoint,
                            trained_r=cfg.model.backbone.get('tome_r', 0),
                            rows=sweep(model, cfg, rs, args.batch_size,
                                       args.repeat)))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    env = dict(torch=torch.__version__, threads=torch.get_num_threads(),
               cpu=platform.processor() or platform.machine(),
               batch_size=args.batch_size, repeat=args.repeat,
               command=' '.join(sys.argv))
    json_path = osp.splitext(args.out)[0] + '.json'
    with open(json_path, 'w') as f:
        json.dump(dict(env=env, results=results), f, indent=1)
    plot(results, args.out)
    print(f'wrote {args.out} and {json_path}')
    return results


if __name__ == '__main__':
    main()
