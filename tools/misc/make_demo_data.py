"""Generate the embedded demo datasets (cls/, det/, seg/) from sklearn
digits."""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from mmeffattn.datasets import demo_data, generate_demo_data  # noqa: E402


def written_by(out_dir: str) -> str:
    """'current' if this version of the generator wrote ``out_dir`` (its
    README.txt is the generator's description, which changes with the
    layout), 'older' if an older version did, else 'other'."""
    readme = osp.join(out_dir, 'README.txt')
    if not osp.isfile(readme):
        return 'other'
    with open(readme) as f:
        text = f.read()
    if text == demo_data.__doc__:
        return 'current'
    return 'older' if text.startswith('Embedded demo data') else 'other'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out_dir', nargs='?', default='data/demo')
    parser.add_argument('--num-det-train', type=int, default=400)
    parser.add_argument('--num-det-val', type=int, default=100)
    parser.add_argument('--canvas-size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--overwrite', action='store_true')
    args = parser.parse_args(argv)
    if osp.exists(args.out_dir) and not args.overwrite:
        if written_by(args.out_dir) != 'older':
            print(f'{args.out_dir} exists; keeping it (--overwrite to '
                  'replace)')
            return args.out_dir
        # written by an older mmeffattn (e.g. the 128x128 stroke-label seg
        # set): the demo configs expect the current layout
        print(f'{args.out_dir} was made by an older version of this tool; '
              'writing it again')
        args.overwrite = True
    out = generate_demo_data(args.out_dir, canvas_size=args.canvas_size,
                             num_det_train=args.num_det_train,
                             num_det_val=args.num_det_val, seed=args.seed,
                             overwrite=args.overwrite)
    print(f'demo data written to {out}')
    return out


if __name__ == '__main__':
    main()
