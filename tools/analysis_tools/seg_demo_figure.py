"""Rows of (canvas | prediction | ground truth) for the segmentation demo.

    python tools/analysis_tools/seg_demo_figure.py CONFIG CKPT
        [--data-root data/demo/seg] [--num 4] [--scale 3] --out FIG.png

Predictions come from mmseg's ``MMSegInferencer``; colours are the demo
palette (background black).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--data-root', default='data/demo/seg')
    parser.add_argument('--num', type=int, default=4)
    parser.add_argument('--scale', type=int, default=3)
    parser.add_argument('--out', required=True)
    from mmeffattn.utils.checkpoint import add_trust_argument
    add_trust_argument(parser)
    args = parser.parse_args(argv)
    for path in (args.config, args.checkpoint, args.data_root):
        if not osp.exists(path):
            parser.error(f'no such file or folder: {path}')
    import cv2
    import numpy as np
    from mmseg.apis import MMSegInferencer

    import mmeffattn  # noqa: F401
    from mmeffattn.datasets.demo_data import SEG_PALETTE
    from mmeffattn.utils.checkpoint import trusted_checkpoints
    from mmeffattn.utils.launch import build_checkpoint_model
    trust = args.trust_checkpoint
    build_checkpoint_model(args.config, args.checkpoint, trust=trust)  # strict
    with trusted_checkpoints(args.checkpoint if trust else None):
        inferencer = MMSegInferencer(model=args.config,
                                     weights=args.checkpoint, device='cpu')
    palette = np.array(SEG_PALETTE, np.uint8)[:, ::-1]  # BGR
    rows = []
    for n in range(args.num):
        name = f'val_{n:05d}'
        image = osp.join(args.data_root, 'images', 'validation', name + '.jpg')
        gt = cv2.imread(osp.join(args.data_root, 'annotations', 'validation',
                                 name + '.png'), cv2.IMREAD_UNCHANGED)
        gt = np.clip(gt.astype(np.int64) - 1, 0, len(palette) - 1)
        pred = inferencer(image)['predictions']
        rows.append(np.concatenate([cv2.imread(image), palette[pred],
                                    palette[gt]], 1))
    figure = cv2.resize(np.concatenate(rows, 0), None, fx=args.scale,
                        fy=args.scale, interpolation=cv2.INTER_NEAREST)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, figure)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
