"""Generate the embedded demo datasets (cls/, det/, seg/) from sklearn digits."""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from mmeffattn.datasets import generate_demo_data  # noqa: E402


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
        print(f'{args.out_dir} exists; keeping it (--overwrite to replace)')
        return args.out_dir
    out = generate_demo_data(args.out_dir, canvas_size=args.canvas_size,
                             num_det_train=args.num_det_train,
                             num_det_val=args.num_det_val, seed=args.seed,
                             overwrite=args.overwrite)
    print(f'demo data written to {out}')
    return out


if __name__ == '__main__':
    main()
