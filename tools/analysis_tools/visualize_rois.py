"""Draw a SparseFormer's RoIs and sampling points on images.

For every sampling step (the focusing passes, then the first cortex unit) one
panel shows the image, each latent token's RoI (a box) and its sampling
points (dots of the same colour), in the input's pixel coordinates. The
predicted class is in the title.

  python tools/analysis_tools/visualize_rois.py CONFIG CHECKPOINT IMAGE \\
      [IMAGE ...] --out-dir docs/sparseformer [--tokens 0 5 9]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from mmeffattn.visualization import sparseformer_rois  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('images', nargs='+')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--tokens', type=int, nargs='+',
                        help='token indices to draw (default: all)')
    from mmeffattn.utils.checkpoint import add_trust_argument
    add_trust_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import mmeffattn  # noqa: F401
    model = sparseformer_rois.build_classifier(
        args.config, args.checkpoint, args.trust_checkpoint)
    classes = model.dataset_meta.get('classes') if getattr(
        model, 'dataset_meta', None) else None
    traced = [sparseformer_rois.trace_image(model, p) for p in args.images]
    os.makedirs(args.out_dir, exist_ok=True)
    paths = []
    for image, (rgb, trace, label) in zip(args.images, traced):
        stem = osp.splitext(osp.basename(image))[0]
        path = osp.join(args.out_dir, f'{stem}_rois.png')
        sparseformer_rois.draw(rgb, trace, label, path, args.tokens, classes)
        print(f'{path}: predicted {label}, {len(trace)} sampling steps')
        paths.append(path)
    return paths


if __name__ == '__main__':
    main()
