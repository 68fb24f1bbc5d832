"""Draw what the attention of a trained model does on an image: SASA's
window weights, SeT's transport plans, and for detectors also the painted
predictions (:mod:`mmeffattn.visualization.attention_maps` says what each
panel shows).

Writes PNGs and ``attention.json`` (the drawn weights) into ``--out``.

  python tools/analysis_tools/visualize_attention.py CONFIG CKPT IMAGE \\
      --out docs/figures/attention [--layer NAME] [--points 0.5,0.5 ...]
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from mmeffattn.visualization import attention_maps  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--layer', help='attention module name (default: '
                        'the first SASA/SeT layer of the widest map)')
    parser.add_argument('--points', nargs='+', default=None,
                        help='query points as y,x fractions of the image')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detectors: smallest score painted')
    from mmeffattn.utils.checkpoint import add_trust_argument
    add_trust_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import mmeffattn  # noqa: F401
    from mmeffattn.models.attention import SeTAttention
    from mmeffattn.utils.checkpoint import trusted_checkpoints
    model, cfg = attention_maps.load_model(args.config, args.checkpoint,
                                           args.trust_checkpoint)
    layers = dict(attention_maps.attention_layers(model))
    if not layers:
        raise ValueError(f'{args.config}: the model has no SASA or SeT '
                         'attention layer to draw')
    if args.layer is not None and args.layer not in layers:
        raise KeyError(f'--layer {args.layer!r} is not an attention layer '
                       f'of the model; choose from {sorted(layers)}')
    name = args.layer or next(iter(layers))
    layer = layers[name]
    rgb, inputs = attention_maps.preprocess(model, args.image)
    captured = attention_maps.capture_input(model, layer, inputs)
    points = args.points or ['0.3,0.3', '0.5,0.5', '0.7,0.6']
    os.makedirs(args.out, exist_ok=True)
    if isinstance(layer, SeTAttention):
        paths, record = attention_maps.draw_set(
            rgb, layer, captured[0], captured[1], points, args.out, name)
    else:
        path, record = attention_maps.draw_sasa(
            rgb, layer, captured[0], points, args.out, name)
        paths = [path]
    if cfg.get('default_scope') == 'mmdet':
        with trusted_checkpoints(args.checkpoint
                                 if args.trust_checkpoint else None):
            path, pred = attention_maps.draw_detections(
                args.config, args.checkpoint, args.image, args.out,
                args.score_thr)
        paths.append(path)
        record['detections'] = dict(
            labels=pred['labels'], scores=pred['scores'],
            bboxes=pred['bboxes'])
    with open(osp.join(args.out, 'attention.json'), 'w') as f:
        json.dump(record, f)
    for p in paths:
        print(p)
    return paths, record


if __name__ == '__main__':
    main()
